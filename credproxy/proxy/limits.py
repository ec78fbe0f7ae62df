"""Limits mitmproxy does not enforce itself: HTTP/1 head size, the time a request head may
take to arrive, and a refused request's upload.

mitmproxy 12 reads HTTP/1 heads without a size limit (`_http1.py`: "FIXME: protect against
header size DoS") and has no timer while a head arrives: its only timeout, `tcp_timeout`
(600 s), counts idle time, so a client sending one byte every few seconds (slowloris) keeps a
connection and its buffer for ever. There is no option or hook for either, so `install()`
wraps three methods of mitmproxy's sans-I/O HTTP/1 layer once per process:

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
_state = {"head_timeout": HEAD_TIMEOUT, "installed": False}


def install(head_timeout: float = HEAD_TIMEOUT) -> None:
    """Wrap mitmproxy's HTTP/1 layer (idempotent; the timeout is updated on every call)."""
    _state["head_timeout"] = float(head_timeout)
    if _state["installed"]:
        return
    from mitmproxy.proxy.layers.http import HttpStream
    from mitmproxy.proxy.layers.http._http1 import Http1Client, Http1Server

    from mitmproxy.proxy.server import ConnectionHandler

    _wrap_server(Http1Server)
    _wrap_client(Http1Client)
    _wrap_stream(HttpStream)
    _wrap_close(ConnectionHandler)
    _state["installed"] = True


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


def _wrap_server(cls) -> None:
    from mitmproxy.proxy import commands, events
    from mitmproxy.proxy.layers.http._base import ReceiveHttp
    from mitmproxy.proxy.layers.http._events import ErrorCode, RequestProtocolError

    original_read_headers = cls.read_headers
    original_handle_event = cls._handle_event

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

    def _handle_event(self, event):
        timer = self.__dict__.get("_credproxy_head_timer")
        if isinstance(event, events.Wakeup):
            if timer is None or event.command is not timer[0]:
                return  # a timer for a head that has since completed
            self._credproxy_head_timer = None
            if self.state == self.read_headers and len(self.buf) > 0:
                waited = time.monotonic() - timer[1]
                logger.warning("request head from %s incomplete after %.0f s; answered 408 and closed",
                               _peer(self.conn), waited)
                yield commands.SendData(self.conn, _error_bytes(
                    408, f"credproxy: the request head did not arrive within {head_timeout():g} s"))
                yield commands.CloseConnection(self.conn)
                self.buf = type(self.buf)()
                self.state = self.done
            return
        yield from original_handle_event(self, event)
        if self.state == self.wait and len(self.buf) > PIPELINE_LIMIT:
            logger.warning("%s sent more than %d KiB ahead while its request was answered; connection closed",
                           _peer(self.conn), PIPELINE_LIMIT >> 10)
            self.buf = type(self.buf)()
            self.state = self.done
            yield commands.CloseConnection(self.conn)
            yield ReceiveHttp(RequestProtocolError(
                self.stream_id, "the client sent too much ahead", code=ErrorCode.CLIENT_DISCONNECTED))
            return
        if self.state == self.read_headers and len(self.buf) > 0:
            if self.__dict__.get("_credproxy_head_timer") is None:
                wakeup = commands.RequestWakeup(head_timeout())
                self._credproxy_head_timer = (wakeup, time.monotonic())
                yield wakeup
        else:
            self._credproxy_head_timer = None

    cls.read_headers = read_headers
    cls._handle_event = _handle_event


def _wrap_client(cls) -> None:
    from mitmproxy.proxy import commands, events
    from mitmproxy.proxy.layers.http._base import ReceiveHttp
    from mitmproxy.proxy.layers.http._events import ErrorCode, ResponseProtocolError

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
                ErrorCode.GENERIC_SERVER_ERROR))
            return
        yield from original_read_headers(self, event)

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

    cls.close_connection = close_connection
