"""Limits mitmproxy does not enforce itself: HTTP/1 head size, the time a request head may
take to arrive, and a refused request's upload.

mitmproxy 12 reads HTTP/1 heads without a size limit (`_http1.py`: "FIXME: protect against
header size DoS") and has no timer while a head arrives: its only timeout, `tcp_timeout`
(600 s), counts idle time, so a client sending one byte every few seconds (slowloris) keeps a
connection and its buffer for ever. There is no option or hook for either, so `install()`
wraps methods of mitmproxy's sans-I/O HTTP/1 layer once per process:

- `Http1Server.read_headers` (every request head, the CONNECT head and the heads inside an
  intercepted tunnel): a head longer than `HEAD_LIMIT` is answered `431` and the connection
  closed;
- `Http1Server._handle_event`: from the first byte of a head, a timer (mitmproxy's own
  `RequestWakeup`) of `head_timeout` seconds; a head still incomplete then is answered `408`
  and the connection closed. Idle keep-alive connections (no byte of a next head yet) are
  not affected;
- also `Http1Server._handle_event`: bytes a client sends while its previous request is still
  being answered (pipelining) are buffered by mitmproxy until that answer is done; more than
  `PIPELINE_LIMIT` of them closes the connection;
- `Http1Client.read_headers` (an upstream's response head): longer than `HEAD_LIMIT`, the
  upstream connection is closed and the client gets mitmproxy's 502.

HTTP/2 heads are bounded by the h2 library (64 KiB decoded header list, at most 64
CONTINUATION frames).

`ConnectionHandler.close_connection` only cancels the connection's reader task; when that
task is waiting to hand the next chunk of a flooding client to the layers, the cancellation
skips its clean-up and the socket stays open (until garbage collection). The wrapper also
closes the transport, so a connection these limits close is really closed.

`HttpStream.start_request_stream` raises NotImplementedError when an addon answered a request
(`flow.response` set in `requestheaders`) whose body mitmproxy then decides to stream (over
`stream_large_bodies`). The wrapper instead reads and discards the rest of that body and then
sends the addon's answer: a refused upload is never forwarded and never held in memory.

These are mitmproxy internals, so `install()` first checks them (`check()`): the mitmproxy
version (11.x and 12.x are the ones this was written and tested against: pyproject allows
>=11.0.2,<13) and that every attribute a wrapper needs exists with the expected shape (a
generator method with the expected parameters; the event, command and hook classes it
yields). A limit whose parts are missing is NOT installed, and one warning names the limits
that are not active, why, and the mitmproxy version; `credproxy doctor` shows the same check.
mitmproxy 11 has no `ErrorCode` (its protocol errors take HTTP status numbers): the wrappers
use the numbers there.
"""

from __future__ import annotations

import logging
import re
import time

logger = logging.getLogger("credproxy.limits")

#: A request or response head (request line + header fields) larger than this is refused.
HEAD_LIMIT = 64 << 10
#: Seconds from the first byte of a request head to its end (config: request-head-timeout).
HEAD_TIMEOUT = 30.0
#: Bytes a client may send ahead (pipelined) while its previous request is answered.
PIPELINE_LIMIT = 1 << 20

_END_OF_HEAD = re.compile(rb"\n\r?\n")
_state = {"head_timeout": HEAD_TIMEOUT, "installed": False, "inactive": {}}

#: The mitmproxy major versions these wrappers were written and tested against.
TESTED_MAJORS = (11, 12)

#: The limits, by name (the keys of LIMITS; the warning and doctor show these names).
HEAD_SIZE = "request head size (431 over 64 KiB)"
HEAD_TIME = "request head time (408 after request-head-timeout)"
PIPELINING = "pipelining (closed after 1 MiB sent ahead)"
RESPONSE_HEAD_SIZE = "response head size (502 over 64 KiB)"
UPLOAD_DRAIN = "refused upload drained (not forwarded, not buffered)"
CLOSE = "closed connections closed (a flooding client's socket)"

#: Each limit, and what of mitmproxy's it wraps or uses: (owner, attribute, shape) where
#: shape is "gen:<params>" (a generator function with exactly those parameters), "func:<params>"
#: (a plain function), or "class" (a class, used to build an event/command).
LIMITS: dict[str, tuple[tuple[str, str, str], ...]] = {
    HEAD_SIZE: (
        ("Http1Server", "read_headers", "gen:self,event"),
        ("commands", "SendData", "class"), ("commands", "CloseConnection", "class"),
        ("events", "DataReceived", "class"),
    ),
    HEAD_TIME: (
        ("Http1Server", "_handle_event", "gen:self,event"),
        ("Http1Server", "read_headers", "gen:self,event"), ("Http1Server", "done", "gen:self,event"),
        ("commands", "RequestWakeup", "class"), ("events", "Wakeup", "class"),
    ),
    PIPELINING: (
        ("Http1Server", "_handle_event", "gen:self,event"),
        ("Http1Server", "wait", "gen:self,event"),
        ("http_events", "RequestProtocolError", "class"), ("http_base", "ReceiveHttp", "class"),
    ),
    RESPONSE_HEAD_SIZE: (
        ("Http1Client", "read_headers", "gen:self,event"),
        ("http_events", "ResponseProtocolError", "class"), ("http_base", "ReceiveHttp", "class"),
    ),
    UPLOAD_DRAIN: (
        ("HttpStream", "start_request_stream", "gen:self"),
        ("HttpStream", "send_response", "gen:self,already_streamed"),
        ("HttpStream", "state_done", "gen:self,_"),
        ("http", "HttpResponseHeadersHook", "class"), ("http_events", "RequestEndOfMessage", "class"),
    ),
    CLOSE: (
        ("ConnectionHandler", "close_connection", "func:self,connection,half_close"),
        ("ConnectionHandler", "transports", "annotation"),
    ),
}


def mitmproxy_version() -> str:
    try:
        from mitmproxy.version import VERSION
    except Exception:  # noqa: BLE001 - a mitmproxy without its version module
        return "unknown"
    return str(VERSION)


def targets() -> dict[str, object]:
    """The mitmproxy objects LIMITS names (a missing module leaves its name out)."""
    found: dict[str, object] = {}
    imports = {
        "commands": ("mitmproxy.proxy.commands", None),
        "events": ("mitmproxy.proxy.events", None),
        "http": ("mitmproxy.proxy.layers.http", None),
        "http_events": ("mitmproxy.proxy.layers.http._events", None),
        "http_base": ("mitmproxy.proxy.layers.http._base", None),
        "Http1Server": ("mitmproxy.proxy.layers.http._http1", "Http1Server"),
        "Http1Client": ("mitmproxy.proxy.layers.http._http1", "Http1Client"),
        "HttpStream": ("mitmproxy.proxy.layers.http", "HttpStream"),
        "ConnectionHandler": ("mitmproxy.proxy.server", "ConnectionHandler"),
    }
    import importlib

    for name, (module, attr) in imports.items():
        try:
            obj = importlib.import_module(module)
            found[name] = getattr(obj, attr) if attr else obj
        except Exception:  # noqa: BLE001 - reported by check() as missing
            continue
    return found


def _shape_problem(obj, attr: str, shape: str) -> str | None:
    import inspect

    if shape == "annotation":
        for klass in getattr(obj, "__mro__", (obj,)):
            if attr in getattr(klass, "__annotations__", {}):
                return None
        return "missing"
    if not hasattr(obj, attr):
        return "missing"
    value = getattr(obj, attr)
    if shape == "class":
        return None if inspect.isclass(value) else "not a class"
    kind, _, params = shape.partition(":")
    function = getattr(value, "__wrapped__", value)  # our own wrapper on a second install
    if not inspect.isfunction(function):
        return "not a function"
    if kind == "gen" and not inspect.isgeneratorfunction(function):
        return "no longer a generator"
    names = [p.name for p in inspect.signature(function).parameters.values()]
    if names != params.split(","):
        return f"parameters ({', '.join(names)}) instead of ({params.replace(',', ', ')})"
    return None


def check(found: dict[str, object] | None = None) -> dict[str, list[str]]:
    """The limits that cannot be installed on this mitmproxy -> what is missing or changed
    (e.g. "Http1Server._handle_event: missing"). Empty: every limit fits. `found` replaces
    the real mitmproxy objects (targets()) for tests."""
    found = targets() if found is None else found
    out: dict[str, list[str]] = {}
    for limit, needs in LIMITS.items():
        for owner, attr, shape in needs:
            obj = found.get(owner)
            problem = "its module did not import" if obj is None else _shape_problem(obj, attr, shape)
            if problem is not None:
                out.setdefault(limit, []).append(f"{owner}.{attr}: {problem}")
    return out


def version_problem(version: str | None = None) -> str | None:
    version = mitmproxy_version() if version is None else version
    try:
        major = int(version.split(".", 1)[0])
    except ValueError:
        return f"mitmproxy {version}: the version cannot be read"
    if major not in TESTED_MAJORS:
        return (f"mitmproxy {version} is not a version credproxy's limits were written for "
                f"({', '.join(f'{m}.x' for m in TESTED_MAJORS)})")
    return None


def report() -> tuple[list[str], dict[str, list[str]], str | None]:
    """(active limits, inactive limit -> why, version note) as install() left them, or as
    they would be (doctor, in its own process)."""
    inactive = _state["inactive"] if _state["installed"] else check()
    return [name for name in LIMITS if name not in inactive], inactive, version_problem()


def warning_text(inactive: dict[str, list[str]], version_note: str | None) -> str | None:
    """The one start-up warning (and doctor's detail), or None when all is well."""
    if not inactive and version_note is None:
        return None
    version = mitmproxy_version()
    if not inactive:
        return (f"{version_note}; every internal part the request limits need was found, so they are active, "
                "but check them (tests/security/test_request_heads.py). Fix: pip install 'mitmproxy>=11.0.2,<13'")
    names = "; ".join(f"{name} ({', '.join(why)})" for name, why in inactive.items())
    return (f"these request limits are NOT active on mitmproxy {version}: {names}. credproxy still proxies, but "
            "without them. Fix: install a mitmproxy credproxy supports: pip install 'mitmproxy>=11.0.2,<13'"
            + (f" ({version_note})" if version_note else ""))


def install(head_timeout: float = HEAD_TIMEOUT) -> None:
    """Wrap mitmproxy's HTTP/1 layer (idempotent; the timeout is updated on every call).
    Only the limits whose parts check() finds are installed; the others are named in one
    warning."""
    _state["head_timeout"] = float(head_timeout)
    if _state["installed"]:
        return
    _state["inactive"] = install_into(targets())
    _state["installed"] = True


def install_into(found: dict[str, object]) -> dict[str, list[str]]:
    """Check `found` (the mitmproxy objects, or copies in a test), warn, wrap the limits that
    fit; returns the inactive ones."""
    inactive = check(found)
    text = warning_text(inactive, version_problem())
    if text is not None:
        logger.warning("%s", text)
    on = {name for name in LIMITS if name not in inactive}
    if HEAD_SIZE in on:
        _wrap_server_head_size(found["Http1Server"])
    if HEAD_TIME in on or PIPELINING in on:
        _wrap_server_events(found["Http1Server"], timer=HEAD_TIME in on, pipeline=PIPELINING in on)
    if RESPONSE_HEAD_SIZE in on:
        _wrap_client(found["Http1Client"])
    if UPLOAD_DRAIN in on:
        _wrap_stream(found["HttpStream"])
    if CLOSE in on:
        _wrap_close(found["ConnectionHandler"])
    return inactive


def _error_codes():
    """(client disconnected, server error) for Request/ResponseProtocolError: mitmproxy 12's
    ErrorCode members, or mitmproxy 11's HTTP status numbers."""
    try:
        from mitmproxy.proxy.layers.http._events import ErrorCode
    except ImportError:
        return 499, 502  # mitmproxy 11: status_codes.CLIENT_CLOSED_REQUEST, BAD_GATEWAY
    return ErrorCode.CLIENT_DISCONNECTED, ErrorCode.GENERIC_SERVER_ERROR


def head_timeout() -> float:
    return _state["head_timeout"]


def _head_too_long(buf) -> bool:
    """True when `buf` holds more than HEAD_LIMIT bytes and no end of head within them."""
    if len(buf) <= HEAD_LIMIT:
        return False
    data = getattr(buf, "_data", None)  # h11's ReceiveBuffer: search in place, no copy
    if data is None:
        data = bytes(buf)
    return _END_OF_HEAD.search(data, 0, HEAD_LIMIT + 2) is None


def _error_bytes(status: int, text: str) -> bytes:
    from mitmproxy import http
    from mitmproxy.net.http import http1

    response = http.Response.make(status, (text + "\n").encode(), {
        "content-type": "text/plain; charset=utf-8", "connection": "close"})
    return http1.assemble_response(response)


def _peer(conn) -> str:
    from mitmproxy.utils import human

    try:
        return human.format_address(conn.peername)
    except Exception:  # pragma: no cover - a connection without a peer name
        return "a client"


def _wrap_server_head_size(cls) -> None:
    from mitmproxy.proxy import commands, events

    original_read_headers = cls.read_headers

    def read_headers(self, event):
        if isinstance(event, events.DataReceived) and _head_too_long(self.buf):
            logger.warning("request head from %s is larger than %d KiB; answered 431 and closed",
                           _peer(self.conn), HEAD_LIMIT >> 10)
            yield commands.SendData(self.conn, _error_bytes(
                431, f"credproxy: the request head (request line and headers) is larger than "
                f"{HEAD_LIMIT >> 10} KiB; send fewer or shorter headers"))
            yield commands.CloseConnection(self.conn)
            self.buf = type(self.buf)()
            self.state = self.done
            return
        yield from original_read_headers(self, event)

    read_headers.__wrapped__ = original_read_headers
    cls.read_headers = read_headers


def _wrap_server_events(cls, timer: bool = True, pipeline: bool = True) -> None:
    from mitmproxy.proxy import commands, events
    from mitmproxy.proxy.layers.http._base import ReceiveHttp
    from mitmproxy.proxy.layers.http._events import RequestProtocolError

    client_disconnected, _ = _error_codes()
    original_handle_event = cls._handle_event

    def _handle_event(self, event):
        timer_state = self.__dict__.get("_credproxy_head_timer")
        if timer and isinstance(event, events.Wakeup):
            if timer_state is None or event.command is not timer_state[0]:
                return  # a timer for a head that has since completed
            self._credproxy_head_timer = None
            if self.state == self.read_headers and len(self.buf) > 0:
                waited = time.monotonic() - timer_state[1]
                logger.warning("request head from %s incomplete after %.0f s; answered 408 and closed",
                               _peer(self.conn), waited)
                yield commands.SendData(self.conn, _error_bytes(
                    408, f"credproxy: the request head did not arrive within {head_timeout():g} s"))
                yield commands.CloseConnection(self.conn)
                self.buf = type(self.buf)()
                self.state = self.done
            return
        yield from original_handle_event(self, event)
        if pipeline and self.state == self.wait and len(self.buf) > PIPELINE_LIMIT:
            logger.warning("%s sent more than %d KiB ahead while its request was answered; connection closed",
                           _peer(self.conn), PIPELINE_LIMIT >> 10)
            self.buf = type(self.buf)()
            self.state = self.done
            yield commands.CloseConnection(self.conn)
            yield ReceiveHttp(RequestProtocolError(
                self.stream_id, "the client sent too much ahead", code=client_disconnected))
            return
        if not timer:
            return
        if self.state == self.read_headers and len(self.buf) > 0:
            if self.__dict__.get("_credproxy_head_timer") is None:
                wakeup = commands.RequestWakeup(head_timeout())
                self._credproxy_head_timer = (wakeup, time.monotonic())
                yield wakeup
        else:
            self._credproxy_head_timer = None

    _handle_event.__wrapped__ = original_handle_event
    cls._handle_event = _handle_event


def _wrap_client(cls) -> None:
    from mitmproxy.proxy import commands, events
    from mitmproxy.proxy.layers.http._base import ReceiveHttp
    from mitmproxy.proxy.layers.http._events import ResponseProtocolError

    _, server_error = _error_codes()
    original_read_headers = cls.read_headers

    def read_headers(self, event):
        if (isinstance(event, events.DataReceived) and self.request is not None
                and self.stream_id is not None and _head_too_long(self.buf)):
            logger.warning("response head from %s is larger than %d KiB; connection closed",
                           _peer(self.conn), HEAD_LIMIT >> 10)
            self.buf = type(self.buf)()
            yield commands.CloseConnection(self.conn)
            yield ReceiveHttp(ResponseProtocolError(
                self.stream_id, f"the upstream's response head is larger than {HEAD_LIMIT >> 10} KiB",
                server_error))
            return
        yield from original_read_headers(self, event)

    read_headers.__wrapped__ = original_read_headers
    cls.read_headers = read_headers


def _wrap_stream(cls) -> None:
    from mitmproxy.proxy.layers.http import HttpResponseHeadersHook
    from mitmproxy.proxy.layers.http._events import RequestEndOfMessage

    original_start_request_stream = cls.start_request_stream

    def start_request_stream(self):
        if not self.flow.response:
            yield from original_start_request_stream(self)
            return

        # An addon answered the request: drain the upload, then send that answer.
        def drain(event):
            if isinstance(event, RequestEndOfMessage):
                self.flow.request.timestamp_end = time.time()
                self.client_state = self.state_done
                self.flow.response.timestamp_start = time.time()
                yield HttpResponseHeadersHook(self.flow)
                yield from self.send_response()
            else:
                yield from ()

        self.flow.request.stream = False
        self.client_state = drain
        yield from ()

    start_request_stream.__wrapped__ = original_start_request_stream
    cls.start_request_stream = start_request_stream


def _wrap_close(cls) -> None:
    from mitmproxy.connection import ConnectionState

    original_close_connection = cls.close_connection

    def close_connection(self, connection, half_close: bool = False) -> None:
        original_close_connection(self, connection, half_close)
        if connection.state is ConnectionState.CLOSED:
            io = self.transports.get(connection)
            writer = getattr(io, "writer", None)
            if writer is not None:
                try:
                    writer.close()  # flushes what is already written, then closes the socket
                except (OSError, RuntimeError):
                    pass

    close_connection.__wrapped__ = original_close_connection
    cls.close_connection = close_connection
