"""The auth addon with mitmproxy's own test helpers and a fake resolver (no sockets)."""

from __future__ import annotations

import asyncio
import base64

import pytest
from mitmproxy.test import taddons, tflow

from credproxy.addons.auth import AuthAddon, request_url
from credproxy.credentials.model import Credentials, secret_forms
from credproxy.credentials.resolver import Decision

from .fake_resolver import FakeResolver, inject

SECRET = "s3cr3t-pa:ss/wörd"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def https_flow(host: str = "pkgs.test", port: int = 443, path: str = "/simple/pkg/", headers=None):
    flow = tflow.tflow()
    flow.request.scheme = "https"
    flow.request.host = host
    flow.request.port = port
    flow.request.path = path
    named = f"[{host}]" if ":" in host else host
    flow.request.headers["host"] = named if port == 443 else f"{named}:{port}"
    flow.client_conn.sni = host  # the TLS server name a real client sends through the tunnel
    for name, value in (headers or {}).items():
        flow.request.headers[name] = value
    flow.response = None
    return flow


def run(coro):
    return asyncio.run(coro)


async def _requestheaders(addon, flow):
    with taddons.context(addon):
        await addon.requestheaders(flow)


def test_url_is_built_from_the_destination_not_the_host_header():
    flow = https_flow(host="pkgs.test", port=8443, path="/simple/a/?x=1", headers={"host": "evil.test"})
    assert request_url(flow.request) == "https://pkgs.test:8443/simple/a/?x=1"
    flow = https_flow(host="::1", port=443, path="/")
    assert request_url(flow.request) == "https://[::1]/"


def test_injects_resolved_credentials():
    resolver = FakeResolver({"pkgs.test": inject("alice", SECRET)})
    addon = AuthAddon(resolver)
    flow = https_flow()
    run(_requestheaders(addon, flow))
    assert flow.request.headers["authorization"] == basic("alice", SECRET)
    assert flow.response is None
    assert resolver.asked == [("https://pkgs.test/simple/pkg/", None)]
    assert flow.metadata["credproxy"] == {
        "source": "netrc", "preemptive": True, "retried": False,
        "action": "inject", "reason": "", "cached": False,
    }


def test_host_header_does_not_choose_credentials():
    # The client names a protected host in Host but connects elsewhere: refused, no lookup.
    resolver = FakeResolver({"pkgs.test": inject("alice", SECRET)})
    addon = AuthAddon(resolver)
    flow = https_flow(host="other.test", headers={"host": "pkgs.test"})
    run(_requestheaders(addon, flow))
    assert "authorization" not in flow.request.headers
    assert resolver.asked == []
    assert flow.response is not None and flow.response.status_code == 421
    assert flow.metadata["credproxy"]["action"] == "refuse"


@pytest.mark.parametrize("named, host, port, ok", [
    ("pkgs.test", "pkgs.test", 443, True),
    ("PKGS.Test.", "pkgs.test", 443, True),
    ("pkgs.test:443", "pkgs.test", 443, True),
    ("pkgs.test:", "pkgs.test", 443, True),
    ("pkgs.test:8443", "pkgs.test", 8443, True),
    ("pkgs.test", "pkgs.test", 8443, False),  # no port = the scheme's default port
    ("pkgs.test:444", "pkgs.test", 443, False),
    ("evil.test", "pkgs.test", 443, False),
    ("pkgs.test.evil.test", "pkgs.test", 443, False),
    ("[::1]:8443", "::1", 8443, True),
    ("[0:0::1]", "::1", 443, True),
    ("::1", "::1", 443, False),  # unbracketed IPv6 is malformed
    ("pkgs.test:80x", "pkgs.test", 443, False),
    ("", "pkgs.test", 443, False),
    ("user@pkgs.test", "pkgs.test", 443, False),
])
def test_names_destination_normalises_case_dot_port_and_brackets(named, host, port, ok):
    from credproxy.addons.auth import names_destination

    assert names_destination(named, "https", host, port) is ok


def test_tls_server_name_must_name_the_destination():
    resolver = FakeResolver({"pkgs.test": inject("alice", SECRET)})
    addon = AuthAddon(resolver)
    flow = https_flow(host="pkgs.test")
    flow.client_conn.sni = "evil.test"
    run(_requestheaders(addon, flow))
    assert resolver.asked == [] and "authorization" not in flow.request.headers
    assert flow.response.status_code == 421


def test_client_credentials_are_left_alone():
    resolver = FakeResolver({"pkgs.test": inject("alice", SECRET)})
    addon = AuthAddon(resolver)
    own = basic("bob", "own-password")
    flow = https_flow(headers={"authorization": own})
    run(_requestheaders(addon, flow))
    assert flow.request.headers["authorization"] == own
    assert resolver.asked == [("https://pkgs.test/simple/pkg/", own)]
    assert flow.metadata["credproxy"]["action"] == "leave"
    assert flow.metadata["credproxy"]["source"] == "client"


def test_proxy_headers_are_dropped():
    resolver = FakeResolver()
    addon = AuthAddon(resolver)
    flow = https_flow(headers={"Proxy-Authorization": basic("proxyuser", "proxytoken"),
                               "Proxy-Connection": "keep-alive"})
    run(_requestheaders(addon, flow))
    names = {k.lower() for k in flow.request.headers.keys()}
    assert not any(n.startswith("proxy-") for n in names)


def test_fail_answers_401_with_the_reason_and_sends_nothing():
    reason = "index private requires authentication (authenticate = always) and no source has credentials"
    resolver = FakeResolver({"pkgs.test": Decision("fail", source="none", reason=reason)})
    addon = AuthAddon(resolver)
    flow = https_flow()
    run(_requestheaders(addon, flow))
    assert flow.response is not None
    assert flow.response.status_code == 401
    assert reason in flow.response.get_text()
    assert flow.metadata["credproxy"]["action"] == "fail"
    assert flow.metadata["credproxy"]["reason"] == reason

    async def finish():
        with taddons.context(addon):
            await addon.responseheaders(flow)
            await addon.response(flow)

    run(finish())
    assert flow.response.status_code == 401
    assert resolver.recorded == [], "nothing went upstream: nothing to record"


def test_resolver_error_fails_closed_without_leaking():
    class Broken(FakeResolver):
        async def aresolve(self, url, client_authorization=None):
            raise RuntimeError(f"boom {SECRET}")

    addon = AuthAddon(Broken())
    flow = https_flow()
    run(_requestheaders(addon, flow))
    assert flow.response.status_code == 502
    body = flow.response.get_text()
    for form in secret_forms(SECRET, "alice"):
        assert form not in body
        assert form not in repr(flow.metadata)


def test_metadata_and_flow_state_never_hold_the_secret():
    resolver = FakeResolver({"pkgs.test": inject("alice", SECRET)})
    addon = AuthAddon(resolver)
    flow = https_flow()
    run(_requestheaders(addon, flow))
    saved = repr(flow.metadata)
    for form in secret_forms(SECRET, "alice"):
        assert form not in saved


def test_success_is_recorded_once_and_large_responses_stream():
    resolver = FakeResolver({"pkgs.test": inject("alice", SECRET)})
    addon = AuthAddon(resolver)
    flow = https_flow()

    async def cycle():
        with taddons.context(addon):
            await addon.requestheaders(flow)
            flow.response = tflow.tresp(status_code=200)
            flow.response.headers["content-length"] = str(200 << 20)
            await addon.responseheaders(flow)
            assert flow.response.stream is True
            await addon.response(flow)

    run(cycle())
    assert resolver.recorded == [("https://pkgs.test/simple/pkg/", "inject", 200)]


def test_401_after_bare_send_without_answer_reaches_the_client():
    resolver = FakeResolver()  # nothing for this host, nothing on challenge
    addon = AuthAddon(resolver)
    flow = https_flow()

    async def cycle():
        with taddons.context(addon):
            await addon.requestheaders(flow)
            flow.response = tflow.tresp(status_code=401, content=b"login required")
            await addon.responseheaders(flow)
            assert flow.response.stream is False  # a challenge is held until we decide
            await addon.response(flow)

    run(cycle())
    assert flow.response.status_code == 401
    assert resolver.challenged == [("https://pkgs.test/simple/pkg/", 401)]
    assert resolver.recorded == [("https://pkgs.test/simple/pkg/", "send", 401)]
    assert flow.metadata["credproxy"]["retried"] is False


@pytest.mark.parametrize("status, sent, expect_challenge", [
    (401, "inject", True),
    (403, "send", True),
    (404, "send", True),
    (403, "inject", False),  # pypiserver answers wrong credentials with 403: not a challenge
    (404, "inject", False),
    (401, "leave", False),  # the client's own credentials: its business
    (500, "send", False),
])
def test_which_statuses_are_challenges(status, sent, expect_challenge):
    decision = {"inject": inject("alice", SECRET), "send": Decision("send"), "leave": None}[sent]
    resolver = FakeResolver({"pkgs.test": decision} if decision else {})
    addon = AuthAddon(resolver)
    headers = {"authorization": basic("bob", "own")} if sent == "leave" else None
    flow = https_flow(headers=headers)

    async def cycle():
        with taddons.context(addon):
            await addon.requestheaders(flow)
            flow.response = tflow.tresp(status_code=status, content=b"x")
            await addon.responseheaders(flow)
            await addon.response(flow)

    run(cycle())
    assert bool(resolver.challenged) == expect_challenge
    assert len(resolver.recorded) == 1


def _respond(addon, flow, status: int):
    from mitmproxy import http

    async def go():
        with taddons.context(addon):
            await addon.requestheaders(flow)
            flow.response = http.Response.make(status, b"no", {"content-length": "2"})
            await addon.responseheaders(flow)
            await addon.response(flow)

    run(go())


@pytest.mark.parametrize("status", [401, 403])
def test_a_rejected_injected_credential_is_one_warning_with_the_command(caplog, status):
    resolver = FakeResolver({"pkgs.test": inject("alice", SECRET, source="store")})
    addon = AuthAddon(resolver)
    with caplog.at_level("WARNING", logger="credproxy.auth"):
        for path in ("/simple/a/", "/simple/b/", "/simple/a/"):
            _respond(addon, https_flow(path=path), status)
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(lines) == 1, lines  # one line per rejected credential, not per request
    assert "the credential from store (username alice)" in lines[0]
    assert lines[0].endswith("Replace it: credproxy auth login https://pkgs.test/ --username alice --password -")
    assert all(form not in caplog.text for form in secret_forms(SECRET, "alice"))


def test_no_rejection_warning_for_the_clients_own_or_an_accepted_credential(caplog):
    resolver = FakeResolver({"pkgs.test": inject("alice", SECRET, source="store")})
    addon = AuthAddon(resolver)
    with caplog.at_level("WARNING", logger="credproxy.auth"):
        _respond(addon, https_flow(headers={"authorization": basic("bob", "bobs-pw")}), 401)
        _respond(addon, https_flow(), 200)
        _respond(addon, https_flow(host="other.test"), 404)  # sent bare: nothing was rejected
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


# --- fail closed (issue 9 finding 8) --------------------------------------------------------


@pytest.mark.parametrize("credentials, kind", [
    (Credentials.basic("alice", "p\udcffw"), "UnicodeEncodeError"),  # undecodable bytes (env)
    (Credentials.bearer("tok\r\nX-Injected: 1"), "ValueError"),  # would split the header
])
def test_a_credential_that_cannot_be_sent_answers_502_and_is_not_forwarded(credentials, kind):
    decision = Decision("inject", credentials, source="env:UV_INDEX_PKGS")
    resolver = FakeResolver({"pkgs.test": decision})
    addon = AuthAddon(resolver)
    flow = https_flow()
    run(_requestheaders(addon, flow))
    assert flow.response is not None and flow.response.status_code == 502
    assert "authorization" not in flow.request.headers
    text = flow.response.get_text()
    assert "env:UV_INDEX_PKGS" in text and kind in text and "not forwarded" in text
    assert "\udcff" not in text and "X-Injected" not in text
    meta = flow.metadata["credproxy"]
    assert meta["action"] == "fail" and meta["preemptive"] is False
    assert resolver.recorded == []  # it never went upstream


def test_a_broken_credential_on_the_challenge_path_answers_502():
    resolver = FakeResolver(challenge={"pkgs.test": inject("alice", "p\udcffw", source="netrc")})
    addon = AuthAddon(resolver)
    flow = https_flow()

    async def cycle():
        with taddons.context(addon):
            await addon.requestheaders(flow)
            flow.response = tflow.tresp(status_code=401, content=b"login required")
            await addon.responseheaders(flow)
            await addon.response(flow)

    run(cycle())
    assert flow.response.status_code == 502
    assert flow.metadata["credproxy"]["action"] == "fail"
    assert resolver.recorded == [("https://pkgs.test/simple/pkg/", "send", 401)]


def test_a_challenge_that_mitmproxy_switched_to_streaming_is_not_resent():
    """Past 1 MiB, mitmproxy's stream_large_bodies streams a buffered (chunked) challenge to
    the client: it is gone, so nothing may be re-sent in its place."""
    resolver = FakeResolver(challenge={"pkgs.test": inject("alice", SECRET)})
    addon = AuthAddon(resolver)
    flow = https_flow()

    async def cycle():
        with taddons.context(addon):
            await addon.requestheaders(flow)
            flow.response = tflow.tresp(status_code=401, content=b"")
            del flow.response.headers["content-length"]
            flow.response.headers["transfer-encoding"] = "chunked"
            await addon.responseheaders(flow)
            assert flow.response.stream is False  # held: may be a challenge
            flow.response.stream = True  # what check_body_size does past the limit
            await addon.response(flow)

    run(cycle())
    assert resolver.challenged == []
    assert flow.response.status_code == 401
    assert "not re-sent" in flow.metadata["credproxy"]["reason"]


def test_injected_credentials_are_remembered_for_the_flow_saver_not_in_metadata():
    from credproxy.addons.auth import injected_credentials

    resolver = FakeResolver({"pkgs.test": inject("alice", SECRET)})
    addon = AuthAddon(resolver)
    flow = https_flow()
    run(_requestheaders(addon, flow))
    assert [c.secret for c in injected_credentials(flow)] == [SECRET]
    assert all(form not in repr(flow.metadata) for form in secret_forms(SECRET, "alice"))


def test_a_host_header_with_userinfo_is_shown_masked():
    resolver = FakeResolver({"pkgs.test": inject("alice", SECRET)})
    addon = AuthAddon(resolver)
    flow = https_flow(headers={"host": "u:hunter2-x@evil.test"})
    run(_requestheaders(addon, flow))
    assert flow.response.status_code == 421
    assert "hunter2" not in flow.response.get_text() and "hunter2" not in flow.metadata["credproxy"]["reason"]
    assert "'****@evil.test'" in flow.response.get_text()


import re  # noqa: E402

from hypothesis import given, settings as hsettings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_NAMES = st.sampled_from(["pkgs.test", "PKGS.test", "pkgs.test.", "evil.test", "pkgs.test.evil.test",
                          "[::1]", "127.0.0.1", "", "pkgs.test@evil.test", "evil.test#pkgs.test"])
_PORTS = st.sampled_from(["", ":", ":443", ":8443", ":0443", ":44 3", ":4431"])


@hsettings(max_examples=300, deadline=None)
@given(name=_NAMES, port=_PORTS, sni=st.sampled_from([None, "pkgs.test", "PKGS.TEST", "evil.test"]),
       extra=st.sampled_from([None, "evil.test"]))
def test_a_credential_is_only_injected_when_every_name_is_the_destination(name, port, sni, extra):
    """Property: whatever the Host header(s) and TLS server name, the addon either refuses
    (421, no lookup) or every name it was given is the destination pkgs.test:443."""
    resolver = FakeResolver({"pkgs.test": inject("alice", SECRET)})
    addon = AuthAddon(resolver)
    flow = https_flow()
    flow.request.headers["host"] = name + port
    if extra is not None:
        flow.request.headers.add("host", extra)
    flow.client_conn.sni = sni
    run(_requestheaders(addon, flow))
    if "authorization" in flow.request.headers:
        hosts = flow.request.headers.get_all("host")
        for h in hosts:
            m = re.fullmatch(r"(?i)pkgs\.test\.?(?::([0-9]*))?", h)
            assert m is not None and (not m.group(1) or int(m.group(1)) == 443), hosts
        assert sni is None or sni.lower() == "pkgs.test"
    else:
        assert flow.response.status_code == 421 and resolver.asked == []
