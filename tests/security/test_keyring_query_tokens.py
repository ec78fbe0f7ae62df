"""A token in a request's query string (`?private_token=`, a signed URL's `X-Amz-Signature`)
must not leave through the keyring sources, against a real `credproxy serve`:

- the `keyring` command is run with a service name: before the fix that was the request URL
  with its query, so the token sat in the command's argv, which every local user can read in
  /proc/PID/cmdline (`ps`), and in the warning and `reason=` log lines naming the command;
- the native store (UV_PREVIEW_FEATURES=native-auth) named the same service in its answer,
  which reaches the -v request log and `explain`.

Each source is asked (a username-only client and a 401), and each must see the URL without
its query."""

from __future__ import annotations

import base64

import pytest

from tests.e2e.proxy_client import client_context
from tests.e2e.proxy_client import get as _get
from tests.helpers.clients import run
from tests.helpers.keyring_script import read_calls, write_keyring_script
from tests.helpers.proxy import credproxy_cmd, proxy_env, start_credproxy

from .test_registry_sources_scope import echo_factory, tls_certs  # noqa: F401

pytestmark = pytest.mark.e2e

QUERY_TOKEN, SIGNATURE = "glpat-QUERY-t0ken-s3cret", "SIGNATURE-s3cret-0123"


@pytest.mark.parametrize("provider", ["subprocess", "native"])
def test_a_query_token_reaches_neither_the_keyring_nor_the_log(tmp_path, tls_certs, echo_factory, provider):  # noqa: F811
    server = echo_factory(host="other.test", credentials=("alice", "the-real-password"))
    calls = tmp_path / "keyring-calls.jsonl"
    keyring = write_keyring_script(tmp_path / "bin", {}, log=calls)  # knows nothing: every service is tried
    config = ""  # no index: with --intercept-all, the sources are asked about the request URL
    extra = {"PATH": f"{keyring.parent}:/usr/bin:/bin"}
    if provider == "subprocess":
        config = 'keyring-provider = "subprocess"\n' + config
    else:
        extra["UV_PREVIEW_FEATURES"] = "native-auth"
    (tmp_path / "credproxy-config.toml").write_text(config)
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem, extra=extra)
    proxy = start_credproxy(tmp_path, "-vv", "--intercept-all", env=env)
    context = client_context(str(proxy.ca_cert), str(tls_certs.ca_pem))
    url = server.url_for("other.test", f"/files/pkg-1.0.whl?private_token={QUERY_TOKEN}&X-Amz-Signature={SIGNATURE}")
    try:
        username_only = {"Authorization": "Basic " + base64.b64encode(b"alice:").decode()}
        assert _get(proxy, url, context, headers=username_only).status == 401
        explained = run(credproxy_cmd("explain", url, "--username", "alice"),
                        env={**env, "CREDPROXY_DATA_DIR": str(proxy.data_dir)}, timeout=60)
    finally:
        proxy.stop()
    texts = {"proxy log": proxy.stderr() + proxy.stdout(), "explain": explained.stdout + explained.stderr}
    if provider == "subprocess":
        argvs = read_calls(calls)
        assert any(f"https://other.test:{server.port}/files/pkg-1.0.whl" in " ".join(argv) for argv in argvs), argvs
        texts["keyring argv (/proc/PID/cmdline)"] = repr(argvs)
    else:
        assert "native" in explained.stdout, explained.stdout + explained.stderr
    leaked = [name for name, text in texts.items() if QUERY_TOKEN in text or SIGNATURE in text]
    assert leaked == [], f"the query token reached {leaked}"
