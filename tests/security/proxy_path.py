"""A world for the proxy-path attacks (issue 9 findings 2, 5, 6, 8, 9): an HTTPS upstream that
records what each request arrived with (TLS server name, Host, Authorization), a real
`credproxy serve`, and a raw client that writes exactly the bytes a test wants through a
CONNECT tunnel.

    with PathWorld(tmp_path, netrc="machine pkgs.test login alice password SECRET\\n") as w:
        w.start()
        reply = w.raw_request("pkgs.test", b"GET /private/x HTTP/1.1\\r\\nHost: evil.test\\r\\n\\r\\n")
        w.upstream.requests -> [Seen(sni, host, path, authorization), ...]

Upstream paths (Basic alice:SECRET unless the test says otherwise):
  /private/...          401 unless authorised; then 200 "private ok"
  /private/...?echo=1   authorised: 200, the request's Authorization in the body and in the
                        `X-Echo-Authorization` header (an upstream that reflects credentials)
  /private/...?big=N    authorised: 200 with N bytes (Content-Length)
  /chunked401?n=N       401 with a chunked body of N bytes, sent from one reusable chunk
  /public/...           200 for everyone
  /slow?s=S             200 after S seconds (at most 30)
Everything binds 127.0.0.1; every socket has a timeout; the proxy is stopped by pid.
"""

from __future__ import annotations

import base64
import http.server
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import trustme

from tests.helpers.proxy import Proxy, hermetic_env, start_credproxy

USER = "alice"
SECRET = "Pr0xy-path/s3cr3t+&?%z"
NAMES = ("pkgs.test", "evil.test", "other.test")


@dataclass
class Seen:
    sni: str | None
    host: str | None
    path: str
    authorization: str | None


class Upstream:
    def __init__(self, ca: trustme.CA, *, user: str = USER, password: str = SECRET):
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self.snis: list[str | None] = []  # every TLS handshake's server name, in order
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                upstream._handle(self)

            do_POST = do_HEAD = do_GET

        leaf = ca.issue_cert(*NAMES, "localhost", "127.0.0.1")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(context)

        def on_sni(sslobj, name, _ctx):
            sslobj.credproxy_sni = name
            with upstream._lock:
                upstream.snis.append(name)

        context.sni_callback = on_sni

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = self.socket.accept()
                sock.settimeout(30)
                return context.wrap_socket(sock, server_side=True), addr

            def handle_error(self, request, client_address):
                pass  # a proxy closing early is expected in these tests

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

    @property
    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = parse_qs(parts.query)
        auth = h.headers.get("Authorization")
        length = int(h.headers.get("Content-Length") or 0)
        if length:
            h.rfile.read(length)
        with self._lock:
            self._seen.append(Seen(getattr(h.connection, "credproxy_sni", None), h.headers.get("Host"),
                                   h.path, auth))
        if parts.path.startswith("/private"):
            if auth != self.expected:
                self._send(h, 401, b"credentials required\n", {"WWW-Authenticate": 'Basic realm="pkgs"'})
            elif "echo" in query:
                self._send(h, 200, f"you sent: {auth}\n".encode(), {"X-Echo-Authorization": auth})
            elif "big" in query:
                self._send(h, 200, b"x" * int(query["big"][0]))
            else:
                self._send(h, 200, b"private ok\n")
        elif parts.path == "/chunked401":
            self._chunked(h, 401, int(query.get("n", ["1048576"])[0]))
        elif parts.path == "/slow":
            time.sleep(min(30.0, float(query.get("s", ["1"])[0])))
            self._send(h, 200, b"slow ok\n")
        elif parts.path.startswith("/public"):
            self._send(h, 200, b"public ok\n")
        else:
            self._send(h, 404, b"not found\n")

    @staticmethod
    def _send(h, status: int, body: bytes, headers: dict | None = None) -> None:
        h.send_response(status)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    @staticmethod
    def _chunked(h, status: int, n: int) -> None:
        h.send_response(status)
        h.send_header("WWW-Authenticate", 'Basic realm="pkgs"')
        h.send_header("Content-Type", "text/plain")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"y" * 65536
        sent = 0
        try:
            while sent < n:
                piece = chunk[: min(len(chunk), n - sent)]
                h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        h.close_connection = True


@dataclass
class RawReply:
    status: int | None
    head: bytes
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class PathWorld:
    def __init__(self, tmp: Path, *, netrc: str | None = None, config: str = "",
                 extra_env: dict[str, str] | None = None):
        self.tmp = tmp
        self.ca = trustme.CA()
        self.ca_pem = tmp / "upstream-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_pem))
        self.upstream = Upstream(self.ca)
        self.port = self.upstream.port
        resolve = ",".join(f"{n}=127.0.0.1" for n in NAMES)
        self.env = hermetic_env(tmp, CREDPROXY_TEST_RESOLVE=resolve, **(extra_env or {}))
        home = Path(self.env["HOME"])
        if netrc is not None:
            path = home / ".netrc"
            path.write_bytes(netrc.replace("{port}", str(self.port)).encode("utf-8", "surrogateescape"))
            os.chmod(path, 0o600)
        Path(self.env["CREDPROXY_CONFIG"]).write_text(
            f'ca-bundle = "{self.ca_pem}"\n' + config.replace("{port}", str(self.port)))
        self.proxy: Proxy | None = None
        self._n = 0

    # --- the proxy ---------------------------------------------------------------------------

    def start(self, *args: str) -> Proxy:
        self.stop()
        self._n += 1
        self.proxy = start_credproxy(self.tmp, *args, env=self.env, name=f"proxy-{self._n}", timeout=30)
        return self.proxy

    @property
    def proxy_ca(self) -> str:
        return str(Path(self.env["CREDPROXY_DATA_DIR"]) / "ca" / "mitmproxy-ca-cert.pem")

    def stop(self) -> str:
        if self.proxy is None:
            return ""
        self.proxy.stop()
        text = self.proxy.stderr()
        self.proxy = None
        return text

    def close(self) -> None:
        self.stop()
        self.upstream.close()

    def __enter__(self) -> "PathWorld":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- raw clients -------------------------------------------------------------------------

    def connect(self, target: str, *, timeout: float = 20.0) -> socket.socket:
        """A plain TCP connection to the proxy with the tunnel to `target:port` set up."""
        assert self.proxy is not None
        sock = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=timeout)
        head = f"CONNECT {target}:{self.port} HTTP/1.1\r\nHost: {target}:{self.port}\r\n"
        for name, value in self.proxy.auth_headers().items():
            head += f"{name}: {value}\r\n"
        sock.sendall((head + "\r\n").encode())
        reply = _read_head(sock)
        assert reply.startswith(b"HTTP/1.1 200"), reply
        return sock

    def tunnel(self, target: str, *, sni: str | None = None, timeout: float = 20.0) -> ssl.SSLSocket:
        """TLS through the tunnel to `target`, trusting the proxy's CA; `sni` as the server
        name the client sends (default: target)."""
        sock = self.connect(target, timeout=timeout)
        context = ssl.create_default_context(cafile=self.proxy_ca)
        context.check_hostname = False  # the test chooses the server name, maybe a wrong one
        return context.wrap_socket(sock, server_hostname=sni or target)

    def raw_request(self, target: str, request: bytes, *, sni: str | None = None,
                    timeout: float = 20.0, max_body: int = 1 << 20) -> RawReply:
        """Write `request` as is through a TLS tunnel to `target`; read one response (the body
        up to `max_body`, then the connection is dropped)."""
        with self.tunnel(target, sni=sni, timeout=timeout) as tls:
            tls.sendall(request)
            return read_response(tls, max_body=max_body)


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
        if len(data) > 65536:
            break
    return data


def read_response(sock, *, max_body: int = 1 << 20, discard: bool = False) -> RawReply:
    """One HTTP/1.1 response: Content-Length, chunked or until close. With discard=True the
    body is counted, not kept (RawReply.body is then b"" and the size is in `.status`-less
    `len`); without, reading stops after max_body bytes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return RawReply(None, data, b"")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else None
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(b":") for line in head.split(b"\r\n")[1:])}
    body = bytearray(rest)
    if b"content-length" in headers:
        want = int(headers[b"content-length"])
        while len(body) < min(want, max_body):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    elif b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        while not body.endswith(b"0\r\n\r\n") and len(body) < max_body:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    else:
        while len(body) < max_body:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return RawReply(status, head, bytes(body))


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
    status_line = head.split(b"\r\n", 1)[0].split()
    status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else None
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
    return status, total
