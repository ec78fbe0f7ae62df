"""The one way a test runs an HTTP(S) server inside the test process, and the pieces its
handlers share.

    server = LoopbackServer(Handler, context=certs.server_context(), timeout=15, label="echo",
                            echo=self).start()      # extra keywords become attributes of the
    server.port                                      # http.server instance (self.server.echo)
    server.stop()                                    # or: with LoopbackServer(...) as server:

What every server here had written for itself before (echo, registry, git, upstream, company
proxy, PAC file, collectors): a ThreadingHTTPServer bound to 127.0.0.1 (or ::1) on a port the
kernel picks, served from a daemon thread; every accepted socket gets a timeout (a client that
stalls cannot hold a handler thread for ever); with a TLS `context` the handshake runs in the
handler thread, not in the accept loop (a client that never finishes its handshake cannot block
accept()); a handler's failure (a dropped connection, a refused handshake) is quiet, or handed to
`on_error`; stop() shuts the loop down, closes the socket and joins the thread (bounded).

Served: the base of a server object (start/stop/with) that owns a LoopbackServer.
Handler helpers: basic_header(user, password), send_body(handler, status, body, ...),
stream_bytes(wfile, n, ...) (a large body from one reusable chunk: the server never holds it).
"""

from __future__ import annotations

import base64
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

CHUNK = 64 * 1024


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    context: ssl.SSLContext | None = None
    request_timeout: float = 15.0
    on_error: Callable[[BaseException | None], None] | None = None

    def get_request(self):
        sock, addr = self.socket.accept()
        sock.settimeout(self.request_timeout)
        if self.context is None:
            return sock, addr
        # The handshake happens at the handler's first read, in the handler thread.
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        if self.on_error is not None:
            self.on_error(sys.exc_info()[1])


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class LoopbackServer:
    """`handler` (a BaseRequestHandler class) served on `host` (127.0.0.1 or ::1), port 0.

    context: TLS server context, None for plain HTTP. timeout: seconds each accepted socket may
    idle. queue: the listen backlog (default 5; a load test wants more). on_error: called with
    the exception a handler raised (default: ignored). `attrs` are set on the http.server
    instance, for the handler to reach its owner as self.server.<name>."""

    def __init__(self, handler: type, *, context: ssl.SSLContext | None = None, host: str = "127.0.0.1",
                 timeout: float = 15.0, label: str = "server", queue: int | None = None,
                 on_error: Callable[[BaseException | None], None] | None = None, **attrs):
        server_class = _HTTPServer6 if ":" in host else _HTTPServer
        self.httpd = server_class((host, 0), handler, bind_and_activate=False)
        try:
            if queue is not None:
                self.httpd.request_queue_size = queue
            self.httpd.server_bind()
            self.httpd.server_activate()
        except BaseException:
            self.httpd.server_close()
            raise
        self.httpd.context = context
        self.httpd.request_timeout = timeout
        self.httpd.on_error = on_error
        for key, value in attrs.items():
            setattr(self.httpd, key, value)
        self.host = host
        self.port: int = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True, name=f"{label}-{self.port}")

    def start(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close the listening socket, join the serving thread (bounded).
        Handler threads still in a request end at their socket timeout."""
        if self._thread.is_alive():
            self.httpd.shutdown()  # blocks until serve_forever returns: only once it runs
        self.httpd.server_close()
        self._thread.join(timeout)

    def url(self, path: str = "/", host: str | None = None) -> str:
        host = host or self.host
        netloc = f"[{host}]" if ":" in host else host
        return f"{'http' if self.httpd.context is None else 'https'}://{netloc}:{self.port}{path}"

    def __enter__(self) -> "LoopbackServer":
        if not self._thread.is_alive():
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Served:
    """Base of a test server object that owns a LoopbackServer as `self._server`:
    `Cls.start(...)` builds it and starts serving, stop() / `with` end it."""

    _server: LoopbackServer

    @classmethod
    def start(cls, *args, **kwargs):
        served = cls(*args, **kwargs)
        served._server.start()
        return served

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def basic_header(user: str, password: str) -> str:
    """`Basic base64(user:password)`: the Authorization (or Proxy-Authorization) value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def send_body(h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str = "text/plain",
              headers=()) -> None:
    """One response with Content-Type and Content-Length; the body is left out for HEAD.
    `headers`: (name, value) pairs or a dict, sent before Content-Type."""
    h.send_response(status)
    for name, value in (headers.items() if isinstance(headers, dict) else headers):
        h.send_header(name, value)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def stream_bytes(wfile, n: int, *, fill: bytes = b"x", chunked: bool = False, delay: float = 0.0,
                 stop: threading.Event | None = None) -> int:
    """Write n bytes of `fill` from one reusable 64 KiB chunk (the body is never held whole),
    as chunked transfer coding (with the closing 0-chunk) when `chunked`; `delay` seconds after
    each chunk; ends early when `stop` is set or the peer goes away. Returns the bytes sent."""
    chunk = fill * CHUNK
    sent = 0
    try:
        while sent < n and not (stop is not None and stop.is_set()):
            piece = chunk if n - sent >= CHUNK else chunk[: n - sent]
            wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sent += len(piece)
            if delay:
                time.sleep(delay)
        if chunked:
            wfile.write(b"0\r\n\r\n")
    except OSError:  # BrokenPipe, ConnectionReset, ssl.SSLError: the client left
        pass
    return sent


HEAD_LIMIT = 64 * 1024


def read_head(sock, *, limit: int = HEAD_LIMIT, chunk: int = 1) -> bytes:
    """Bytes up to and including the blank line that ends an HTTP head (fewer if the peer
    closes or `limit` is passed: check for b"\\r\\n\\r\\n"). chunk=1 reads nothing past the head
    (what follows stays in the socket, e.g. for a TLS handshake after a CONNECT answer)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) <= limit:
        piece = sock.recv(chunk)
        if not piece:
            break
        data += piece
    return data


def canned_handler(status: int = 200, body: bytes = b"", ctype: str = "text/plain", headers=(),
                   seen: list | None = None) -> type:
    """A handler class answering every GET with the same response; with `seen`, each request's
    (path, Authorization or None) is appended to it first. For a PAC file, a page, or a
    collector that answers 401 and keeps what it was sent:

        seen = []
        with LoopbackServer(canned_handler(401, headers={"WWW-Authenticate": 'Basic realm="x"'},
                                           seen=seen)) as server: ...
    """

    class Canned(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if seen is not None:
                seen.append((self.path, self.headers.get("Authorization")))
            send_body(self, status, body, ctype, headers)

        def log_message(self, *args) -> None:
            pass

    return Canned
