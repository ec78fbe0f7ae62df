"""proxy/limits.py wraps mitmproxy internals; its guard must notice when they change.

Every test here works on COPIES of mitmproxy's classes (a namespace without one attribute,
or a subclass): the real classes are never changed, so nothing leaks into other tests."""

from __future__ import annotations

import logging
import types

import pytest

from credproxy.proxy import limits

HEAD_TIME = "request head time (408 after request-head-timeout)"
PIPELINE = "pipelining (closed after 1 MiB sent ahead)"
RESPONSE_HEAD = "response head size (502 over 64 KiB)"


def without(cls, attr: str) -> types.SimpleNamespace:
    """A copy of `cls` (its attributes, inherited ones too) lacking `attr`."""
    return types.SimpleNamespace(**{n: getattr(cls, n) for n in dir(cls) if not n.startswith("__") and n != attr})


def copies(**replace) -> dict[str, object]:
    """mitmproxy's objects, each class a fresh subclass (wrapping it leaves the real one alone)."""
    found = limits.targets()
    for name in ("Http1Server", "Http1Client", "HttpStream", "ConnectionHandler"):
        found[name] = type(name, (found[name],), {})
    found.update(replace)
    return found


def test_the_installed_mitmproxy_has_every_part_the_limits_need():
    assert limits.check() == {}
    assert limits.version_problem() is None, limits.mitmproxy_version()


def test_a_missing_method_turns_off_exactly_the_limits_that_need_it_and_says_so(caplog):
    from mitmproxy.proxy.layers.http._http1 import Http1Server

    found = copies(Http1Server=without(Http1Server, "_handle_event"))
    assert limits.check(found) == {HEAD_TIME: ["Http1Server._handle_event: missing"],
                                   PIPELINE: ["Http1Server._handle_event: missing"]}
    before = found["Http1Server"].read_headers
    with caplog.at_level(logging.WARNING, logger="credproxy.limits"):
        inactive = limits.install_into(found)
    assert set(inactive) == {HEAD_TIME, PIPELINE}
    (record,) = [r for r in caplog.records if r.name == "credproxy.limits"]
    text = record.getMessage()
    assert f"NOT active on mitmproxy {limits.mitmproxy_version()}" in text
    assert HEAD_TIME in text and PIPELINE in text and "Http1Server._handle_event: missing" in text
    assert "Fix: install a mitmproxy credproxy supports: pip install 'mitmproxy>=11.0.2,<13'" in text
    # the limits that fit were installed, on the copies
    assert found["Http1Server"].read_headers.__wrapped__ is before
    assert "read_headers" in vars(found["Http1Client"])
    assert "_handle_event" not in vars(found["Http1Server"])


@pytest.mark.parametrize("replacement, problem", [
    (lambda self, event: None, "no longer a generator"),
    ("not a function", "not a function"),
])
def test_a_changed_shape_is_detected(replacement, problem):
    from mitmproxy.proxy.layers.http._http1 import Http1Client

    found = copies(Http1Client=type("Http1Client", (Http1Client,), {"read_headers": replacement}))
    assert limits.check(found) == {RESPONSE_HEAD: [f"Http1Client.read_headers: {problem}"]}


def test_changed_parameters_are_detected():
    from mitmproxy.proxy.layers.http import HttpStream

    def start_request_stream(self, flow):
        yield from ()

    found = copies(HttpStream=type("HttpStream", (HttpStream,), {"start_request_stream": start_request_stream}))
    (why,) = limits.check(found).values()
    assert why == ["HttpStream.start_request_stream: parameters (self, flow) instead of (self)"]


def test_a_module_that_does_not_import_turns_off_its_limits():
    found = copies()
    del found["http_events"]
    inactive = limits.check(found)
    assert PIPELINE in inactive and RESPONSE_HEAD in inactive
    assert "http_events.RequestProtocolError: its module did not import" in inactive[PIPELINE]


def test_an_untested_mitmproxy_major_is_named():
    assert limits.version_problem("12.3.1") is None and limits.version_problem("11.0.2") is None
    note = limits.version_problem("13.0.0")
    assert "mitmproxy 13.0.0" in note and "11.x, 12.x" in note
    text = limits.warning_text({}, note)
    assert "mitmproxy 13.0.0" in text and "active" in text and "Fix:" in text
    assert limits.warning_text({}, None) is None
