"""The owner check (addons/owner.py) with mitmproxy's own test helpers: who is admitted, what
a refused client gets, and that nothing of the token survives the check. The e2e proof with
real clients and another uid is tests/security/test_owner_only.py."""

from __future__ import annotations

import base64
from types import SimpleNamespace

from mitmproxy.test import tflow

from credproxy.addons.owner import OwnerOnly
from credproxy.proxy.token import ProxyCredential, TokenError

TOKEN = "tok-" + "x" * 40
PAIR = ProxyCredential("credproxy", TOKEN, "test")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def connect_flow(auth: str | list[str] | None = None):
    flow = tflow.tflow()
    flow.request.method = "CONNECT"
    flow.request.host, flow.request.port = "pkgs.test", 443
    flow.response = None
    for value in ([auth] if isinstance(auth, str) else auth or []):
        flow.request.headers.add("Proxy-Authorization", value)
    return flow


def plain_flow(auth: str | None = None, client=None):
    flow = tflow.tflow()
    if client is not None:
        flow.client_conn = client
    flow.request.scheme, flow.request.host, flow.request.port = "http", "127.0.0.1", 8080
    flow.response = None
    if auth is not None:
        flow.request.headers["Proxy-Authorization"] = auth
    return flow


def test_connect_with_the_token_is_admitted_and_the_header_removed():
    addon = OwnerOnly(lambda: PAIR)
    flow = connect_flow(basic("credproxy", TOKEN))
    addon.http_connect(flow)
    assert flow.response is None
    assert "proxy-authorization" not in flow.request.headers
    # requests inside the tunnel ride on the admitted connection (HTTP/1 keep-alive, h2 streams)
    inner = plain_flow(client=flow.client_conn)
    addon.requestheaders(inner)
    assert inner.response is None


def test_anything_else_gets_407_naming_the_fix_and_marks_the_flow():
    addon = OwnerOnly(lambda: PAIR)
    for auth in (None, basic("credproxy", "wrong"), basic("other", TOKEN), basic("credproxy", TOKEN + "x"),
                 "Bearer " + TOKEN, "Basic !!!", basic("credproxy", TOKEN).lower(),
                 [basic("credproxy", TOKEN), basic("credproxy", "wrong")]):
        flow = connect_flow(auth)
        addon.http_connect(flow)
        assert flow.response is not None and flow.response.status_code == 407, auth
        assert flow.response.headers["Proxy-Authenticate"] == 'Basic realm="credproxy"'
        body = flow.response.get_text()
        assert 'eval "$(credproxy env)"' in body and "credproxy run -- CMD" in body
        assert TOKEN not in body
        assert flow.metadata["credproxy"]["action"] == "refuse"
        assert flow.client_conn not in addon.authenticated


def test_the_scheme_is_case_insensitive():
    addon = OwnerOnly(lambda: PAIR)
    flow = connect_flow("basic " + basic("credproxy", TOKEN).split(" ", 1)[1])
    addon.http_connect(flow)
    assert flow.response is None


def test_plain_http_is_checked_on_every_request_and_replays_pass():
    addon = OwnerOnly(lambda: PAIR)
    ok = plain_flow(basic("credproxy", TOKEN))
    addon.requestheaders(ok)
    assert ok.response is None and "proxy-authorization" not in ok.request.headers
    assert ok.client_conn not in addon.authenticated  # nothing remembered for plain HTTP
    again = plain_flow(client=ok.client_conn)
    addon.requestheaders(again)
    assert again.response is not None and again.response.status_code == 407
    replay = plain_flow()
    replay.is_replay = "request"  # the auth addon's own re-send
    addon.requestheaders(replay)
    assert replay.response is None


def test_tls_to_the_proxy_itself_is_dropped_unless_the_connection_was_admitted():
    addon = OwnerOnly(lambda: PAIR)
    stranger = SimpleNamespace(context=SimpleNamespace(client=tflow.tclient_conn()), ignore_connection=False)
    addon.tls_clienthello(stranger)
    assert stranger.ignore_connection is True
    flow = connect_flow(basic("credproxy", TOKEN))
    addon.http_connect(flow)
    tunnel = SimpleNamespace(context=SimpleNamespace(client=flow.client_conn), ignore_connection=False)
    addon.tls_clienthello(tunnel)
    assert tunnel.ignore_connection is False


def test_a_changed_token_is_used_at_once_and_a_broken_one_refuses_everyone():
    current = {"pair": PAIR}

    def credential():
        if current["pair"] is None:
            raise TokenError("/data/proxy-token is not a credproxy proxy token; delete it")
        return current["pair"]

    addon = OwnerOnly(credential)
    current["pair"] = ProxyCredential("credproxy", "new-" + "y" * 40)
    old = connect_flow(basic("credproxy", TOKEN))
    addon.http_connect(old)
    assert old.response.status_code == 407
    current["pair"] = None
    flow = connect_flow(basic("credproxy", TOKEN))
    addon.http_connect(flow)
    assert flow.response.status_code == 407 and "token file is unusable" in flow.response.get_text()


def test_with_a_configured_pair_the_407_names_that_pair():
    addon = OwnerOnly(lambda: ProxyCredential("me", "pair-token-123"), configured_pair=True)
    flow = connect_flow(basic("credproxy", TOKEN))
    addon.http_connect(flow)
    assert "--proxyauth-file" in flow.response.get_text()
    ok = connect_flow(basic("me", "pair-token-123"))
    addon.http_connect(ok)
    assert ok.response is None
