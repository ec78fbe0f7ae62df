"""A small company proxy on 127.0.0.1 for tests of chaining (issue 11), in a thread.

    company = CompanyProxy.start(credentials=("corp-user", "pw"))   # Basic auth required
    ... HTTPS_PROXY=company.url_with(("corp-user", "pw")) for `credproxy serve` ...
    company.connects("pkgs.test")   # [Record(method="CONNECT", target="pkgs.test:PORT", auth="ok")]
    company.stop()

It answers `CONNECT host:port` (tunnel, bytes relayed both ways) and absolute-form plain HTTP
(`GET http://host:port/path`, forwarded in origin form without the Proxy-* headers, one request
per connection). Without the right `Proxy-Authorization: Basic` it answers 407 with
`Proxy-Authenticate: Basic realm="corp"` (or `schemes`, e.g. ("Negotiate", "NTLM")). Every
request is recorded: method, target, auth = ok | missing | wrong | not-required, and the names
of the headers it carried — never a header's value. Names in `resolve` are mapped to 127.0.0.1
(the test hosts do not exist in DNS). Time- and size-bounded; stop() closes everything.

PlainOrigin: a plain-http origin server in a thread recording every request's headers (names and
values), to prove what reached the origin.
"""

from __future__ import annotations

import base64
import select
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.helpers.loopback import LoopbackServer, Served, basic_header, read_head, send_body
from tests.helpers.servers import TEST_HOSTS

HEAD_LIMIT = 64 * 1024
IDLE_TIMEOUT = 30.0


@dataclass
class Record:
    method: str
    target: str  # host:port for CONNECT, the absolute URL for plain http
    auth: str  # ok | missing | wrong | not-required (| negotiating: a Negotiate leg answered 407)
    header_names: list[str] = field(default_factory=list)
    status: int | None = None
    auth_scheme: str | None = None  # the scheme of the Proxy-Authorization sent (Basic, Negotiate, NTLM)

    @property
    def host(self) -> str:
        if self.method == "CONNECT":
            return self.target.rsplit(":", 1)[0].strip("[]")
        rest = self.target.split("://", 1)[-1].split("/", 1)[0]
        return rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        company: CompanyProxy = self.server.company
        sock: socket.socket = self.request
        sock.settimeout(IDLE_TIMEOUT)
        acceptor = None  # a Negotiate/NTLM exchange in progress on this connection
        pending = b""
        for _leg in range(4):
            try:
                data = pending if b"\r\n\r\n" in pending else pending + read_head(sock, limit=HEAD_LIMIT, chunk=4096)
            except OSError:
                return
            if b"\r\n\r\n" not in data:
                return
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            try:
                method, target, _version = lines[0].split(" ", 2)
            except ValueError:
                sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            headers = []
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers.append((name.strip(), value.strip()))
            auth_values = [v for n, v in headers if n.lower() == "proxy-authorization"]
            record = Record(method.upper(), target, "missing", [n for n, _ in headers],
                            auth_scheme=auth_values[-1].split(" ", 1)[0] if auth_values else None)
            with company._lock:
                company._records.append(record)
            if company.negotiate:
                record.auth, acceptor, token = company._negotiate_step(acceptor, auth_values)
                if record.auth == "negotiating":
                    record.status = 407
                    sock.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                 + f"Proxy-Authenticate: {record.auth_scheme} {token}\r\n".encode()
                                 + b"Content-Length: 0\r\n\r\n")
                    pending = rest
                    continue
                if record.auth == "missing" or (record.auth == "wrong" and acceptor is None
                                                 and (record.auth_scheme or "").lower() == "basic"):
                    # no login, or Basic: name the schemes and keep the connection (as Squid does)
                    record.status = 407
                    sock.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Negotiate\r\n"
                                 b"Proxy-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\n")
                    pending = rest
                    continue
            else:
                record.auth = company._check(headers)
            self._serve(company, record, method, target, headers, rest)
            return

    def _serve(self, company, record, method, target, headers, rest) -> None:
        sock: socket.socket = self.request
        if record.auth in ("missing", "wrong"):
            record.status = 407
            challenge = "".join(f"Proxy-Authenticate: {s} realm=\"corp\"\r\n" if s.lower() == "basic"
                                else f"Proxy-Authenticate: {s}\r\n" for s in company.schemes)
            body = b"corp proxy: authentication required\n"
            sock.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n" + challenge.encode()
                         + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            return
        if record.method == "CONNECT":
            host, _, port = target.rpartition(":")
            self._tunnel(record, host.strip("[]"), int(port), rest)
        elif target.startswith("http://"):
            self._forward(record, method, target, headers, rest)
        else:
            record.status = 400
            sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def _connect(self, host: str, port: int) -> socket.socket:
        address = self.server.company.resolve.get(host.lower(), host)
        return socket.create_connection((address, port), timeout=10)

    def _tunnel(self, record: Record, host: str, port: int, early: bytes) -> None:
        sock: socket.socket = self.request
        if host.lower() in self.server.company.deny:
            record.status = 403
            sock.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        try:
            upstream = self._connect(host, port)
        except OSError:
            record.status = 502
            sock.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        record.status = 200
        with upstream:
            sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if early:
                upstream.sendall(early)
            _relay(sock, upstream)

    def _forward(self, record: Record, method: str, target: str, headers, body_start: bytes) -> None:
        sock: socket.socket = self.request
        rest = target[len("http://"):]
        hostport, _, path = rest.partition("/")
        host, _, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "80")
        try:
            upstream = self._connect(host or hostport, int(port or 80))
        except OSError:
            record.status = 502
            sock.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        kept = [(n, v) for n, v in headers if not n.lower().startswith("proxy-") and n.lower() != "connection"]
        head = f"{method} /{path} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in kept)
        head += "Connection: close\r\n\r\n"
        record.status = 0  # forwarded; the origin's status is not parsed
        with upstream:
            upstream.sendall(head.encode("latin-1") + body_start)
            _relay(sock, upstream)


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until one side closes or nothing moves for IDLE_TIMEOUT."""
    socks = [a, b]
    while True:
        readable, _, _ = select.select(socks, [], [], IDLE_TIMEOUT)
        if not readable:
            return
        for s in readable:
            try:
                data = s.recv(65536)
            except OSError:
                return
            if not data:
                return
            try:
                (b if s is a else a).sendall(data)
            except OSError:
                return


class CompanyProxy(Served):
    def __init__(self, credentials: tuple[str, str] | None, schemes: tuple[str, ...], resolve, deny,
                 negotiate: bool = False):
        self.credentials = credentials
        self.schemes = schemes
        self.negotiate = negotiate
        self.resolve = {name.lower(): "127.0.0.1" for name in resolve}
        self.deny = {d.lower() for d in deny}
        self._lock = threading.Lock()
        self._records: list[Record] = []
        # the handler sets IDLE_TIMEOUT on its socket, and _relay gives up after as long a silence
        self._server = LoopbackServer(_Handler, timeout=IDLE_TIMEOUT, label="company-proxy", company=self)
        self.port = self._server.port

    @classmethod
    def start(cls, credentials: tuple[str, str] | None = None, *, schemes: tuple[str, ...] = ("Basic",),
              resolve=TEST_HOSTS + ("localhost",), deny=(), negotiate: bool = False) -> "CompanyProxy":
        """negotiate=True: accept Negotiate/NTLM only, with pyspnego's acceptor (users from the
        file named by NTLM_USER_FILE in this process's environment, `DOMAIN:USER:PASSWORD`)."""
        return super().start(credentials, ("Negotiate", "NTLM") if negotiate else schemes, resolve, deny, negotiate)

    def _negotiate_step(self, acceptor, auth_values: list[str]):
        """(auth state, acceptor, token for the 407) for one leg of Negotiate/NTLM."""
        import spnego

        if not auth_values:
            return "missing", None, None
        scheme, _, token = auth_values[-1].partition(" ")
        if scheme.lower() not in ("negotiate", "ntlm") or not token:
            return "wrong", None, None
        if acceptor is None:
            acceptor = spnego.server(protocol="negotiate" if scheme.lower() == "negotiate" else "ntlm")
        try:
            out = acceptor.step(base64.b64decode(token))
        except Exception:  # noqa: BLE001 - a wrong password fails the last step
            return "wrong", None, None
        if acceptor.complete:
            return "ok", acceptor, None
        return "negotiating", acceptor, base64.b64encode(out).decode() if out else ""

    def _check(self, headers) -> str:
        if self.credentials is None:
            return "not-required"
        values = [v for n, v in headers if n.lower() == "proxy-authorization"]
        if not values:
            return "missing"
        return "ok" if values[-1] == basic_header(*self.credentials) else "wrong"

    def url_with(self, credentials: tuple[str, str] | None = None, host: str = "127.0.0.1") -> str:
        from urllib.parse import quote

        if credentials is None:
            return f"http://{host}:{self.port}"
        user, password = credentials
        return f"http://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{self.port}"

    @property
    def records(self) -> list[Record]:
        with self._lock:
            return list(self._records)

    def connects(self, host: str | None = None) -> list[Record]:
        return [r for r in self.records if r.method == "CONNECT" and (host is None or r.host == host)]

    def reset(self) -> None:
        with self._lock:
            self._records.clear()


@dataclass
class OriginRequest:
    method: str
    path: str
    headers: list[tuple[str, str]]


class _OriginHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        pass

    def _handle(self) -> None:
        origin: PlainOrigin = self.server.origin
        with origin.lock:
            origin.requests.append(OriginRequest(self.command, self.path, list(self.headers.items())))
        send_body(self, 200, b"plain origin says hello\n")

    do_GET = do_HEAD = _handle


class PlainOrigin(Served):
    """A plain-http server on 127.0.0.1 (reach it as http://other.test:PORT through a proxy
    that maps the name) recording every request's headers."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: list[OriginRequest] = []
        self._server = LoopbackServer(_OriginHandler, timeout=15, label="plain-origin", origin=self)
        self.port = self._server.port

