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



class AcceptCounter:
    """A listener on 127.0.0.1 that counts the TCP connections it accepts (and closes them)."""

    def __init__(self):
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.count += 1
            conn.close()

    def stop(self):
        self._stop = True
        self._thread.join(5)
        self.sock.close()


def test_a_stranger_cannot_make_credproxy_try_the_pac_proxies(tmp_path, private_index, tls_certs):
    """A CONNECT without the owner's proxy token is refused before the PAC answer's proxies
    are connected to: a stranger can neither probe the company's proxies through credproxy
    nor get one marked bad for the owner."""
    import time

    from tests.e2e.test_upstream_proxy import _raw_connect

    counter = AcceptCounter()
    try:
        pac = tmp_path / "proxy.pac"
        pac.write_text("function FindProxyForURL(url, host) {\n"
                       f"  return \"PROXY 127.0.0.1:{counter.port}; DIRECT\";\n}}\n")
        env = pac_env(tmp_path, tls_certs, private_index)
        proxy = start_credproxy(tmp_path, "--upstream-proxy", f"pac+file://{pac}", env=env)
        try:
            target = f"pkgs.test:{private_index.port}"
            for _ in range(3):
                head = _raw_connect(proxy.port, target, {})
                assert head.startswith(b"HTTP/1.1 407"), head
            time.sleep(0.5)
            assert counter.count == 0
            # the owner's CONNECT does reach it (so the count above could have moved)
            head = _raw_connect(proxy.port, target, proxy.auth_headers())
            assert head.startswith(b"HTTP/1.1 200"), head
            deadline = time.monotonic() + 5
            while counter.count == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert counter.count >= 1
        finally:
            proxy.stop()
    finally:
        counter.stop()
