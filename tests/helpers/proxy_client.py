"""Clients that go through the proxy from inside the test process.

- get(): a stdlib HTTP client that goes through the proxy as pip or curl would (CONNECT for
  https, absolute-form for http), trusting the given CA files. Cheap enough for a thousand
  requests.
- connect_tunnel() / read_response() / drain_response(): a raw socket client for attacks that
  need exact bytes; every socket has a timeout, bodies are read up to a limit or a deadline.

`proxy` is a tests.helpers.proxy.Proxy (its owner's Proxy-Authorization is sent on the CONNECT
or with the absolute-form request, as clients do with a proxy URL that carries userinfo), or a
bare port: a client without the proxy token, as another user would be."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from tests.helpers.loopback import read_head


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def client_context(*cafiles: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for cafile in cafiles:
        context.load_verify_locations(cafile)
    return context


def _port_and_auth(proxy) -> tuple[int, dict[str, str]]:
    if isinstance(proxy, int):
        return proxy, {}
    return proxy.port, proxy.auth_headers()


def open_connection(proxy, url: str, context: ssl.SSLContext | None, timeout: float
                    ) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
    """(connection, request target, headers the request itself must carry)."""
    proxy_port, auth = _port_and_auth(proxy)
    parts = urlsplit(url)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", proxy_port, timeout=timeout, context=context)
        conn.set_tunnel(parts.hostname or "", parts.port or 443, headers=auth)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return conn, target, {}
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=timeout)
    return conn, url, auth


def get(proxy, url: str, context: ssl.SSLContext | None = None, *, timeout: float = 15.0,
        headers: dict[str, str] | None = None, method: str = "GET") -> Reply:
    conn, target, auth = open_connection(proxy, url, context, timeout)
    try:
        conn.request(method, target, headers={"Connection": "close", **auth, **(headers or {})})
        response = conn.getresponse()
        body = response.read()
        return Reply(response.status, body, {k.lower(): v for k, v in response.getheaders()})
    finally:
        conn.close()


# --------------------------------------------------------------------------- raw sockets
# For attacks that need exact bytes (a Host header that disagrees with the tunnel, a bare CR, a
# slow head): the test writes the request itself and reads the response with these.


@dataclass
class RawReply:
    status: int | None
    head: bytes
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def connect_tunnel(proxy, target: str, port: int, *, timeout: float = 20.0) -> socket.socket:
    """A TCP connection to the proxy with `CONNECT target:port` answered 200 (the owner's
    Proxy-Authorization sent, as `open_connection` does)."""
    proxy_port, auth = _port_and_auth(proxy)
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
    try:
        head = f"CONNECT {target}:{port} HTTP/1.1\r\nHost: {target}:{port}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in auth.items())
        sock.sendall((head + "\r\n").encode())
        reply = read_head(sock)
        assert reply.startswith(b"HTTP/1.1 200"), reply
    except BaseException:
        sock.close()
        raise
    return sock


def _status(head: bytes) -> int | None:
    status_line = head.split(b"\r\n", 1)[0].split()
    return int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else None


def read_response(sock, *, max_body: int = 1 << 20) -> RawReply:
    """One HTTP/1.1 response: Content-Length, chunked or until close; the body read up to
    max_body bytes (then reading stops)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return RawReply(None, data, b"")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(b":") for line in head.split(b"\r\n")[1:])}
    body = bytearray(rest)
    if b"content-length" in headers:
        want = min(int(headers[b"content-length"]), max_body)
        done = lambda: len(body) >= want  # noqa: E731
    elif b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        done = lambda: body.endswith(b"0\r\n\r\n") or len(body) >= max_body  # noqa: E731
    else:
        done = lambda: len(body) >= max_body  # noqa: E731
    while not done():
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return RawReply(_status(head), head, bytes(body))


def drain_response(sock, *, deadline: float) -> tuple[int | None, int]:
    """(status, body bytes) of one chunked or close-delimited response, reading and
    discarding the body (for bodies too large to keep); stops at `deadline` (monotonic)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None, 0
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    total = len(rest)
    tail = rest[-5:]
    while time.monotonic() < deadline:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        total += len(chunk)
        tail = (tail + chunk)[-5:]
        if tail == b"0\r\n\r\n":
            break
    return _status(head), total
