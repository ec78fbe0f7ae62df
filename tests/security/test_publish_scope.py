"""UV_PUBLISH_TOKEN (issue 12 point 1) goes to the configured `publish-url` exactly, against a
real `credproxy serve` and an upstream that records every Authorization it gets:

- `POST https://other.test:P/legacy/` (the publish URL) carries `__token__:TOKEN`;
- a path below or beside it, path tricks that a server may read as another path
  (`/legacy/..%2fsimple/`, `/legacy/%2e%2e/x`, `/legacy%2fx`), another case, another port of
  the same host, and the index's own download URLs never do, also after they answer 401
  (the challenge path asks the sources again);
- the token is in no log line and no saved flow.
"""

from __future__ import annotations

import base64

import pytest

from tests.e2e.proxy_client import client_context
from tests.e2e.proxy_client import get as _get
from tests.helpers.proxy import proxy_env, start_credproxy

from .test_registry_sources_scope import echo_factory, tls_certs  # noqa: F401

pytestmark = pytest.mark.e2e

TOKEN = "pypi-PUBLISH-t0ken-s3cret"
HEADER = "Basic " + base64.b64encode(f"__token__:{TOKEN}".encode()).decode()


def test_the_publish_token_goes_to_the_publish_url_only(tmp_path, tls_certs, echo_factory):  # noqa: F811
    upload = echo_factory(host="other.test", credentials=("__token__", TOKEN))
    other_port = echo_factory(host="other.test", credentials=("__token__", TOKEN))
    (tmp_path / "credproxy-config.toml").write_text(
        "[[index]]\nname = \"corp\"\n"
        f'url = "https://other.test:{upload.port}/simple/"\n'
        f'publish-url = "https://other.test:{upload.port}/legacy/"\n'
        # the other port is intercepted too, so a widened token could reach it
        f'[[index]]\nname = "elsewhere"\nurl = "https://other.test:{other_port.port}/simple/"\n')
    flows = tmp_path / "flows.mitm"
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem, extra={"UV_PUBLISH_TOKEN": TOKEN})
    proxy = start_credproxy(tmp_path, "-v", "--save-flows", str(flows), env=env)
    context = client_context(str(proxy.ca_cert), str(tls_certs.ca_pem))

    def send(server, path: str, method: str = "POST"):
        return _get(proxy, server.url_for("other.test", path), context, method=method).status

    outside = ("/legacy/x", "/legacy/..%2fsimple/", "/legacy/%2e%2e/simple/", "/legacy%2fx", "/LEGACY/",
               "/simple/", "/simple/pkg/", "/", "/legacy/./../simple/")
    try:
        assert send(upload, "/legacy/") == 200
        assert send(upload, "/legacy") == 200  # a trailing slash does not matter
        for path in outside:
            for method in ("POST", "GET"):
                assert send(upload, path, method) == 401, (method, path)
        assert send(other_port, "/legacy/") == 401
    finally:
        proxy.stop()
    got = [r.path for r in upload.requests if r.authorization == HEADER]
    assert sorted(got) == ["/legacy", "/legacy/"], f"the publish token went to {got}"
    assert not [r.path for r in other_port.requests if r.authorization], "sent to another port"
    log = proxy.stderr() + proxy.stdout()
    assert "source=env:UV_PUBLISH_TOKEN" in log
    for form in (TOKEN, HEADER.split()[1]):
        assert form not in log and form not in flows.read_bytes().decode("latin-1")
