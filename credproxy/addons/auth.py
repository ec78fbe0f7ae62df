"""Credentials on requests: inject before sending, re-send once after a challenge.

Thin by design: every decision comes from the resolver (credproxy/credentials/resolver.py);
this addon only translates flows into resolver calls and back.

Hooks and why:
- `requestheaders`: the only place where a new `Authorization` still reaches upstream for a
  streamed body (mitmproxy-notes.md §5). The URL is built from `flow.request.scheme/host/
  port/path`, the real destination, never from the client-controlled Host header. It is also
  the first place that sees a request's Host header / `:authority` (and, inside a tunnel,
  the client's TLS SNI): when they do not name that destination the request is answered
  `421` before any lookup, because a shared front end (CDN, SNI/Host-routing reverse proxy)
  would route it, with the destination's credential, to the host they name.
- `responseheaders`: decides per flow whether the body streams (everything that is not a
  challenge we may answer) and records the outcome early so the cache fills before a large
  download ends.
- `response`: on a challenge (401; 403/404 when the request went out bare) asks the resolver
  once and re-sends a copy of the request through mitmproxy's own replay machinery, so the
  copy gets the same upstream TLS policy. The client gets the second response on its
  existing connection: works for clients that do not follow redirects (curl without -L).

Fail closed: any error while building or setting a credential answers the client `502` with
the reason; the request never goes out bare instead.

Memory (docs/how-it-works.md): ordinary responses stream (flat memory). A challenge response
is buffered up to `CHALLENGE_BODY_LIMIT`, whatever its framing: mitmproxy's
`stream_large_bodies` (set to that limit by the proxy master) switches a longer body, chunked
or HTTP/2 without a length, to streaming; such a response goes to the client as it is and
nothing is re-sent. The re-sent request's response is kept in memory up to
`RETRY_BUFFER_LIMIT`; a larger one is abandoned and the client is answered with a
307 to the same URL: the credential is cached by then, so the repeated request is
authenticated up front and streams. A large request body (an upload) that goes out with a
credential streams with no copy kept: it is never re-sent. One that goes out without a
credential is copied up to `REQUEST_COPY_LIMIT` so a re-send after a challenge can carry it;
larger uploads are not re-sent (the client sees the challenge).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import weakref
from dataclasses import dataclass, field

from mitmproxy import ctx, http

from .. import hints
from ..credentials.model import Credentials, redact_url
from ..credentials.resolver import Decision

logger = logging.getLogger("credproxy.auth")

# Bodies larger than this stream (what `stream_large_bodies=1m` would do; we decide per flow
# because the global option makes replayed responses lose their body).
STREAM_THRESHOLD = 1 << 20
# A request body up to this size is kept for a possible re-send (tee for streamed bodies).
REQUEST_COPY_LIMIT = 16 << 20
# The re-sent request's response is held in memory up to this size before it is sent on.
RETRY_BUFFER_LIMIT = 32 << 20
CHALLENGE_BODY_LIMIT = 1 << 20

METADATA_KEY = "credproxy"
# Marks the copy this addon re-sends, so hooks (ours and the audit log's) can tell it apart.
RETRY_MARK = "credproxy_retry_of"

# The credentials this addon put on a flow (pre-emptively or on its re-send), for the flow
# saver's redaction. Kept here, never in flow.metadata, so it cannot be serialised.
_INJECTED: "weakref.WeakKeyDictionary[http.HTTPFlow, list[Credentials]]" = weakref.WeakKeyDictionary()


def injected_credentials(flow: http.HTTPFlow) -> list[Credentials]:
    """Every credential the proxy added to `flow` (first request and re-send)."""
    return list(_INJECTED.get(flow, ()))


def _remember_injected(flow: http.HTTPFlow, credentials: Credentials | None) -> None:
    if credentials is not None:
        _INJECTED.setdefault(flow, []).append(credentials)


@dataclass
class _FlowState:
    """Per flow, kept out of flow.metadata so a Decision (which holds a credential) can never
    be serialised into a saved flow."""

    url: str
    decision: Decision
    #: the resolver that made `decision`: its outcome is recorded there. A reload may have
    #: swapped in a new resolver (a logout, a changed store) while the request was upstream;
    #: recording the old decision into the new session cache would bring back a credential
    #: the user just removed.
    resolver: object = None
    body_copy: bytearray | None = None
    body_complete: bool = True
    challenged: bool = False
    recorded: bool = False


@dataclass
class _RetryState:
    body: bytearray = field(default_factory=bytearray)
    overflow: bool = False


def request_url(request: http.Request) -> str:
    """The destination URL as mitmproxy will connect to it (never the Host header)."""
    host = request.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(request.scheme)
    netloc = host if request.port == default else f"{host}:{request.port}"
    path = request.path if request.path.startswith("/") else "/" + request.path
    if request.method.upper() == "CONNECT" or not request.path:
        path = "/"
    return f"{request.scheme}://{netloc}{path}"


def _expected_length(message: http.Message) -> int | None:
    value = message.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _has_body(request: http.Request) -> bool:
    length = _expected_length(request)
    if length is not None:
        return length > 0
    return "chunked" in request.headers.get("transfer-encoding", "").lower()


def _metadata(decision: Decision, retried: bool) -> dict:
    return {
        "source": decision.source,
        "preemptive": decision.preemptive,
        "retried": retried,
        "action": decision.action,
        "reason": decision.reason,
        "cached": decision.cached,
    }


def _text_response(status: int, text: str) -> http.Response:
    return http.Response.make(status, (text.rstrip("\n") + "\n").encode(), {"content-type": "text/plain; charset=utf-8"})


_PORT = re.compile(r"[0-9]{1,5}")


def _normal_host(host: str) -> str:
    """Case, a trailing dot and IPv6 spelling do not matter."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.endswith(".") and not host.endswith(".."):
        host = host[:-1]
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host


def _parse_authority(value: str) -> tuple[str, int | None] | None:
    """`host`, `host:port`, `[v6]`, `[v6]:port` -> (host, port or None); None if malformed."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1:]
    elif value.count(":") > 1:
        return None  # an IPv6 address must be bracketed in a Host header
    else:
        host, sep, port = value.partition(":")
        rest = sep + port
    if not host:
        return None
    if rest in ("", ":"):
        return host, None
    if rest.startswith(":") and _PORT.fullmatch(rest[1:]):
        return host, int(rest[1:])
    return None


def names_destination(value: str, scheme: str, host: str, port: int) -> bool:
    """Whether a Host header / `:authority` value names (host, port) of this scheme."""
    parsed = _parse_authority(value)
    if parsed is None:
        return False
    named_host, named_port = parsed
    if named_port is None:
        named_port = {"http": 80, "https": 443}.get(scheme)
    return _normal_host(named_host) == _normal_host(host) and named_port == port


def misdirection(flow: http.HTTPFlow) -> str | None:
    """Why this request does not go where its Host header / `:authority` / TLS SNI says,
    or None when they all name the real destination (absent values are fine)."""
    request = flow.request
    scheme, host, port = request.scheme, request.host, request.port
    named = [("Host header", v) for v in request.headers.get_all("host")]
    if request.authority and (request.is_http2 or request.is_http3 or "host" not in request.headers):
        named.append((":authority", request.authority))
    for what, value in named:
        if not names_destination(value, scheme, host, port):
            return f"the {what} {_shown(value)} does not name this connection's destination"
    sni = getattr(flow.client_conn, "sni", None)
    if scheme == "https" and sni and _normal_host(sni) != _normal_host(host):
        return f"the TLS server name {_shown(sni)} does not name this connection's destination"
    return None


def _shown(value: str) -> str:
    """A client-supplied name for a message and the log: userinfo masked, bounded, quoted
    with control characters escaped (repr)."""
    if "@" in value:
        value = "****@" + value.rpartition("@")[2]
    text = value if len(value) <= 100 else value[:100] + "..."
    return repr(text)


class AuthAddon:
    """One instance per proxy. `resolver` follows the Resolver contract."""

    def __init__(self, resolver, *, retry_buffer_limit: int = RETRY_BUFFER_LIMIT):
        self.resolver = resolver
        self.retry_buffer_limit = retry_buffer_limit
        self._flows: weakref.WeakKeyDictionary[http.HTTPFlow, _FlowState] = weakref.WeakKeyDictionary()
        self._retries: weakref.WeakKeyDictionary[http.HTTPFlow, _RetryState] = weakref.WeakKeyDictionary()
        self._rejected = hints.RejectedCredentials()  # one WARNING per rejected credential

    # --- request ---------------------------------------------------------------------------

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        _drop_proxy_headers(flow.request)
        if RETRY_MARK in flow.metadata or flow.response is not None:
            return  # our own re-send carries its credentials already; or answered by proxyauth
        url = request_url(flow.request)
        why = misdirection(flow)
        if why is not None:
            flow.metadata[METADATA_KEY] = {
                "source": "none", "preemptive": False, "retried": False,
                "action": "refuse", "reason": why, "cached": False,
            }
            flow.response = _text_response(
                421, f"credproxy: {why} ({_destination(flow.request)}); no credential was sent. "
                "Send requests for another host through a tunnel (CONNECT) to that host.")
            return
        client_auth = flow.request.headers.get("authorization")
        resolver = self.resolver
        try:
            decision = await resolver.aresolve(url, client_auth)
        except Exception as e:  # fail closed: never forward silently without the lookup
            logger.error("credential lookup failed for %s: %s", redact_url(url), type(e).__name__)
            flow.metadata[METADATA_KEY] = {
                "source": "none", "preemptive": True, "retried": False,
                "action": "fail", "reason": f"credential lookup failed ({type(e).__name__})", "cached": False,
            }
            flow.response = _text_response(
                502, f"credproxy: looking up credentials for {redact_url(url)} failed ({type(e).__name__}); "
                "see the proxy's log or run `credproxy explain URL`")
            return

        state = _FlowState(url=url, decision=decision, resolver=resolver)
        self._flows[flow] = state
        flow.metadata[METADATA_KEY] = _metadata(decision, retried=False)

        if decision.action == "fail":
            flow.response = _text_response(401, f"credproxy: {decision.reason or 'no credentials for ' + redact_url(url)}")
            return
        if decision.action == "inject" and decision.credentials is not None:
            try:
                flow.request.headers["authorization"] = _header(decision)
            except Exception as e:  # fail closed: never forward without the credential
                self._flows.pop(flow, None)  # it never went upstream: nothing to record
                self._refuse_broken_credential(flow, state, decision, e)
                return
            _remember_injected(flow, decision.credentials)

        if decision.action == "send" and _has_body(flow.request):
            length = _expected_length(flow.request)
            if length is None or length > STREAM_THRESHOLD:
                state.body_copy = bytearray()
                flow.request.stream = _tee(state)
        elif decision.action == "inject" and _has_body(flow.request):
            length = _expected_length(flow.request)
            if length is None or length > STREAM_THRESHOLD:
                # authenticated up front: a large upload streams and no copy is kept, so it
                # is never re-sent (a 401 reaches the client)
                state.body_complete = False
                flow.request.stream = True
        elif _has_body(flow.request):
            length = _expected_length(flow.request)
            if length is None or length > STREAM_THRESHOLD:
                flow.request.stream = True

    # --- response --------------------------------------------------------------------------

    async def responseheaders(self, flow: http.HTTPFlow) -> None:
        assert flow.response is not None
        retry_state = self._retries.get(flow)
        if retry_state is not None:
            self._stream_retry_into_buffer(flow, retry_state)
            return
        state = self._flows.get(flow)
        if state is None:
            _stream_if_large(flow.response)
            return
        if self._may_challenge(flow, state):
            state.challenged = True
            flow.response.stream = False
            return
        _stream_if_large(flow.response)
        self._record(state, state.decision, flow.response.status_code)

    async def response(self, flow: http.HTTPFlow) -> None:
        state = self._flows.get(flow)
        if state is None or flow.response is None:
            return
        if not state.challenged:
            self._record(state, state.decision, flow.response.status_code)
            return
        status = flow.response.status_code
        if flow.response.stream:
            # mitmproxy switched the challenge to streaming (its body passed
            # CHALLENGE_BODY_LIMIT): the client has it already; nothing can be re-sent
            self._record(state, state.decision, status)
            self._note(flow, f"upstream answered {status} with a body over "
                       f"{CHALLENGE_BODY_LIMIT >> 10} KiB; passed on, not re-sent")
            return
        resolver = self.resolver  # the current one: a re-send uses what the sources say now
        try:
            retry = await resolver.achallenge(state.url, state.decision, status)
        except Exception as e:  # fail closed: say so rather than pass the challenge on
            logger.error("credential lookup after %d for %s failed: %s", status, redact_url(state.url), type(e).__name__)
            self._record(state, state.decision, status)
            _fail(flow, f"credential lookup failed ({type(e).__name__})", f"credproxy: looking up credentials "
                  f"for {redact_url(state.url)} after a {status} failed ({type(e).__name__}); see the proxy's "
                  "log or run `credproxy explain URL`")
            return
        if retry is None or retry.action != "inject" or retry.credentials is None:
            self._record(state, state.decision, status)
            why = retry.reason if retry is not None and retry.reason else "no source had credentials"
            self._note(flow, f"upstream answered {status}; not re-sent: {why}")
            return
        try:
            header = _header(retry)
        except Exception as e:  # fail closed: a credential that cannot be sent is an error
            self._record(state, state.decision, status)
            self._refuse_broken_credential(flow, state, retry, e)
            return
        try:
            await self._resend(flow, state, retry, header, resolver)
        except Exception as e:  # pragma: no cover - mitmproxy's replay failing in itself
            logger.error("re-sending %s failed: %s", redact_url(state.url), type(e).__name__)
            _fail(flow, f"re-sending with credentials failed ({type(e).__name__})",
                  f"credproxy: re-sending {redact_url(state.url)} with credentials failed "
                  f"({type(e).__name__}); see the proxy's log")

    def error(self, flow: http.HTTPFlow) -> None:
        self._flows.pop(flow, None)

    # --- internals -------------------------------------------------------------------------

    @staticmethod
    def _note(flow: http.HTTPFlow, reason: str) -> None:
        meta = flow.metadata.get(METADATA_KEY)
        if isinstance(meta, dict):  # for the request log's -v: why nothing was re-sent
            meta["reason"] = reason

    @staticmethod
    def _refuse_broken_credential(flow: http.HTTPFlow, state: _FlowState, decision: Decision,
                                  error: Exception) -> None:
        """The credential cannot be put on the request: answer 502, never forward bare."""
        what = decision.source or "a source"
        kind = type(error).__name__
        if isinstance(error, UnicodeError):
            fix = f"it is not valid UTF-8 text ({kind}); store it again in {what} as UTF-8"
        else:
            fix = f"{kind}; see the proxy's log or run `credproxy explain URL`"
        logger.error("the credential from %s for %s cannot be sent: %s", what, redact_url(state.url), kind)
        _fail(flow, f"the credential from {what} cannot be sent ({kind})",
              f"credproxy: the credential from {what} for {redact_url(state.url)} cannot be sent: {fix}. "
              "The request was not forwarded.", source=what)

    def _may_challenge(self, flow: http.HTTPFlow, state: _FlowState) -> bool:
        response = flow.response
        assert response is not None
        decision = state.decision
        if decision.action not in ("inject", "send"):
            return False
        if response.status_code == 401:
            pass
        elif response.status_code in (403, 404) and decision.action == "send":
            pass
        else:
            return False
        if not state.body_complete:
            return False  # the upload was larger than we keep: cannot re-send it
        length = _expected_length(response)
        return length is None or length <= CHALLENGE_BODY_LIMIT

    def _record(self, state: _FlowState, decision: Decision, status: int, resolver=None) -> None:
        """The outcome goes to the resolver that made `decision` (state.resolver, or the one
        that made a re-send's), never to one a reload swapped in since."""
        if state.recorded or decision.action == "fail":  # a refused request never went upstream
            return
        state.recorded = True
        try:
            (resolver or state.resolver or self.resolver).record(state.url, decision, status)
        except Exception as e:
            logger.error("recording the result for %s failed: %s", redact_url(state.url), type(e).__name__)
        if (status in (401, 403) and decision.action == "inject" and decision.source != "client"
                and self._rejected.first_time(state.url, decision, status)):
            # at the default level: the user must learn which entry to replace, and how
            logger.warning("%s", hints.rejected_message(state.url, decision, status))

    def _stream_retry_into_buffer(self, flow: http.HTTPFlow, retry_state: _RetryState) -> None:
        """The re-sent copy's body goes into our own bounded buffer (the replay's mock client
        would drop streamed data; mitmproxy's own buffering is unbounded)."""
        assert flow.response is not None
        length = _expected_length(flow.response)
        if length is not None and length > self.retry_buffer_limit:
            retry_state.overflow = True
            flow.kill()  # do not download what we will not pass on
            return
        limit = self.retry_buffer_limit

        def keep(chunk: bytes) -> bytes:
            if not retry_state.overflow:
                if len(retry_state.body) + len(chunk) > limit:
                    retry_state.overflow = True
                    retry_state.body = bytearray()
                else:
                    retry_state.body += chunk
            return b""  # nothing goes to the replay's mock client

        flow.response.stream = keep

    async def _resend(self, flow: http.HTTPFlow, state: _FlowState, retry: Decision, header: str,
                      resolver) -> None:
        dup = flow.copy()
        dup.response = None
        dup.error = None
        dup.is_replay = "request"
        dup.metadata = {RETRY_MARK: flow.id}
        if state.body_copy is not None:
            dup.request.stream = False
            dup.request.raw_content = bytes(state.body_copy)
        dup.request.headers["authorization"] = header
        _remember_injected(flow, retry.credentials)
        retry_state = _RetryState()
        self._retries[dup] = retry_state

        await _replay(dup, sni=_original_sni(flow))

        if dup.response is None:  # the re-send failed at the network level: keep the challenge
            self._record(state, state.decision, flow.response.status_code if flow.response else 0)
            return
        status = dup.response.status_code
        flow.metadata[METADATA_KEY] = _metadata(retry, retried=True)
        self._record(state, retry, status, resolver)
        if retry_state.overflow:
            # Too large to hold: the credential is cached now, so a repeated request is
            # authenticated up front and streams. Ask the client to repeat it.
            if status < 400 and flow.request.method.upper() in ("GET", "HEAD"):
                flow.response = http.Response.make(307, b"", {"location": flow.request.url})
            return
        response = dup.response
        response.stream = False
        response.raw_content = bytes(retry_state.body)
        flow.response = response


def _header(decision: Decision) -> str:
    """The Authorization value; raises (e.g. UnicodeEncodeError for a password that is not
    valid UTF-8) instead of returning something that cannot go on the wire."""
    assert decision.credentials is not None
    value = decision.credentials.header_value()
    value.encode("utf-8")  # a lone surrogate (undecodable bytes from a file or variable) raises
    if any(c in value for c in "\r\n\x00"):
        raise ValueError("the credential contains a line break or NUL")  # header injection
    return value


def _fail(flow: http.HTTPFlow, reason: str, text: str, *, source: str = "none") -> None:
    flow.metadata[METADATA_KEY] = {
        "source": source, "preemptive": False, "retried": False,
        "action": "fail", "reason": reason, "cached": False,
    }
    flow.response = _text_response(502, text)


def _destination(request: http.Request) -> str:
    host = request.host
    if ":" in host:
        host = f"[{host}]"
    return f"{request.scheme}://{host}:{request.port}"


def _original_sni(flow: http.HTTPFlow) -> str | None:
    """The server name of the connection the original request went out on; never the Host
    header (mitmproxy's replay would take it from `pretty_host`)."""
    server = flow.server_conn
    sni = getattr(server, "sni", None) if server is not None else None
    return sni or flow.request.host


async def _replay(dup: http.HTTPFlow, *, sni: str | None = None) -> None:
    """Send `dup` upstream through mitmproxy's replay machinery and wait for the end.
    Every addon sees it (upstream TLS rules apply); proxyauth skips replays. The copy keeps
    the original connection's server name (`sni`)."""
    from mitmproxy.addons.clientplayback import ReplayHandler

    handler = ReplayHandler(dup, ctx.options)
    server = handler.layer.context.server  # the Server the replay connects with
    if server.tls:
        server.sni = sni or dup.request.host
    try:
        await asyncio.wait_for(handler.replay(), timeout=300)
    except asyncio.TimeoutError:
        logger.error("re-sent request to %s timed out", redact_url(dup.request.url))


def _tee(state: _FlowState):
    """Pass an upload through unchanged while keeping a bounded copy for a re-send."""

    def tee(chunk: bytes) -> bytes:
        if state.body_copy is not None:
            if len(state.body_copy) + len(chunk) > REQUEST_COPY_LIMIT:
                state.body_copy = None
                state.body_complete = False
            else:
                state.body_copy += chunk
        return chunk

    return tee


def _stream_if_large(response: http.Response) -> None:
    length = _expected_length(response)
    if length is None or length > STREAM_THRESHOLD:
        response.stream = True


def _drop_proxy_headers(request: http.Request) -> None:
    """Proxy-Authorization / Proxy-Connection are for us, never for the origin."""
    for name in {k.lower() for k in request.headers.keys() if k.lower().startswith("proxy-")}:
        del request.headers[name]
