"""Issue 9 finding 2: the Host header (or the TLS server name) against the tunnel's target.

A shared front end (a CDN, a reverse proxy routing by SNI or Host) hands a request to the host
its Host header or SNI names. So a request in a tunnel to pkgs.test that names evil.test must
not carry pkgs.test's credential: credproxy answers 421 and sends nothing. The re-send after a
401 keeps the original connection's server name (mitmproxy's replay would take it from the
Host header)."""

from __future__ import annotations

import pytest

from .proxy_path import SECRET, USER, PathWorld

pytestmark = pytest.mark.e2e

NETRC = f"machine pkgs.test login {USER} password {SECRET}\n"


def test_host_naming_another_host_gets_421_and_nothing_is_sent(tmp_path):
    with PathWorld(tmp_path, netrc=NETRC) as w:
        w.start()
        reply = w.raw_request("pkgs.test", (
            f"GET /private/simple/x/ HTTP/1.1\r\nHost: evil.test:{w.port}\r\nConnection: close\r\n\r\n").encode())
        seen = w.upstream.requests
        log = w.stop()
    assert reply.status == 421, reply.head
    assert "evil.test" in reply.text and "no credential was sent" in reply.text
    assert seen == [], "the request reached the upstream"
    # the request log names the real destination and what happened
    line = next(line for line in log.splitlines() if " GET https://" in line)
    assert f"https://pkgs.test:{w.port}/private/simple/x/ 421" in line and "auth=refuse" in line
    assert SECRET not in log


def test_equivalent_spellings_of_the_target_are_served(tmp_path):
    """Case, a trailing dot and the explicit port are the same host: served, with the credential."""
    with PathWorld(tmp_path, netrc=NETRC) as w:
        w.start()
        for host in (f"PKGS.Test:{w.port}", f"pkgs.test.:{w.port}"):
            reply = w.raw_request("pkgs.test", (
                f"GET /private/simple/y/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").encode())
            assert reply.status == 200, (host, reply.head)
    assert len(w.upstream.requests) == 2


def test_tls_server_name_naming_another_host_gets_421(tmp_path):
    """CONNECT pkgs.test, but the ClientHello names evil.test (which mitmproxy would use as
    the upstream SNI): refused, no request upstream."""
    with PathWorld(tmp_path, netrc=NETRC) as w:
        w.start("--intercept-all")
        reply = w.raw_request("pkgs.test", (
            f"GET /private/simple/z/ HTTP/1.1\r\nHost: pkgs.test:{w.port}\r\nConnection: close\r\n\r\n").encode(),
            sni="evil.test")
    assert reply.status == 421, reply.head
    assert "TLS server name" in reply.text
    assert w.upstream.requests == []


def test_resend_after_401_keeps_the_connections_server_name(tmp_path):
    """The challenge path: the first request goes out bare (netrc `default` entry, asked only
    on a challenge), the upstream answers 401, the proxy re-sends with the credential. The Host
    header is an accepted spelling of the target (upper case), which mitmproxy's replay would
    have used as the re-send's SNI; the re-send must use the connection's own."""
    config = '[[index]]\nname = "pkgs"\nurl = "https://pkgs.test:{port}/private/simple/"\n'
    with PathWorld(tmp_path, netrc=f"default login {USER} password {SECRET}\n", config=config) as w:
        w.start()
        reply = w.raw_request("pkgs.test", (
            f"GET /private/simple/r/ HTTP/1.1\r\nHost: PKGS.TEST:{w.port}\r\nConnection: close\r\n\r\n").encode())
        log = w.stop()
    assert reply.status == 200, (reply.head, log)
    seen = w.upstream.requests
    assert [r.authorization is not None for r in seen] == [False, True], seen  # bare, then the re-send
    assert {r.sni for r in seen} == {"pkgs.test"}, seen
    assert "auth=retry" in log


def test_http2_authority_naming_another_host_gets_421(tmp_path):
    """curl --http2 sends its Host header as `:authority`; the proxy speaks h2 to the client
    and to an h2 upstream on mitmproxy >= 12. mitmproxy 11.0.2 (Python 3.11, `make test-oldest`)
    cannot take the h2 smuggling fix, so there HTTP/2 is off: curl falls back to HTTP/1.1 and
    the Host header naming another host must still get the 421."""
    from mitmproxy import version as mitmproxy_version

    proto = "2" if int(mitmproxy_version.VERSION.split(".")[0]) >= 12 else "1.1"
    from tests.helpers.clients import client_env, combined_bundle, curl
    from tests.helpers.h2server import H2Server
    from tests.helpers.proxy import proxy_env, start_credproxy
    from tests.helpers.servers import make_certs

    certs = make_certs(tmp_path / "certs")
    server = H2Server.start(certs)
    try:
        env = proxy_env(tmp_path, upstream_ca=certs.ca_plus_certifi_pem)
        netrc = tmp_path / "proxy-home" / ".netrc"
        netrc.write_text(f"machine other.test login {USER} password {SECRET}\n")
        netrc.chmod(0o600)
        with start_credproxy(tmp_path, env=env) as proxy:
            bundle = combined_bundle(tmp_path / "bundle.pem", proxy.ca_cert, certs.ca_pem)
            cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=bundle)
            url = f"https://other.test:{server.port}/x"
            tricked = curl("--http2", "-H", f"Host: evil.test:{server.port}", "-w", "%{http_version} %{http_code}",
                           "-o", "/dev/null", url, env=cenv)
            assert server.requests == [], "the request reached the upstream"
            plain = curl("--http2", "-w", "%{http_version} %{http_code}", "-o", "/dev/null", url, env=cenv)
    finally:
        server.stop()
    assert tricked.stdout == f"{proto} 421", tricked.stderr
    assert plain.stdout == f"{proto} 200", plain.stderr
    assert [r.path for r in server.requests] == ["/x"]
