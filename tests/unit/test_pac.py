"""credproxy/pac.py: reading the PAC answer, fetching the PAC file (bounded, direct), and what it shows."""

from __future__ import annotations


import time

import pytest

from credproxy import pac
from credproxy.pac import MAX_PAC_BYTES, PacError, fetch, first_entry
from tests.helpers.loopback import LoopbackServer, canned_handler


@pytest.mark.parametrize("answer, expected", [
    ("DIRECT", ("DIRECT", None)),
    ("PROXY a.corp:3128; PROXY b.corp:3128; DIRECT", ("PROXY", "a.corp:3128")),
    ("HTTPS secure.corp:8443; DIRECT", ("HTTPS", "secure.corp:8443")),
    ("SOCKS5 s.corp:1080; PROXY a.corp:3128", ("PROXY", "a.corp:3128")),
    ("SOCKS s.corp:1080", ("DIRECT", None)),
    ("", ("DIRECT", None)),
    ("  proxy  a.corp:3128 ;", ("PROXY", "a.corp:3128")),
])
def test_the_first_usable_entry_is_used(answer, expected):
    kind, where, notes = first_entry(answer)
    assert (kind, where) == expected
    assert all("skipped" in n for n in notes)


def test_a_pac_file_larger_than_the_limit_is_refused(tmp_path):
    big = tmp_path / "big.pac"
    big.write_bytes(b"/" * (MAX_PAC_BYTES + 1))
    with pytest.raises(PacError, match="larger than"):
        fetch(f"file://{big}")
    ok = tmp_path / "ok.pac"
    ok.write_text("function FindProxyForURL(u, h) { return 'DIRECT'; }")
    assert "FindProxyForURL" in fetch(f"file://{ok}")


@pytest.fixture
def pac_http():
    seen = []
    body = b"function FindProxyForURL(u, h) { return 'DIRECT'; }"
    with LoopbackServer(canned_handler(200, body, seen=seen)) as server:
        yield server.port, seen


def test_the_pac_file_is_fetched_directly_never_through_a_proxy_variable(pac_http, monkeypatch):
    port, seen = pac_http
    # a proxy variable pointing at a closed port (and no NO_PROXY): a proxied fetch would fail
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert "FindProxyForURL" in fetch(f"http://127.0.0.1:{port}/proxy.pac?token=s3cret")
    assert seen == [("/proxy.pac?token=s3cret", None)]


def test_a_pac_address_is_shown_without_userinfo_or_query(tmp_path):
    with pytest.raises(PacError) as e:
        fetch("http://bob:hunter2@127.0.0.1:9/proxy.pac?token=s3cret")
    text = str(e.value)
    assert "hunter2" not in text and "s3cret" not in text and "bob" not in text
    assert "http://127.0.0.1:9/proxy.pac" in text


def test_a_throwing_script_answers_direct_and_says_why():
    pytest.importorskip("pypac")
    router = pac.PacRouter("file:///x.pac", script="function FindProxyForURL(u, h) { throw new Error('bad rule'); }")
    assert router.result("https", "pkgs.test", 443) == "DIRECT"
    assert "bad rule" in router.failure("pkgs.test")


def test_a_failed_evaluation_is_asked_again_after_failure_ttl(monkeypatch):
    """One timeout (a loaded machine) must not send a host DIRECT for the proxy's whole life."""
    pytest.importorskip("pypac")
    router = pac.PacRouter("file:///x.pac", script='function FindProxyForURL(u, h) { return "PROXY p.test:3128"; }')
    calls = []
    real = router._evaluate

    def flaky(url, host):
        calls.append(url)
        return router._fallback(host, "did not answer") if len(calls) == 1 else real(url, host)

    monkeypatch.setattr(router, "_evaluate", flaky)
    assert router.result("https", "pkgs.test", 443) == "DIRECT"
    assert router.result("https", "pkgs.test", 443) == "DIRECT" and len(calls) == 1  # within the TTL
    now = time.monotonic()
    monkeypatch.setattr(pac.time, "monotonic", lambda: now + pac.FAILURE_TTL + 1)
    assert router.failure("pkgs.test") is None
    assert router.result("https", "pkgs.test", 443) == "PROXY p.test:3128" and len(calls) == 2


def test_a_huge_answer_is_cut():
    pytest.importorskip("pypac")
    router = pac.PacRouter("file:///x.pac", script='function FindProxyForURL(u, h) { var s = "DIRECT"; '
                                                   'for (var i = 0; i < 20; i++) { s = s + s; } return s; }')
    assert len(router.result("https", "pkgs.test", 443)) == pac.MAX_ANSWER


def test_loopback_and_no_proxy_are_decided_before_the_pac_file_is_asked(tmp_path):
    """A PAC file that sends every host through a proxy cannot override NO_PROXY or send a
    loopback host away: those are reached directly and the script is not even asked."""
    pytest.importorskip("pypac")
    from types import SimpleNamespace

    from credproxy.egress import build_egress

    script = tmp_path / "all.pac"
    script.write_text("function FindProxyForURL(u, h) { return 'PROXY proxy.corp:3128'; }")
    settings = SimpleNamespace(upstream_proxy=f"pac+file://{script}", upstream_proxy_origin="test",
                               env={"NO_PROXY": ".internal.example"}, host="127.0.0.1", port=8899)
    egress = build_egress(settings)
    assert egress.route("https", "pkgs.internal.example", 443).direct
    assert "NO_PROXY" in egress.route("https", "pkgs.internal.example", 443).reason
    assert egress.route("https", "localhost", 8443).direct
    assert egress.route("https", "127.0.0.1", 8443).direct
    routed = egress.route("https", "pkgs.example.com", 443)
    assert not routed.direct and routed.proxy.netloc == "proxy.corp:3128"


def test_failures_expiring_under_many_threads_raise_nothing(monkeypatch):
    """The router's caches are used from one worker thread per flow and from the event loop:
    an expired failure seen by several at once was deleted twice (KeyError)."""
    import sys
    import threading

    from credproxy import pac

    router = pac.PacRouter("http://pac.invalid/proxy.pac", script="function FindProxyForURL(u, h) { return 'DIRECT'; }")
    errors: list[BaseException] = []
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(200):
            router._failed["h.test"] = (0.0, "expired")  # expired long ago
            barrier = threading.Barrier(4)

            def look():
                barrier.wait()
                try:
                    router.failure("h.test")
                except BaseException as e:  # noqa: BLE001
                    errors.append(e)

            threads = [threading.Thread(target=look) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(5)
    finally:
        sys.setswitchinterval(old)
    assert errors == []
