"""The upstream-proxy addon's hooks with mitmproxy's test flows (no sockets): which flows get
routed through the company proxy, which login the proxy gets, how a refusal is answered."""

from __future__ import annotations

import asyncio
import base64

from mitmproxy import connection
from mitmproxy.test import tflow

from credproxy.addons.upstream_proxy import ERROR_HEADER, UpstreamProxyAddon
from credproxy.config import Settings
from credproxy.credentials.model import Credentials, secret_forms
from credproxy.credentials.resolver import Decision
from credproxy.egress import build_egress

SECRET = "c0rp-s3cret:/@"
ENC = "c0rp-s3cret%3A%2F%40"


def egress(**env):
    return build_egress(Settings(env=env))


class ProxyLogins:
    """aproxy_credentials as the Resolver answers it."""

    def __init__(self, creds=None, source="netrc"):
        self.creds, self.source, self.calls = creds, source, []

    async def aproxy_credentials(self, url, username=None):
        self.calls.append((url, username))
        if self.creds is None:
            return Decision("send", reason="no source has a password for the proxy")
        return Decision("inject", self.creds, source=self.source)


def connect_flow(host="pkgs.test", port=443):
    flow = tflow.tflow()
    flow.request.method = "CONNECT"
    flow.request.host, flow.request.port = host, port
    flow.response = None
    flow.server_conn = connection.Server(address=(host, port))
    return flow


def plain_flow(host="other.test", port=80):
    flow = tflow.tflow()
    flow.request.scheme, flow.request.host, flow.request.port = "http", host, port
    flow.response = None
    flow.server_conn = connection.Server(address=None)
    return flow


def test_a_connect_to_a_routed_host_is_marked_via_the_proxy_and_answered_200():
    addon = UpstreamProxyAddon(egress(HTTPS_PROXY="http://proxy.corp:3128", NO_PROXY="direct.test"))
    flow = connect_flow()
    addon.http_connect(flow)
    assert flow.server_conn.via == ("http", ("proxy.corp", 3128))
    assert flow.response is not None and flow.response.status_code == 200


def test_no_proxy_hosts_and_refused_connects_are_left_alone():
    addon = UpstreamProxyAddon(egress(HTTPS_PROXY="http://proxy.corp:3128", NO_PROXY="direct.test"))
    direct = connect_flow("direct.test")
    addon.http_connect(direct)
    assert direct.server_conn.via is None and direct.response is None
    refused = connect_flow()
    refused.response = tflow.tresp(status_code=407)
    addon.http_connect(refused)
    assert refused.server_conn.via is None and refused.response.status_code == 407


def test_plain_http_requests_get_the_route_of_their_own_host():
    addon = UpstreamProxyAddon(egress(HTTP_PROXY="http://proxy.corp:3128", NO_PROXY="direct.test"))
    flow = plain_flow()
    addon.requestheaders(flow)
    assert flow.server_conn.via == ("http", ("proxy.corp", 3128))
    # the next request on the same client connection goes to a NO_PROXY host: direct again
    flow2 = plain_flow("direct.test")
    flow2.server_conn = flow.server_conn
    addon.requestheaders(flow2)
    assert flow2.server_conn.via is None


def test_the_proxy_login_comes_from_the_url_before_the_chain():
    logins = ProxyLogins(Credentials.basic("bob", "from-netrc"))
    addon = UpstreamProxyAddon(egress(HTTPS_PROXY=f"http://alice:{ENC}@proxy.corp:3128"), logins)
    upstream = connect_flow()
    upstream.server_conn = connection.Server(address=("proxy.corp", 3128))
    asyncio.run(addon.http_connect_upstream(upstream))
    expected = "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
    assert upstream.request.headers["Proxy-Authorization"] == expected
    assert logins.calls == []


def test_the_proxy_login_from_the_chain_is_looked_up_once_per_proxy():
    logins = ProxyLogins(Credentials.basic("bob", SECRET))
    addon = UpstreamProxyAddon(egress(HTTPS_PROXY="http://proxy.corp:3128"), logins)
    for _ in range(3):
        upstream = connect_flow()
        upstream.server_conn = connection.Server(address=("proxy.corp", 3128))
        asyncio.run(addon.http_connect_upstream(upstream))
        assert upstream.request.headers["Proxy-Authorization"].startswith("Basic ")
    assert logins.calls == [("http://proxy.corp:3128/", None)]


def test_no_login_no_header_and_other_servers_untouched():
    addon = UpstreamProxyAddon(egress(HTTPS_PROXY="http://proxy.corp:3128"), ProxyLogins(None))
    upstream = connect_flow()
    upstream.server_conn = connection.Server(address=("proxy.corp", 3128))
    asyncio.run(addon.http_connect_upstream(upstream))
    assert "Proxy-Authorization" not in upstream.request.headers
    other = connect_flow()
    other.server_conn = connection.Server(address=("elsewhere", 3128))
    asyncio.run(addon.http_connect_upstream(other))
    assert "Proxy-Authorization" not in other.request.headers


def test_a_refused_tunnel_answers_its_requests_with_the_proxys_refusal_and_no_password(caplog):
    addon = UpstreamProxyAddon(egress(HTTPS_PROXY=f"http://alice:{ENC}@proxy.corp:3128"))
    inner = connection.Server(address=("pkgs.test", 443))
    tunnel = connection.Server(address=("proxy.corp", 3128))
    addon._sent[tunnel.id] = "url"
    with caplog.at_level("WARNING"):
        addon._refused(inner, tunnel, 407, "Proxy Authentication Required", ("Basic",))
        addon._refused(inner, tunnel, 407, "Proxy Authentication Required", ("Basic",))
    flow = tflow.tflow()
    flow.response = None
    flow.server_conn = inner
    addon.requestheaders(flow)
    body = flow.response.get_text()
    assert flow.response.status_code == 502 and flow.response.headers[ERROR_HEADER] == "upstream-proxy"
    assert "the company proxy http://alice:****@proxy.corp:3128 (from HTTPS_PROXY)" in body
    assert "not pkgs.test:443's" in body and "correct the password in the proxy URL" in body
    warnings = [r.getMessage() for r in caplog.records if r.name == "credproxy.upstream_proxy"]
    assert len(warnings) == 1  # once per proxy and cause, not per connection
    for form in secret_forms(SECRET, "alice") + [ENC]:
        assert form not in body and form not in warnings[0]


def test_a_proxy_offering_only_negotiate_is_named_as_such(monkeypatch):
    monkeypatch.setattr("credproxy.egress.negotiate_available", lambda: False)
    addon = UpstreamProxyAddon(egress(HTTPS_PROXY="http://proxy.corp:3128"))
    inner, tunnel = connection.Server(address=("pkgs.test", 443)), connection.Server(address=("proxy.corp", 3128))
    addon._refused(inner, tunnel, 407, "Proxy Authentication Required", ("Negotiate", "NTLM"))
    flow = tflow.tflow()
    flow.response, flow.server_conn = None, inner
    addon.requestheaders(flow)
    text = flow.response.get_text()
    assert "It asks for Negotiate, NTLM" in text and "pip install 'credproxy[negotiate]'" in text


def test_a_proxy_that_had_no_login_is_asked_again_after_its_407():
    """No login at the first CONNECT (the netrc entry added afterwards, a keyring that timed out):
    the proxy's 407 makes the next CONNECT ask the chain again instead of going bare until restart."""
    logins = ProxyLogins(None)
    addon = UpstreamProxyAddon(egress(HTTPS_PROXY="http://proxy.corp:3128"), logins)
    tunnel = connection.Server(address=("proxy.corp", 3128))

    def connect():
        upstream = connect_flow()
        upstream.server_conn = connection.Server(address=("proxy.corp", 3128))
        asyncio.run(addon.http_connect_upstream(upstream))
        return upstream

    assert "Proxy-Authorization" not in connect().request.headers
    addon._sent[tunnel.id] = None
    addon._refused(connection.Server(address=("pkgs.test", 443)), tunnel, 407, "Proxy Authentication Required", ("Basic",))
    logins.creds = Credentials.basic("bob", SECRET)  # the user fixed it
    assert connect().request.headers["Proxy-Authorization"].startswith("Basic ")
    assert len(logins.calls) == 2


def test_a_failed_login_lookup_is_not_remembered():
    class Failing(ProxyLogins):
        async def aproxy_credentials(self, url, username=None):
            self.calls.append((url, username))
            if len(self.calls) == 1:
                raise TimeoutError("keyring")
            return await super().aproxy_credentials(url, username)

    logins = Failing(Credentials.basic("bob", SECRET))
    addon = UpstreamProxyAddon(egress(HTTPS_PROXY="http://proxy.corp:3128"), logins)
    headers = []
    for _ in range(2):
        upstream = connect_flow()
        upstream.server_conn = connection.Server(address=("proxy.corp", 3128))
        asyncio.run(addon.http_connect_upstream(upstream))
        headers.append(upstream.request.headers.get("Proxy-Authorization"))
    assert headers[0] is None and headers[1].startswith("Basic ")


def test_warnings_remember_a_bounded_number_of_keys(monkeypatch):
    import credproxy.addons.upstream_proxy as mod
    monkeypatch.setattr(mod, "MAX_RECORDS", 5)
    addon = UpstreamProxyAddon(egress(HTTPS_PROXY="http://proxy.corp:3128"))
    for i in range(50):
        addon._warn_every(("unreachable", f"host{i}.test:443"), "cannot connect")
    assert len(addon._logged) == 5


def test_the_407_body_length_is_read_only_when_it_is_one_small_decimal_number():
    from credproxy.addons.upstream_proxy import MAX_407_BODY, _closes, _content_length
    head = "HTTP/1.1 407 Proxy Authentication Required\r\n{}\r\n\r\n"
    assert _content_length(head.format("Content-Length: 12").encode()) == 12
    for bad in ("Content-Length: -5", "Content-Length: 5\r\nContent-Length: 7", "Content-Length: 0x10"):
        assert _content_length(head.format(bad).encode()) is None, bad
    assert _content_length(head.format(f"Content-Length: {10**12}").encode()) > MAX_407_BODY  # capped by the caller
    assert _closes(head.format("Connection: keep-alive, close").encode())
    assert not _closes(head.format("Connection: keep-alive-closely").encode())
