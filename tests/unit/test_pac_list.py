"""A PAC answer as a list (credproxy/pac.py entries, BadProxies; egress.Egress._pac_route):
the order entries are tried in, and how marks change it. The connecting itself is e2e
(tests/e2e/test_pac_fallthrough.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from credproxy import pac
from credproxy.egress import ProxyURL, build_egress


@pytest.mark.parametrize("answer, expected", [
    ("PROXY a:1; PROXY b:2; DIRECT", [("PROXY", "a:1"), ("PROXY", "b:2"), ("DIRECT", None)]),
    ("PROXY a:1; DIRECT; PROXY b:2", [("PROXY", "a:1"), ("DIRECT", None)]),  # DIRECT always connects
    ("HTTPS s:443; SOCKS5 x:1; PROXY a:1; PROXY a:1", [("HTTPS", "s:443"), ("PROXY", "a:1")]),
    ("SOCKS x:1", [("DIRECT", None)]),
    ("", [("DIRECT", None)]),
])
def test_every_usable_entry_in_order(answer, expected):
    assert pac.entries(answer)[0] == expected


def test_a_bad_mark_expires():
    now = [1000.0]
    bad = pac.BadProxies(ttl=1800, clock=lambda: now[0])
    bad.mark("a", "Connection refused")
    assert bad.get("a") == (2800.0, "Connection refused")
    assert "marked bad until" in bad.describe("a") and "Connection refused" in bad.describe("a")
    now[0] = 2799.0
    assert bad.get("a") is not None
    now[0] = 2800.0
    assert bad.get("a") is None and bad.items() == [] and bad.describe("a") is None


def test_marks_are_bounded():
    bad = pac.BadProxies()
    for i in range(pac.MAX_BAD + 10):
        bad.mark(i, "x")
    assert len(bad.items()) == pac.MAX_BAD and bad.get(0) is None and bad.get(pac.MAX_BAD + 9) is not None


@pytest.fixture
def egress(tmp_path):
    pytest.importorskip("pypac")
    script = tmp_path / "list.pac"
    script.write_text("function FindProxyForURL(u, h) {\n"
                      "  if (h == 'nodirect.example') return 'PROXY a.corp:1; PROXY b.corp:2';\n"
                      "  return 'PROXY a.corp:1; PROXY b.corp:2; DIRECT'; }")
    settings = SimpleNamespace(upstream_proxy=f"pac+file://{script}", upstream_proxy_origin="test", env={},
                               host="127.0.0.1", port=8899, upstream_proxy_connect_timeout=2.5)
    return build_egress(settings)


A, B = ProxyURL.parse("http://a.corp:1"), ProxyURL.parse("http://b.corp:2")


def test_the_route_is_the_first_entry_with_the_rest_as_alternatives(egress):
    assert egress.connect_timeout == 2.5
    route = egress.route("https", "pkgs.example", 443)
    assert (route.proxy, route.alternatives) == (A, (B, None))
    assert egress.pac_lines("https", "pkgs.example", 443) == ["1. http://a.corp:1", "2. http://b.corp:2", "3. DIRECT"]


def test_a_proxy_marked_bad_goes_last_and_direct_comes_before_it(egress):
    egress.pac.bad.mark(A, "Connection refused")
    route = egress.route("https", "pkgs.example", 443)
    assert (route.proxy, route.alternatives) == (B, (None, A))
    assert "skipped http://a.corp:1 (marked bad until" in route.reason
    assert egress.pac_lines("https", "pkgs.example", 443)[0].startswith("1. http://a.corp:1 (marked bad until")
    egress.pac.bad.mark(B, "no connection within 2.5 s")
    route = egress.route("https", "pkgs.example", 443)
    assert route.direct and route.reason.startswith("PAC entry DIRECT") and route.alternatives == ()
    # without DIRECT, every proxy bad: they are tried again, in the answer's order
    route = egress.route("https", "nodirect.example", 443)
    assert (route.proxy, route.alternatives) == (A, (B,))
    assert "every proxy is marked bad, trying them again" in route.reason


def test_marks_from_a_running_proxy_status_file_are_applied(egress):
    egress.apply_marks({"http://b.corp:2": {"until": 4e9, "why": "Connection refused"},
                        "not a url ::": {"until": 4e9, "why": "x"}, "http://a.corp:1": {"until": "?"}})
    assert egress.pac.bad.get(B) == (4e9, "Connection refused")
    assert egress.pac.bad.get(A) is None
    assert egress.route("https", "pkgs.example", 443).proxy == A


def test_the_unreachable_message_names_every_proxy_tried_and_the_fix():
    from credproxy.egress import Route

    route = Route(None, "PAC file file:///p.pac, rule result 'PROXY a.corp:1; PROXY b.corp:2'",
                  unreachable=((A, "Connection refused"), (B, "no connection within 5 s")))
    text = route.unreachable_message("pkgs.example:443")
    assert "http://a.corp:1 (Connection refused); http://b.corp:2 (no connection within 5 s)" in text
    assert "no DIRECT entry" in text and "Fix:" in text and "credproxy doctor https://pkgs.example:443/" in text
    assert route.describe().startswith("no way out")
