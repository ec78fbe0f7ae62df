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
