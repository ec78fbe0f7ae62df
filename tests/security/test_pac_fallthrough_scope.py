"""PAC fall-through never carries one proxy's login to the next entry.

The PAC answer is `PROXY proxy.test:DEAD; PROXY 127.0.0.1:OTHER`: ~/.netrc holds the login of
`proxy.test`, which cannot be connected to; the request falls through to the other proxy (a
real proxy on 127.0.0.1 that records every header name). That proxy must get no
Proxy-Authorization at all: the login is for proxy.test only (its prefix), and nowhere in
the logs."""

from __future__ import annotations

import socket

import pytest

from tests.e2e.conftest import index_wheels, private_index, private_index_server, tls_certs  # noqa: F401 (fixtures)
from tests.e2e.test_pac import PROXY_USER, assert_no_proxy_password, pac_env
from tests.e2e.test_proxy_clients import client_bundle
from tests.e2e.test_upstream_proxy import PROXY_PASSWORD
from tests.helpers.clients import client_env, curl
from tests.helpers.company_proxy import CompanyProxy
from tests.helpers.proxy import start_credproxy

pytest.importorskip("pypac", reason="the `pac` extra (make test installs it)")
pytestmark = pytest.mark.e2e


def test_the_next_pac_proxy_never_gets_the_login_of_the_one_that_failed(tmp_path, private_index, tls_certs):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    other = CompanyProxy.start(None)  # asks for no login; records header names
    try:
        pac = tmp_path / "proxy.pac"
        pac.write_text("function FindProxyForURL(url, host) {\n"
                       f"  return \"PROXY proxy.test:{dead}; PROXY 127.0.0.1:{other.port}\";\n}}\n")
        env = pac_env(tmp_path, tls_certs, private_index)  # netrc: machine proxy.test login alice ...
        proxy = start_credproxy(tmp_path, "--upstream-proxy", f"pac+file://{pac}", env=env)
        try:
            cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
            result = curl("-sS", "-f", "-o", "/dev/null", private_index.url, env=cenv)
            assert result.returncode == 0, result.stderr + proxy.stderr()
        finally:
            proxy.stop()
        tunnels = other.connects("pkgs.test")
        assert tunnels and {r.auth for r in tunnels} == {"not-required"}, other.records
        assert all("Proxy-Authorization" not in r.header_names for r in other.records), other.records
        log = proxy.stderr()
        assert f"company proxy http://proxy.test:{dead} (from the PAC file" in log  # it did fall through
        assert PROXY_USER + ":****" not in log  # the login was never even looked up for the other proxy
        assert_no_proxy_password(log, proxy.stdout(), result.stderr)
    finally:
        other.stop()
