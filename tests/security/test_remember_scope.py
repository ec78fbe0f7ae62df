"""`serve --remember` (issue 12 point 7) against a real `credproxy serve`: what a client sent
itself is stored under the index root it used, never wider, and nothing else is stored.

- a client's own credential accepted under the index `https://pkgs.test:P/team-a/simple/` is
  remembered once, for `https://pkgs.test:P/team-a`; afterwards it goes to that index only:
  not to `/team-b/`, `/team-abc/` (a string prefix, not a segment one), the host's root, path
  tricks (`/team-a/..%2fteam-b/`), or another port of the same host;
- the credential credproxy then injects itself (accepted with a 200) is not remembered again,
  and a client's wrong credential, refused with 401 and then replaced by credproxy's re-send
  that the upstream accepts, is never stored;
- the log line names the place and the user, never the secret; nor does the request log.
"""

from __future__ import annotations

import base64

import pytest

from tests.e2e.proxy_client import client_context
from tests.e2e.proxy_client import get as _get
from tests.helpers.proxy import proxy_env, start_credproxy

from .test_registry_sources_scope import echo_factory, tls_certs  # noqa: F401

pytestmark = pytest.mark.e2e

USER, PASSWORD = "alice", "rem3mber-S3cret-team-a"
WRONG = "n0t-the-team-a-password"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_remembered_credential_stays_under_the_index_root_it_was_used_for(tmp_path, tls_certs, echo_factory):  # noqa: F811
    index = echo_factory(host="pkgs.test", credentials=(USER, PASSWORD))
    other_port = echo_factory(host="pkgs.test", credentials=(USER, PASSWORD))
    (tmp_path / "credproxy-config.toml").write_text(
        f'[[index]]\nname = "team-a"\nurl = "{index.url_for("pkgs.test", "/team-a/simple/")}"\n'
        # the other port is intercepted too (an index there), so the proxy could inject there
        f'[[index]]\nname = "elsewhere"\nurl = "{other_port.url_for("pkgs.test", "/team-a/simple/")}"\n')
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem)
    proxy = start_credproxy(tmp_path, "-v", "--remember", env=env)
    context = client_context(str(proxy.ca_cert), str(tls_certs.ca_pem))

    def get(server, path: str, authorization: str | None = None):
        headers = {"Authorization": authorization} if authorization else None
        return _get(proxy, server.url_for("pkgs.test", path), context, headers=headers)

    try:
        assert get(index, "/team-a/simple/pkg/", _basic(USER, PASSWORD)).status == 200  # the client's own
        store = (tmp_path / "credproxy-credentials" / "credentials.toml").read_text()
        assert store.count("[[credential]]") == 1
        assert f'service = "https://pkgs.test:{index.port}/team-a"' in store, store

        # the next client sends nothing: the remembered credential goes to the index only
        assert get(index, "/team-a/simple/pkg/").status == 200
        assert get(index, "/team-a/files/pkg-1.0.whl").status == 200
        outside = ("/team-b/simple/pkg/", "/team-abc/simple/pkg/", "/", "/simple/pkg/",
                   "/team-a/..%2fteam-b/simple/", "/team-a/%2e%2e/team-b/simple/")
        for path in outside:
            assert get(index, path).status == 401, path
        assert get(other_port, "/team-a/simple/pkg/").status == 401  # same host, another port
        sent = {r.path for r in index.requests if r.authorization == _basic(USER, PASSWORD)}
        assert not sent & set(outside), f"the remembered credential went outside the index: {sent & set(outside)}"
        assert not [r for r in other_port.requests if r.authorization], "sent to another port"

        # a wrong credential of the client's, refused, then credproxy's own re-send accepted
        reply = get(index, "/team-a/simple/other/", _basic(USER, WRONG))
        assert reply.status in (200, 401)
    finally:
        proxy.stop()
    log = proxy.stderr()
    assert log.count("remembered ") == 1, log
    assert f"remembered https://pkgs.test:{index.port}/team-a for {USER} in the store (source: client)" in log
    store = (tmp_path / "credproxy-credentials" / "credentials.toml").read_text()
    assert store.count("[[credential]]") == 1 and WRONG not in store, store
    for secret in (PASSWORD, WRONG, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()):
        assert secret not in log
