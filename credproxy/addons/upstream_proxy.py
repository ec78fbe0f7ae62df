"""Chaining to the company proxy: per connection, direct or through the proxy that
credproxy/egress.py chooses (HTTPS_PROXY & co, NO_PROXY, --upstream-proxy).

mitmproxy runs in regular mode; for each host that must leave through the company proxy we do
what its upstream mode does, per connection, with its own parts (the `HttpUpstreamProxy`
tunnel layer and `server.via`) rather than a proxy client of our own.

Hooks and why:
- `http_connect` (a client's CONNECT, after mitmproxy's proxyauth let it in): regular mode
  would now connect straight to the target (eager strategy). For a host routed through the
  company proxy we mark the server connection `via` the proxy and answer the CONNECT
  ourselves (200), as upstream mode does (`HttpStream.handle_connect_upstream`); that skips the
  direct connection.
- `next_layer`: the layer under that CONNECT becomes mitmproxy's upstream-proxy tunnel
  (subclassed only to record a refusal), so whatever runs inside it — intercepted TLS or a
  passthrough relay — opens its server connection with a CONNECT to the company proxy.

Placement (proxy/master.py): the addon goes last, so that every addon that may refuse a
CONNECT (proxy authentication) has answered before `http_connect` here answers 200; only its
`layer_hook` (the `next_layer` hook) sits before mitmproxy's NextLayer, to decide first.
- `requestheaders`: plain-http requests get `server_conn.via`, and mitmproxy's HttpLayer
  tunnels them through the proxy (CONNECT host:80) itself; re-sent requests and reconnects
  inherit `via`. A request whose tunnel the company proxy refused is answered here with a 502
  that says so and names the fix, never as a registry failure.
- `http_connect_upstream` (mitmproxy's CONNECT to the company proxy): Proxy-Authorization
  Basic from the proxy URL's userinfo, else from the credential chain for the proxy's host
  (Resolver.aproxy_credentials: netrc machine, store, keyring), looked up once per proxy.
- With a PAC file (`upstream-proxy = "pac+…"`, credproxy/pac.py) the addon's `pac_hook`, placed
  just before it, has async `http_connect` and `requestheaders`: a host's first evaluation (a
  child process, up to pac.EVAL_TIMEOUT) runs in a worker thread and fills the cache that
  `route()` then reads, so it never stalls other connections.
- PAC fall-through (`PROXY a:1; PROXY b:2; DIRECT`): the same `pac_hook` then connects to the
  first entry itself, asynchronously and bounded by `Egress.connect_timeout`; a proxy that
  cannot be connected to is marked bad (pac.BadProxies, 30 min) and the next entry is tried,
  for this very request, before the addon sets `server.via` (or goes DIRECT). It has to be
  decided there: once the tunnel layer exists, a failed OpenConnection ends in the client's
  error and no hook can retry it (proxy/server.py: `server_connect_error` only reports), and
  mitmproxy's own connect has no time limit. The probe connection is closed; mitmproxy's own
  connect follows at once. Every proxy failing with no DIRECT left: the client gets a 502
  naming the proxies tried (the CONNECT's answer, or the plain-http request's).
- `server_connect_error`, `error`: a proxy that cannot be reached, or a refusal on a
  connection mitmproxy's HttpLayer opened, is logged once with the fix; a PAC proxy that
  mitmproxy itself could not connect to is marked bad too.

The proxy password goes only into the Proxy-Authorization of CONNECTs to that proxy, which
are not flows any other hook or the flow file sees; logs and answers show `user:****`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import OrderedDict

from mitmproxy import http

from ..credentials.model import Credentials, redact_text
from ..egress import Egress, ProxyURL, Refusal, Route, connect_reason, parse_connect_answer, refusal_message

logger = logging.getLogger("credproxy.upstream_proxy")

MAX_RECORDS = 4096
LOG_EVERY = 60.0  # seconds between two log lines about the same refusal
ERROR_HEADER = "X-Credproxy-Error"


_tunnel_class = None
MAX_LEGS = 4  # CONNECTs on one connection while negotiating (NTLM needs 3)
_SCHEME_NAMES = {"negotiate": "Negotiate", "ntlm": "NTLM"}


def tunnel_class():
    """mitmproxy's upstream-proxy tunnel layer, subclassed to record a refused or unreachable
    proxy and to continue a Negotiate/NTLM exchange on the same connection. Installed as
    mitmproxy's own (`_upstream_proxy.HttpUpstreamProxy`), so the tunnels its HttpLayer opens
    (plain http, re-sends, reconnects) behave the same; without an addon it is the original."""
    global _tunnel_class
    if _tunnel_class is not None:
        return _tunnel_class
    from mitmproxy.proxy import commands
    from mitmproxy.proxy.layers.http import _upstream_proxy

    class ChainTunnel(_upstream_proxy.HttpUpstreamProxy):
        addon: "UpstreamProxyAddon | None" = None

        def __init__(self, ctx, tunnel_conn, send_connect):
            super().__init__(ctx, tunnel_conn, send_connect)
            self._raw = b""
            self._legs = 1
            if self.addon is not None:
                _remember(self.addon._tunnels, tunnel_conn.id, self.conn)

        def _connect_request(self, authorization: str) -> bytes:
            host, port = self.conn.address[0], self.conn.address[1]
            authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            return (f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
                    f"Proxy-Authorization: {authorization}\r\n\r\n").encode("latin-1")

        def receive_handshake_data(self, data):
            if not self.send_connect or self.addon is None:
                return (yield from super().receive_handshake_data(data))
            self._raw += data
            end = self._raw.find(b"\r\n\r\n")
            if end < 0 and len(self._raw) < 65536:
                return False, None
            head = self._raw[:end + 4] if end >= 0 else self._raw
            status, reason, schemes = parse_connect_answer(head)
            next_connection = False
            if status == 407 and end >= 0 and self._legs < MAX_LEGS:
                length = _content_length(head)
                if length is not None and length > MAX_407_BODY:
                    length = None  # not waited for (bounded): the connection is not reused
                if length is not None and len(self._raw) < end + 4 + length:
                    return False, None  # the 407's body is still coming
                authorization = self.addon._negotiate(self.tunnel_connection, head)
                if authorization is not None and length is not None and not _closes(head):
                    self._legs += 1
                    self._raw = self._raw[end + 4 + length:]
                    yield commands.SendData(self.tunnel_connection, self._connect_request(authorization))
                    return False, None
                # the proxy closes after naming Negotiate/NTLM: the next connection starts with it
                next_connection = authorization is not None
            raw, self._raw = self._raw, b""
            done, err = yield from super().receive_handshake_data(raw)
            if err and not next_connection:
                self.addon._refused(self.conn, self.tunnel_connection, status, reason or err, schemes)
            return done, err

    _upstream_proxy.HttpUpstreamProxy = ChainTunnel  # HttpLayer looks it up there on each use
    _tunnel_class = ChainTunnel
    return ChainTunnel


# a 407's body is read (to reuse the connection for the next Negotiate/NTLM leg) up to this
MAX_407_BODY = 65536


def _header_values(head: bytes, name: str) -> list[str]:
    out = []
    for line in head.decode("latin-1", "replace").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            out.append(value.strip())
    return out


def _content_length(head: bytes) -> int | None:
    values = _header_values(head, "content-length")
    if not values:
        return None if _header_values(head, "transfer-encoding") else 0
    if len(set(values)) != 1 or not values[0].isdigit():
        return None  # conflicting or not a length: the body is not waited for
    return int(values[0])


def _closes(head: bytes) -> bool:
    return any(token.strip().lower() == "close"
               for v in _header_values(head, "connection") + _header_values(head, "proxy-connection")
               for token in v.split(","))


def _challenges(head: bytes) -> dict[str, str | None]:
    """Proxy-Authenticate: scheme (as the proxy spelled it, lower-case key) -> its token."""
    out: dict[str, str | None] = {}
    for value in _header_values(head, "proxy-authenticate"):
        scheme, _, token = value.partition(" ")
        out.setdefault(scheme.lower(), token.strip() or None)
    return out


class UpstreamProxyAddon:
    """One per proxy. `egress` decides the route; `resolver` answers the proxy's password."""

    def __init__(self, egress: Egress, resolver=None):
        self.egress = egress
        self.resolver = resolver
        self._marked: OrderedDict[str, ProxyURL] = OrderedDict()  # server id -> proxy, CONNECT -> next_layer
        self._tunnels: OrderedDict[str, object] = OrderedDict()  # tunnel connection id -> inner server
        self._refusals: OrderedDict[str, Refusal] = OrderedDict()  # inner server id -> refusal
        self._creds: dict[ProxyURL, tuple[Credentials | None, str | None]] = {}
        self._sent: OrderedDict[str, str | None] = OrderedDict()  # tunnel connection id -> source sent
        self._logged: OrderedDict[tuple, float] = OrderedDict()  # warning key -> when last logged
        self._contexts: OrderedDict[str, tuple[str, object]] = OrderedDict()  # tunnel id -> (scheme, spnego ctx)
        self._wants: dict[ProxyURL, str] = {}  # proxies that answered Basic with Negotiate/NTLM only
        self._chosen: OrderedDict[str, Route] = OrderedDict()  # flow id -> the route pac_hook connected
        tunnel_class().addon = self
        self.layer_hook = _LayerHook(self)
        self.pac_hook = _PacHook(self)

    # --- routing -------------------------------------------------------------------------------

    def _proxy_for(self, address) -> ProxyURL | None:
        if not address:
            return None
        for proxy in self.egress.proxies:
            if (proxy.host, proxy.port) == (str(address[0]).lower(), int(address[1])):
                return proxy
        return None

    def route(self, scheme: str, host: str, port: int) -> Route:
        return self.egress.route(scheme, host, port)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or not self.egress.chaining:
            return  # refused by proxyauth; or nothing to chain to
        route = self._chosen.pop(flow.id, None) or self.route("https", flow.request.host, flow.request.port)
        logger.debug("CONNECT %s:%s %s", flow.request.host, flow.request.port, route.describe())
        if route.unreachable:
            flow.response = self._unreachable(route, flow)
            return
        if route.proxy is None:
            return
        server = flow.server_conn
        server.via = (route.proxy.scheme, (route.proxy.host, route.proxy.port))
        _remember(self._marked, server.id, route.proxy)
        now = time.time()
        # what HttpStream.handle_connect_finish sends; set here, it skips the direct connect
        flow.response = http.Response(flow.request.data.http_version, 200, b"Connection established",
                                      http.Headers(), b"", None, now, now)

    def next_layer(self, nextlayer) -> None:
        if nextlayer.layer is not None:
            return
        context = nextlayer.context
        server = context.server
        if server is None or self._marked.pop(server.id, None) is None or server.via is None:
            return
        from mitmproxy.proxy.layers.http import HttpStream

        if not context.layers or not isinstance(context.layers[-1], HttpStream):
            return
        nextlayer.layer = tunnel_class().make(context, True)[0]

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        server = flow.server_conn
        refusal = self._refusals.get(server.id) if server is not None else None
        if refusal is not None:
            flow.response = http.Response.make(
                502, (self._message(refusal) + "\n").encode(),
                {"Content-Type": "text/plain; charset=utf-8", ERROR_HEADER: "upstream-proxy"})
            return
        if flow.request.scheme != "http" or server is None or not self.egress.chaining:
            return
        route = self._chosen.pop(flow.id, None) or self.route("http", flow.request.host, flow.request.port)
        if route.unreachable:
            flow.response = self._unreachable(route, flow)
            return
        want = (route.proxy.scheme, (route.proxy.host, route.proxy.port)) if route.proxy else None
        if server.via != want:
            try:
                server.via = want
            except RuntimeError:  # an open connection keeps its route (a re-send's copy)
                logger.debug("kept the route of an open connection to %s", flow.request.host)

    # --- authentication --------------------------------------------------------------------------

    async def http_connect_upstream(self, flow: http.HTTPFlow) -> None:
        proxy = self._proxy_for(flow.server_conn.address if flow.server_conn else None)
        if proxy is None:
            return
        creds, source = await self._credentials(proxy)
        _remember(self._sent, flow.server_conn.id, source)
        scheme = self._wants.get(proxy)
        if scheme is not None:
            # this proxy wants Negotiate/NTLM: never its Basic password in the clear; start
            # the exchange now, the tunnel layer continues it on this connection
            authorization = self._start_negotiate(flow.server_conn, proxy, scheme, creds)
            if authorization is not None:
                flow.request.headers["Proxy-Authorization"] = authorization
            return
        if creds is not None:
            flow.request.headers["Proxy-Authorization"] = creds.header_value()

    # --- Negotiate / NTLM (pyspnego, the `negotiate` extra) ------------------------------------

    def _start_negotiate(self, tunnel_conn, proxy: ProxyURL, scheme: str, creds: Credentials | None) -> str | None:
        try:
            import spnego
        except ImportError:
            return None
        try:
            if creds is not None and creds.username:
                context = spnego.client(creds.username, creds.password, hostname=proxy.host, service="HTTP",
                                        protocol="ntlm" if scheme == "ntlm" else "negotiate")
            else:  # the current user's (Kerberos ticket cache, or NTLM_USER_FILE)
                context = spnego.client(hostname=proxy.host, service="HTTP",
                                        protocol="ntlm" if scheme == "ntlm" else "negotiate")
            token = context.step()
        except Exception as e:  # noqa: BLE001 - the type only: never a credential in a log line
            logger.warning("starting %s with the company proxy %s failed (%s)", scheme, proxy.display, type(e).__name__)
            return None
        if not token:
            return None
        _remember(self._contexts, tunnel_conn.id, (scheme, context))
        label = self._sent.get(tunnel_conn.id)
        _remember(self._sent, tunnel_conn.id, f"{label or 'the current user'} via {_SCHEME_NAMES[scheme]}")
        return f"{_SCHEME_NAMES[scheme]} {base64.b64encode(token).decode('ascii')}"

    def _negotiate(self, tunnel_conn, head: bytes) -> str | None:
        """The next Proxy-Authorization after a 407 on `tunnel_conn`, or None (then the 407
        stands). Starts Negotiate (preferred) or NTLM when the proxy offers it and a Basic
        login was not what it wanted; continues an exchange with the proxy's token."""
        challenges = _challenges(head)
        proxy = self._proxy_for(tunnel_conn.address)
        if proxy is None:
            return None
        ongoing = self._contexts.get(tunnel_conn.id)
        if ongoing is not None:
            scheme, context = ongoing
            token = challenges.get(scheme)
            if not token:
                return None  # the proxy started over: the login was refused
            try:
                out = context.step(base64.b64decode(token))
            except Exception as e:  # noqa: BLE001
                logger.debug("%s with %s failed (%s)", scheme, proxy.display, type(e).__name__)
                return None
            return f"{_SCHEME_NAMES[scheme]} {base64.b64encode(out).decode('ascii')}" if out else None
        scheme = next((s for s in ("negotiate", "ntlm") if s in challenges), None)
        if scheme is None or "basic" in challenges:
            return None
        self._wants[proxy] = scheme
        creds = proxy.credentials if proxy.credentials is not None and proxy.credentials.is_complete \
            else self._creds.get(proxy, (None, None))[0]
        return self._start_negotiate(tunnel_conn, proxy, scheme, creds)

    def use_egress(self, egress: Egress) -> None:
        """After a reload: new connections take their route from the new plan (an
        `upstream-proxy` changed or removed in the config); open ones keep theirs. Logins
        are looked up afresh."""
        self.egress = egress
        self._creds.clear()
        self._wants.clear()

    def use_resolver(self, resolver) -> None:
        """After a reload: the new resolver answers proxy logins, looked up afresh (a lookup
        the old one is still making serves its own CONNECT only, see `_credentials`)."""
        self.resolver = resolver
        self._creds.clear()

    async def _credentials(self, proxy: ProxyURL) -> tuple[Credentials | None, str | None]:
        if proxy.credentials is not None and proxy.credentials.is_complete:
            return proxy.credentials, "url"
        cached = self._creds.get(proxy)
        if cached is not None:
            return cached
        found: tuple[Credentials | None, str | None] = (None, None)
        resolver = self.resolver
        if resolver is not None:
            username = proxy.credentials.username if proxy.credentials is not None else None
            try:
                decision = await resolver.aproxy_credentials(proxy.url, username)
            except Exception as e:  # noqa: BLE001 - the type only: a source's text may quote a secret
                logger.warning("looking up the login for the company proxy %s failed (%s)", proxy.display,
                               type(e).__name__)
                return found  # not remembered: the next CONNECT asks again
            if decision is not None and decision.action == "inject" and decision.credentials is not None:
                found = (decision.credentials, decision.source)
                logger.info("company proxy %s: login %s from %s", proxy.display, decision.credentials.redacted(),
                            decision.source)
            elif decision is not None:
                logger.info("company proxy %s: %s", proxy.display, decision.reason)
        if resolver is self.resolver:
            # kept only while the resolver that found it is current: a reload during the
            # lookup (a source turned off, an entry removed) emptied the cache, and an old
            # answer stored now would outlive it for as long as the proxy runs
            self._creds[proxy] = found
        return found

    # --- failures ------------------------------------------------------------------------------

    def _origin(self, proxy: ProxyURL) -> str:
        if proxy == self.egress.https:
            return self.egress.https_origin
        if proxy == self.egress.http:
            return self.egress.http_origin
        if self.egress.pac is not None:
            return f"the PAC file {self.egress.pac.display}"
        return ""

    def _message(self, refusal: Refusal) -> str:
        return redact_text(refusal_message(refusal, self._origin(refusal.proxy)), self._secrets())

    def _refused(self, server, tunnel_conn, status, reason, schemes) -> None:
        proxy = self._proxy_for(tunnel_conn.address) or ProxyURL("http", str(tunnel_conn.address[0]),
                                                                 int(tunnel_conn.address[1]))
        target = f"{server.address[0]}:{server.address[1]}" if server.address else "?"
        refusal = Refusal(proxy, target, status, reason, schemes, self._sent.get(tunnel_conn.id))
        _remember(self._refusals, server.id, refusal)
        if status == 407 and refusal.sent != "url":
            # ask the chain again next time (also when it found nothing): the user may fix it
            self._creds.pop(proxy, None)
        key = (proxy, status, refusal.sent, target if status != 407 else "")
        self._warn_every(key, self._message(refusal))

    def _warn_every(self, key: tuple, text: str) -> None:
        """One warning per `key` each LOG_EVERY seconds; at most MAX_RECORDS keys remembered."""
        now = time.monotonic()
        if now - self._logged.get(key, -LOG_EVERY) >= LOG_EVERY:
            _remember(self._logged, key, now)
            logger.warning("%s", text)

    def _unreachable(self, route: Route, flow: http.HTTPFlow) -> http.Response:
        """The 502 for a request none of whose PAC proxies could be connected to."""
        target = f"{flow.request.host}:{flow.request.port}"
        text = redact_text(route.unreachable_message(target), self._secrets())
        key = ("unreachable", tuple(p for p, _ in route.unreachable), target)
        self._warn_every(key, text)
        response = http.Response.make(502, (text + "\n").encode(), {
            "Content-Type": "text/plain; charset=utf-8", ERROR_HEADER: "upstream-proxy"})
        # clients that show only the status line (pip: "Tunnel connection failed: 502 ...") name them too
        response.reason = "Bad Gateway: credproxy cannot connect to the company proxy " + ", ".join(
            p.display for p, _ in route.unreachable)
        return response

    def _secrets(self) -> list[str]:
        secrets = [p.credentials.password for p in self.egress.proxies if p.credentials is not None]
        return secrets + [c.password for c, _ in self._creds.values() if c is not None]

    def server_connect_error(self, data) -> None:
        pac = self.egress.pac
        # a failed connect (mitmproxy set timestamp_start before trying; an addon's kill did not)
        if pac is not None and data.server.timestamp_start is not None:
            proxy = self._proxy_for(data.server.address)
            if proxy is not None and proxy in self.egress.pac_proxies:
                pac.bad.mark(proxy, data.server.error or "connection failed")
        server = self._tunnels.pop(data.server.id, None)
        if server is None:
            return
        self._refused(server, data.server, None, data.server.error or "connection failed", ())

    def error(self, flow: http.HTTPFlow) -> None:
        """A connection mitmproxy's HttpLayer tunnelled itself (plain http, re-sends) was
        refused: its text is mitmproxy's "Upstream proxy H:P refused HTTP CONNECT request: 407
        ..."; log ours with the fix."""
        msg = flow.error.msg if flow.error is not None else ""
        via = flow.server_conn.via if flow.server_conn is not None else None
        if via is None or "refused HTTP CONNECT request:" not in msg:
            return
        proxy = self._proxy_for(via[1])
        if proxy is None:
            return
        status_text = msg.rsplit("request:", 1)[1].strip()
        status, _, reason = status_text.partition(" ")
        target = f"{flow.request.host}:{flow.request.port}"
        refusal = Refusal(proxy, target, int(status) if status.isdigit() else None, reason or status_text,
                          (), self._creds.get(proxy, (None, "url" if proxy.credentials else None))[1])
        key = (proxy, refusal.status, refusal.sent, "")
        self._warn_every(key, self._message(refusal))


class _LayerHook:
    """The addon's `next_layer` hook alone, inserted before mitmproxy's NextLayer addon."""

    def __init__(self, addon: UpstreamProxyAddon):
        self.addon = addon

    def next_layer(self, nextlayer) -> None:
        self.addon.next_layer(nextlayer)


class _PacHook:
    """Async `http_connect` and `requestheaders` just before the addon: a host's first PAC
    evaluation runs in a worker thread (asyncio.to_thread), off the event loop; then the
    answer's entries are connected to in order (asyncio, each bounded by the connect timeout)
    until one connects or DIRECT comes; the addon's hooks take that route (`_chosen`)."""

    def __init__(self, addon: UpstreamProxyAddon):
        self.addon = addon

    @property
    def egress(self) -> Egress:
        return self.addon.egress  # the current plan: a reload may swap it (use_egress)

    async def _choose(self, flow: http.HTTPFlow, scheme: str) -> None:
        egress = self.egress
        if egress.pac is None or egress.disabled is not None:
            return
        host, port = flow.request.host, flow.request.port
        await asyncio.to_thread(egress.pac.result, scheme, host, port)
        route = egress.route(scheme, host, port)
        if route.proxy is None:
            return
        tried: list[tuple[ProxyURL, str]] = []
        candidates = (route.proxy, *route.alternatives)
        chosen = None
        for i, candidate in enumerate(candidates):
            if candidate is None:
                chosen = Route(None, f"{route.reason}; going DIRECT after {_tried(tried)}")
                break
            why = await _connect_error(candidate, egress.connect_timeout)
            if why is None:
                egress.pac.bad.clear(candidate)
                chosen = route if not tried else Route(
                    candidate, f"{route.reason}; {_tried(tried)}", alternatives=tuple(candidates[i + 1:]))
                break
            fresh = egress.pac.bad.get(candidate) is None  # logged once, not by every waiting request
            egress.pac.bad.mark(candidate, why)
            tried.append((candidate, why))
            following = candidates[i + 1] if i + 1 < len(candidates) else "nothing"
            if not fresh:
                continue
            logger.warning("company proxy %s (from the PAC file %s) cannot be connected to: %s; skipped for %.0f min, "
                           "trying %s for %s:%s", candidate.display, egress.pac.display, why,
                           egress.pac.bad.ttl / 60, "DIRECT" if following is None else getattr(
                               following, "display", following), host, port)
        if chosen is None:
            chosen = Route(None, route.reason, unreachable=tuple(tried))
        _remember(self.addon._chosen, flow.id, chosen)

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response is None:
            await self._choose(flow, "https")

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is None and flow.request.scheme == "http":
            await self._choose(flow, "http")


def _tried(tried: list[tuple[ProxyURL, str]]) -> str:
    return "could not connect to " + ", ".join(f"{p.display} ({why})" for p, why in tried)


async def _connect_error(proxy: ProxyURL, timeout: float) -> str | None:
    """None when a TCP connection to `proxy` opens within `timeout` seconds (then closed), else why not."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(proxy.host, proxy.port), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        return f"no connection within {timeout:g} s"
    except OSError as e:
        return connect_reason(e)
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return None


def _remember(store: OrderedDict, key, value) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > MAX_RECORDS:
        store.popitem(last=False)
