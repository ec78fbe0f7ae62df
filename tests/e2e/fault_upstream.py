"""A small HTTPS (or HTTP) upstream on 127.0.0.1 that can misbehave on purpose.

Paths:
  /private/...   401 + `WWW-Authenticate: Basic` unless the Basic credential matches;
                 authorised with `?echo=1`: the request headers in the body and the
                 Authorization in `X-Echo-Authorization` (reflects the re-send's credential)
  /public/...    200 for everyone
  /echo          200, body = the request headers (an upstream that reflects credentials)
  /big?n=N&delay=S   N bytes in 64 KiB chunks, S seconds between chunks
  /reset         the connection is reset (RST) without a response
  /stall?s=S     no response for S seconds (bounded), then the connection closes
  /garbage       bytes that are not HTTP, then close
Counts requests per (path prefix, authorised) in `hits`.
"""

from __future__ import annotations

import base64
import http.server
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from urllib.parse import parse_qs, urlsplit

import trustme


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True


class Upstream:
    def __init__(self, *, ca: trustme.CA | None = None, user: str = "alice", password: str = "s3cret",
                 names: tuple[str, ...] = ("pkgs.test", "other.test", "localhost", "127.0.0.1", "::1")):
        self.user, self.password = user, password
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.hits: Counter = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                upstream._handle(self)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.tls = ca is not None
        if ca is not None:
            leaf = ca.issue_cert(*names)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            leaf.configure_cert(context)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def url(self, host: str, path: str) -> str:
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    def close(self) -> None:
        self._stop.set()  # releases stalled handlers
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "Upstream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- behaviours ---------------------------------------------------------------------

    def _count(self, key) -> None:
        with self._lock:
            self.hits[key] += 1

    def _handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = parse_qs(parts.query)
        path = parts.path
        authorised = h.headers.get("Authorization") == self.expected
        self._count((path.split("/")[1] if "/" in path else path, authorised))
        if path.startswith("/private"):
            if not authorised:
                status = 401 if not h.headers.get("Authorization") else 403
                self._send(h, status, b"credentials required\n", {"WWW-Authenticate": 'Basic realm="pkgs"'})
            elif "echo" in query:
                self._send(h, 200, str(h.headers).encode(),
                           {"X-Echo-Authorization": h.headers.get("Authorization", "")})
            else:
                self._send(h, 200, b"private ok\n")
        elif path.startswith("/public"):
            self._send(h, 200, b"public ok\n")
        elif path == "/echo":
            self._send(h, 200, str(h.headers).encode())
        elif path == "/big":
            self._big(h, int(query.get("n", ["1048576"])[0]), float(query.get("delay", ["0"])[0]))
        elif path == "/reset":
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            h.connection.close()
        elif path == "/stall":
            self._stop.wait(float(query.get("s", ["30"])[0]))
            h.close_connection = True
        elif path == "/garbage":
            h.wfile.write(b"this is not HTTP at all\r\n\x00\x01\x02\r\n\r\n")
            h.wfile.flush()
            h.close_connection = True
        else:
            self._send(h, 404, b"not found\n")

    def _send(self, h, status: int, body: bytes, headers: dict | None = None) -> None:
        h.send_response(status)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _big(self, h, n: int, delay: float) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(n))
        h.end_headers()
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < n and not self._stop.is_set():
                piece = chunk[: min(len(chunk), n - sent)]
                h.wfile.write(piece)
                sent += len(piece)
                if delay:
                    time.sleep(delay)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            h.close_connection = True
