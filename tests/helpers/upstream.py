"""One hermetic world for tests of what the proxy does on the wire: a trustme CA, an HTTPS
upstream that misbehaves on purpose and records what reached it, a netrc, a config file, and a
real `credproxy serve` (stopped by pid) with the test names resolved to 127.0.0.1.

    with World(tmp_path, user="alice", password=SECRET, netrc="machine pkgs.test login ...") as w:
        w.start("--log-format", "json")
        reply = w.get("pkgs.test", "/private/x")                  # stdlib client, through the proxy
        raw = w.raw_request("pkgs.test", b"GET /x HTTP/1.1\\r\\nHost: evil.test\\r\\n\\r\\n")
        w.upstream.requests -> [Seen(sni, host, path, authorization), ...]
        log = w.stop()                                            # the proxy's stderr

Presets: tests/e2e/observe_setup.py (the observe tests: a default netrc, 403 for a wrong
credential) and tests/security/proxy_path.py (the proxy-path attacks: evil.test, 401 for any).

Upstream paths (Basic user:password):
  /private/...          401 + `WWW-Authenticate: Basic` without Authorization, `wrong_status`
                        (403 or 401) with a wrong one; authorised: 200 "private ok", or
  /private/...?echo=1   200, body `you sent: <Authorization>` and the request headers, and the
                        Authorization in `X-Echo-Authorization` (an upstream reflecting credentials)
  /private/...?big=N    200 with N bytes (Content-Length)
  /public/...           200 for everyone
  /echo                 200, body = the request headers (reflects a pre-emptive credential)
  /big?n=N&delay=S      N bytes in 64 KiB chunks, S seconds between chunks
  /chunked401?n=N       401 with a chunked body of N bytes
  /slow?s=S             200 after S seconds (at most 30)
  /stall?s=S            no response for S seconds (released by close()), then the connection closes
  /reset                the connection is reset (RST) without a response
  /garbage              bytes that are not HTTP, then close
Counts requests per (first path segment, authorised) in `hits`; records every request in
`requests` and every TLS server name in `snis`. Everything binds 127.0.0.1, every socket has
a timeout, the server thread is joined on close().
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import trustme

from credproxy.credentials.model import secret_forms
from tests.helpers.loopback import LoopbackServer, basic_header, send_body, stream_bytes
from tests.helpers.proxy import Proxy, credproxy_cmd, hermetic_env, start_credproxy
from tests.helpers.proxy_client import Reply, RawReply, client_context, connect_tunnel, get, read_response


@dataclass
class Seen:
    sni: str | None
    host: str | None
    path: str
    authorization: str | None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "LoopbackServer"

    def log_message(self, *args) -> None:  # quiet: `requests` is the log
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.upstream._handle(self)

    do_POST = do_HEAD = do_GET


class Upstream:
    """The misbehaving upstream (paths above). ca=None serves plain HTTP."""

    def __init__(self, *, ca: trustme.CA | None = None, user: str = "alice", password: str = "s3cret",
                 names: tuple[str, ...] = ("pkgs.test", "other.test", "localhost", "127.0.0.1", "::1"),
                 wrong_status: int = 403):
        self.user, self.password = user, password
        self.expected = basic_header(user, password)
        self.wrong_status = wrong_status
        self.hits: Counter = Counter()
        self.snis: list[str | None] = []  # every TLS handshake's server name, in order
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        context = None
        if ca is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert(*names).configure_cert(context)
            context.sni_callback = self._on_sni
        self.tls = ca is not None
        # a load test opens 50 connections at once: a deeper listen queue than the default 5
        self.server = LoopbackServer(_Handler, context=context, timeout=30, label="upstream", queue=256,
                                     upstream=self).start()
        self.port = self.server.port

    def _on_sni(self, sslobj, name, _ctx) -> None:
        sslobj.credproxy_sni = name
        with self._lock:
            self.snis.append(name)

    def url(self, host: str, path: str) -> str:
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    @property
    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def close(self) -> None:
        self._stop.set()  # releases stalled handlers
        self.server.stop()

    def __enter__(self) -> "Upstream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- behaviours ---------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = parse_qs(parts.query)
        path = parts.path
        auth = h.headers.get("Authorization")
        authorised = auth == self.expected
        length = int(h.headers.get("Content-Length") or 0)
        if length:
            h.rfile.read(min(length, 1 << 20))
        with self._lock:
            self.hits[(path.split("/")[1] if "/" in path else path, authorised)] += 1
            self._seen.append(Seen(getattr(h.connection, "credproxy_sni", None), h.headers.get("Host"),
                                   h.path, auth))
        if path.startswith("/private"):
            if not authorised:
                send_body(h, 401 if not auth else self.wrong_status, b"credentials required\n",
                          headers={"WWW-Authenticate": 'Basic realm="pkgs"'})
            elif "echo" in query:
                send_body(h, 200, f"you sent: {auth}\n{h.headers}".encode(),
                          headers={"X-Echo-Authorization": auth})
            elif "big" in query:
                send_body(h, 200, b"x" * int(query["big"][0]))
            else:
                send_body(h, 200, b"private ok\n")
        elif path.startswith("/public"):
            send_body(h, 200, b"public ok\n")
        elif path == "/echo":
            send_body(h, 200, str(h.headers).encode())
        elif path == "/big":
            h.send_response(200)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Length", query.get("n", ["1048576"])[0])
            h.end_headers()
            sent = stream_bytes(h.wfile, int(query.get("n", ["1048576"])[0]),
                                delay=float(query.get("delay", ["0"])[0]), stop=self._stop)
            h.close_connection = sent < int(query.get("n", ["1048576"])[0])
        elif path == "/chunked401":
            h.send_response(401)
            h.send_header("WWW-Authenticate", 'Basic realm="pkgs"')
            h.send_header("Content-Type", "text/plain")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            stream_bytes(h.wfile, int(query.get("n", ["1048576"])[0]), fill=b"y", chunked=True)
            h.close_connection = True
        elif path == "/slow":
            self._stop.wait(min(30.0, float(query.get("s", ["1"])[0])))
            send_body(h, 200, b"slow ok\n")
        elif path == "/stall":
            self._stop.wait(min(60.0, float(query.get("s", ["30"])[0])))
            h.close_connection = True
        elif path == "/reset":
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            h.connection.close()
        elif path == "/garbage":
            h.wfile.write(b"this is not HTTP at all\r\n\x00\x01\x02\r\n\r\n")
            h.wfile.flush()
            h.close_connection = True
        else:
            send_body(h, 404, b"not found\n")


class World:
    """The upstream (names -> 127.0.0.1 in the proxy), HOME with `netrc` (None: no netrc; "{port}"
    is replaced), the config `ca-bundle = <upstream CA>` + `config`, the proxy (start/stop)."""

    def __init__(self, tmp: Path, *, user: str, password: str, names: tuple[str, ...],
                 netrc: str | None = None, config: str = "", extra_env: dict[str, str] | None = None,
                 wrong_status: int = 403):
        self.tmp = tmp
        self.ca = trustme.CA()
        self.ca_pem = tmp / "upstream-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_pem))
        self.upstream = Upstream(ca=self.ca, user=user, password=password,
                                 names=(*names, "localhost", "127.0.0.1"), wrong_status=wrong_status)
        self.port = self.upstream.port
        resolve = ",".join(f"{n}=127.0.0.1" for n in names)
        self.env = hermetic_env(tmp, CREDPROXY_TEST_RESOLVE=resolve, **(extra_env or {}))
        self.home = Path(self.env["HOME"])
        self.netrc_path = self.home / ".netrc"
        if netrc is not None:
            self.netrc_path.write_bytes(netrc.replace("{port}", str(self.port)).encode("utf-8", "surrogateescape"))
            os.chmod(self.netrc_path, 0o600)
        self.config = Path(self.env["CREDPROXY_CONFIG"])
        self.config.write_text(f'ca-bundle = "{self.ca_pem}"\n' + config.replace("{port}", str(self.port)))
        self.proxy: Proxy | None = None
        self._started = 0
        self._context = None

    def url(self, host: str, path: str) -> str:
        return self.upstream.url(host, path)

    # --- the proxy ---------------------------------------------------------------------------

    def start(self, *args: str) -> Proxy:
        self.stop()
        self._started += 1
        self.proxy = start_credproxy(self.tmp, *args, env=self.env, name=f"proxy-{self._started}", timeout=30)
        return self.proxy

    @property
    def proxy_ca(self) -> str:
        return str(Path(self.env["CREDPROXY_DATA_DIR"]) / "ca" / "mitmproxy-ca-cert.pem")

    def stop(self) -> str:
        """Stop the proxy; return everything it wrote to stderr (the request log)."""
        if self.proxy is None:
            return ""
        self.proxy.stop()
        text = self.proxy.stderr()
        self.proxy = None
        return text

    def close(self) -> None:
        self.stop()
        self.upstream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def cli(self, *args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(credproxy_cmd(*args), env=env or self.env, capture_output=True, text=True,
                              timeout=timeout)

    # --- clients -----------------------------------------------------------------------------

    @property
    def context(self) -> ssl.SSLContext:
        """Trusts the proxy's CA (intercepted hosts) and the upstream's (passthrough)."""
        if self._context is None:
            self._context = client_context(self.proxy_ca, str(self.ca_pem))
        return self._context

    def get(self, host: str, path: str, **kw) -> Reply:
        assert self.proxy is not None
        return get(self.proxy, self.url(host, path), self.context, **kw)

    def connect(self, target: str, *, timeout: float = 20.0) -> socket.socket:
        """A plain TCP connection to the proxy with the tunnel to `target:port` set up."""
        assert self.proxy is not None
        return connect_tunnel(self.proxy, target, self.port, timeout=timeout)

    def tunnel(self, target: str, *, sni: str | None = None, timeout: float = 20.0) -> ssl.SSLSocket:
        """TLS through the tunnel to `target`, trusting the proxy's CA; `sni` as the server
        name the client sends (default: target)."""
        sock = self.connect(target, timeout=timeout)
        context = ssl.create_default_context(cafile=self.proxy_ca)
        context.check_hostname = False  # the test chooses the server name, maybe a wrong one
        try:
            return context.wrap_socket(sock, server_hostname=sni or target)
        except BaseException:
            sock.close()
            raise

    def raw_request(self, target: str, request: bytes, *, sni: str | None = None,
                    timeout: float = 20.0, max_body: int = 1 << 20) -> RawReply:
        """Write `request` as is through a TLS tunnel to `target`; read one response (the body
        up to `max_body`, then the connection is dropped)."""
        with self.tunnel(target, sni=sni, timeout=timeout) as tls:
            tls.sendall(request)
            return read_response(tls, max_body=max_body)


def leaks(text: str, secret: str, user: str) -> list[str]:
    """The forms of the secret that occur in text (raw, URL-encoded, base64 of user:secret)."""
    return [form for form in secret_forms(secret, user) if form in text]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
