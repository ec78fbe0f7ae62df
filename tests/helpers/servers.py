"""Real servers on 127.0.0.1 for end-to-end tests: certificates, a private index, an echo server.

- make_certs(dir) -> TestCerts: a trusted CA + server cert (SANs in SERVER_NAMES), an
  independent "untrusted" CA with its own server cert (unknown issuer), and a client CA with a
  client certificate (mTLS). Everything as PEM files in `dir`.
- PrivateIndex.start(dir, certs, username=..., password=...): pypiserver 2.4 (htpasswd,
  `-a download,list,update`) behind gunicorn TLS on 127.0.0.1:<random port>, with a counting
  middleware that records (status, Authorization present?, method, path) per response — never
  the header's value.
- EchoServer.start(certs, ...): stdlib HTTPS server in a thread; records every request (path,
  Host, Authorization value) and serves `/big/<n>` (n bytes streamed), `/status/<code>`,
  `/redirect/<301|302|307|308>?to=<url>`, anything else -> 200 JSON describing the request.
  Binds 127.0.0.1 (or ::1 with bind_host="::1"). Optional client-cert requirement and
  Basic credentials (401 unless they match).
- TlsServer(ca, names, ...): an HTTPS server with its own trustme CA that answers every GET with
  the client certificate's CN it saw (upstream-TLS tests); client_pem() writes a client cert.

The servers that run in this process are tests.helpers.loopback.LoopbackServer underneath
(timeouts on every socket, TLS handshakes off the accept loop, the thread joined on stop).
Stop everything you start (fixtures do): servers are stopped by pid / by shutting the thread.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import trustme

from tests.helpers.loopback import LoopbackServer, Served, basic_header, send_body, stream_bytes

REPO_ROOT = Path(__file__).resolve().parents[2]

# Names the proxy maps to 127.0.0.1 in tests (CREDPROXY_TEST_RESOLVE); all are in the cert.
TEST_HOSTS = ("pkgs.test", "other.test", "mirror.test", "mtls.test")
SERVER_NAMES = TEST_HOSTS + ("localhost", "127.0.0.1", "::1")


def test_resolve_env(names=TEST_HOSTS) -> str:
    """Value for CREDPROXY_TEST_RESOLVE mapping the test names to 127.0.0.1."""
    return ",".join(f"{name}=127.0.0.1" for name in names)


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class TestCerts:
    __test__ = False  # not a pytest test class

    dir: Path
    ca_pem: Path  # trusted test CA (give to clients / to the proxy's upstream trust)
    server_cert_pem: Path  # leaf + chain, SANs = SERVER_NAMES, issued by ca_pem
    server_key_pem: Path
    untrusted_ca_pem: Path  # an independent CA nobody trusts
    untrusted_server_cert_pem: Path  # same SANs, issued by the untrusted CA
    untrusted_server_key_pem: Path
    client_ca_pem: Path  # issuer of client certificates (servers requiring mTLS trust this)
    client_cert_pem: Path  # client leaf + chain
    client_key_pem: Path
    client_combined_pem: Path  # key + cert in one file (curl --cert, pip --client-cert)
    other_client_cert_pem: Path  # a client cert from the untrusted CA (rejected by mTLS)
    other_client_key_pem: Path
    ca_plus_certifi_pem: Path  # certifi roots + test CA (mitmproxy upstream trust must keep real roots)
    ca: trustme.CA = field(repr=False)
    untrusted_ca: trustme.CA = field(repr=False)
    client_ca: trustme.CA = field(repr=False)

    def server_context(self, *, untrusted: bool = False, client_ca: Path | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if untrusted:
            ctx.load_cert_chain(self.untrusted_server_cert_pem, self.untrusted_server_key_pem)
        else:
            ctx.load_cert_chain(self.server_cert_pem, self.server_key_pem)
        if client_ca is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=str(client_ca))
        return ctx


def make_certs(directory: os.PathLike | str) -> TestCerts:
    import certifi

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)

    def write(name: str, blob) -> Path:
        path = d / name
        blob.write_to_path(str(path))
        return path

    ca = trustme.CA(organization_name="credproxy test CA")
    server = ca.issue_cert(*SERVER_NAMES, common_name="pkgs.test")
    untrusted_ca = trustme.CA(organization_name="credproxy untrusted CA")
    untrusted_server = untrusted_ca.issue_cert(*SERVER_NAMES, common_name="pkgs.test")
    client_ca = trustme.CA(organization_name="credproxy client CA")
    client = client_ca.issue_cert("client@credproxy.test", common_name="credproxy test client")
    other_client = untrusted_ca.issue_cert("stranger@credproxy.test", common_name="stranger")

    def write_chain(name: str, leaf) -> Path:  # leaf + chain in one PEM
        path = d / name
        path.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
        return path

    ca_pem = write("ca.pem", ca.cert_pem)
    server_cert_pem = write_chain("server.pem", server)
    server_key_pem = write("server-key.pem", server.private_key_pem)
    untrusted_ca_pem = write("untrusted-ca.pem", untrusted_ca.cert_pem)
    untrusted_server_cert_pem = write_chain("untrusted-server.pem", untrusted_server)
    untrusted_server_key_pem = write("untrusted-server-key.pem", untrusted_server.private_key_pem)
    client_ca_pem = write("client-ca.pem", client_ca.cert_pem)
    client_cert_pem = write_chain("client.pem", client)
    client_key_pem = write("client-key.pem", client.private_key_pem)
    client_combined_pem = write("client-combined.pem", client.private_key_and_cert_chain_pem)
    other_client_cert_pem = write_chain("other-client.pem", other_client)
    other_client_key_pem = write("other-client-key.pem", other_client.private_key_pem)
    ca_plus_certifi_pem = d / "certifi-plus-ca.pem"
    ca_plus_certifi_pem.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + ca.cert_pem.bytes())
    for key in (server_key_pem, untrusted_server_key_pem, client_key_pem, client_combined_pem,
                other_client_key_pem):
        key.chmod(0o600)

    return TestCerts(
        dir=d,
        ca_pem=ca_pem,
        server_cert_pem=server_cert_pem,
        server_key_pem=server_key_pem,
        untrusted_ca_pem=untrusted_ca_pem,
        untrusted_server_cert_pem=untrusted_server_cert_pem,
        untrusted_server_key_pem=untrusted_server_key_pem,
        client_ca_pem=client_ca_pem,
        client_cert_pem=client_cert_pem,
        client_key_pem=client_key_pem,
        client_combined_pem=client_combined_pem,
        other_client_cert_pem=other_client_cert_pem,
        other_client_key_pem=other_client_key_pem,
        ca_plus_certifi_pem=ca_plus_certifi_pem,
        ca=ca,
        untrusted_ca=untrusted_ca,
        client_ca=client_ca,
    )


# --------------------------------------------------------------------------- process helpers


def wait_for_port(port: int, *, host: str = "127.0.0.1", timeout: float = 15.0,
                  proc: subprocess.Popen | None = None, what: str = "server") -> None:
    """Poll until something accepts on host:port; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not listening on {host}:{port} after {timeout}s")
        time.sleep(0.05)


def stop_pid(proc: subprocess.Popen, *, grace: float = 5.0, sig: int = signal.SIGTERM) -> None:
    """`sig` (SIGTERM) to the process we started, wait, then SIGKILL. Only ever this pid."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=grace)


def read_line(stream, timeout: float) -> str:
    """One line from a child's stdout pipe, or "" if none starts within `timeout` seconds (a
    bare readline() waits for ever on a child that never prints)."""
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
    line = stream.readline()
    return line.decode() if isinstance(line, bytes) else line


def die_with_parent() -> None:
    """preexec_fn: SIGTERM this child if the test process dies (a killed pytest must not leave
    servers running on a shared machine). Linux only; elsewhere a no-op."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    """A port that was free a moment ago (for servers that cannot report a port-0 bind)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- private index

# Environment of the gunicorn process -> index_wsgi_app() configuration.
_ENV_HTPASSWD = "TESTBED_INDEX_HTPASSWD"
_ENV_PACKAGES = "TESTBED_INDEX_PACKAGES"
_ENV_COUNTS = "TESTBED_INDEX_COUNTS"


class _CountingMiddleware:
    """Appends one JSON line per response: status, method, path (no query), auth present.

    Never the Authorization value: the log must be safe to print in a failing test."""

    def __init__(self, app, log_path: str):
        self.app = app
        self.log_path = log_path
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        def counting_start_response(status, headers, exc_info=None):
            record = {
                "status": int(status.split(" ", 1)[0]),
                "method": environ.get("REQUEST_METHOD", ""),
                "path": environ.get("PATH_INFO", ""),
                "auth": "HTTP_AUTHORIZATION" in environ,
            }
            line = (json.dumps(record) + "\n").encode()
            with self.lock:
                fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        return self.app(environ, counting_start_response)


def index_wsgi_app():
    """gunicorn app factory (`tests.helpers.servers:index_wsgi_app()`), configured by env."""
    # passlib 1.7.4 probes bcrypt at import and crashes on bcrypt >= 4.1/5 ("password cannot be
    # longer than 72 bytes"); our htpasswd is apr_md5_crypt, so hide bcrypt from passlib.
    if "passlib.apache" not in sys.modules:
        sys.modules["bcrypt"] = None  # type: ignore[assignment]
    import pypiserver
    from pypiserver.config import Config

    config = Config.from_args([
        "run",
        "-P", os.environ[_ENV_HTPASSWD],
        "-a", "download,list,update",
        "--disable-fallback",
        os.environ[_ENV_PACKAGES],
    ])
    return _CountingMiddleware(pypiserver.app_from_config(config), os.environ[_ENV_COUNTS])


def write_htpasswd(path: Path, users: dict[str, str]) -> None:
    # apr_md5_crypt: ~0.35 ms per check; pypiserver checks on every request (sha256 ~145 ms).
    from passlib.hash import apr_md5_crypt

    path.write_text("".join(f"{u}:{apr_md5_crypt.hash(p)}\n" for u, p in users.items()))
    path.chmod(0o600)


@dataclass
class IndexRequest:
    status: int
    method: str
    path: str
    auth: bool  # whether the request carried an Authorization header


class PrivateIndex:
    """pypiserver behind gunicorn TLS. Public attributes:

    url       https://pkgs.test:PORT/simple/   (needs the proxy's name mapping)
    url_ip    https://127.0.0.1:PORT/simple/   (direct)
    host, port, pid, username, password, ca (PEM path), packages_dir, log paths.
    url_for(host, userinfo=None, path="/simple/") for other names / credentials in the URL.
    count(status, auth=None) responses with that status since the last reset().
    """

    def __init__(self, *, proc, port, username, password, ca, packages_dir, counts_path,
                 access_log, error_log):
        self.proc = proc
        self.port = port
        self.pid = proc.pid
        self.host = "pkgs.test"
        self.username = username
        self.password = password
        self.ca = ca
        self.packages_dir = packages_dir
        self.counts_path = counts_path
        self.access_log = access_log
        self.error_log = error_log
        self._offset = 0
        self.reset()  # the readiness probe is not a test's request
        self.url = self.url_for("pkgs.test")
        self.url_ip = self.url_for("127.0.0.1")

    def __repr__(self) -> str:  # no password
        return f"<PrivateIndex {self.url_ip} pid={self.pid} user={self.username!r}>"

    def url_for(self, host: str = "pkgs.test", *, userinfo: str | None = None,
                path: str = "/simple/") -> str:
        netloc = f"[{host}]" if ":" in host else host
        if userinfo:
            netloc = f"{userinfo}@{netloc}"
        return f"https://{netloc}:{self.port}{path}"

    @property
    def url_with_creds(self) -> str:
        """Direct URL (127.0.0.1) with this index's credentials (URL-encoded) in userinfo."""
        return self.creds_url("127.0.0.1")

    def creds_url(self, host: str = "127.0.0.1", path: str = "/simple/") -> str:
        """URL for `host` with this index's credentials (URL-encoded) in userinfo."""
        from urllib.parse import quote

        userinfo = f"{quote(self.username, safe='')}:{quote(self.password, safe='')}"
        return self.url_for(host, userinfo=userinfo, path=path)

    # ---- counters

    def requests(self) -> list[IndexRequest]:
        """Responses since the last reset(), in order."""
        try:
            with open(self.counts_path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        # A line may be half-written while a response is in flight: ignore an unfinished tail.
        complete = data[: data.rfind(b"\n") + 1]
        return [IndexRequest(**json.loads(line)) for line in complete.splitlines() if line]

    def count(self, status: int | None = None, *, auth: bool | None = None) -> int:
        return sum(
            1 for r in self.requests()
            if (status is None or r.status == status) and (auth is None or r.auth == auth)
        )

    def counts(self) -> dict[int, int]:
        result: dict[int, int] = {}
        for r in self.requests():
            result[r.status] = result.get(r.status, 0) + 1
        return result

    def reset(self) -> None:
        try:
            self._offset = self.counts_path.stat().st_size
        except FileNotFoundError:
            self._offset = 0

    # ---- packages

    def add_wheel(self, wheel: Path) -> Path:
        """"Upload" = copy into the package dir (pypiserver rescans)."""
        target = self.packages_dir / wheel.name
        tmp = target.with_suffix(".part")
        tmp.write_bytes(wheel.read_bytes())
        tmp.replace(target)
        return target

    # ---- lifecycle

    @classmethod
    def start(cls, directory: os.PathLike | str, certs: TestCerts, *, username: str = "alice",
              password: str = "s3cret-Pa55:w@rd", wheels: list[Path] = (),
              start_timeout: float = 30.0, client_ca: Path | None = None,
              client_cert: Path | None = None) -> "PrivateIndex":
        """client_ca: the TLS handshake requires a client certificate it issued (gunicorn
        `--cert-reqs 2 --ca-certs`); the readiness probe then presents `client_cert` (key +
        certificate in one PEM)."""
        d = Path(directory).resolve()
        packages = d / "packages"
        packages.mkdir(parents=True, exist_ok=True)
        for wheel in wheels:
            (packages / wheel.name).write_bytes(Path(wheel).read_bytes())
        htpasswd = d / "htpasswd"
        write_htpasswd(htpasswd, {username: password})
        counts = d / "requests.jsonl"
        access_log, error_log = d / "gunicorn-access.log", d / "gunicorn-error.log"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(d),
            "LANG": "C.UTF-8",
            _ENV_HTPASSWD: str(htpasswd),
            _ENV_PACKAGES: str(packages),
            _ENV_COUNTS: str(counts),
        }
        last_error = None
        for _attempt in range(3):  # the probed port can be taken between probe and bind
            port = free_port()
            cmd = [
                sys.executable, "-m", "gunicorn",
                "--bind", f"127.0.0.1:{port}",
                "--certfile", str(certs.server_cert_pem),
                "--keyfile", str(certs.server_key_pem),
                *(("--cert-reqs", "2", "--ca-certs", str(client_ca)) if client_ca is not None else ()),
                "--worker-class", "gthread", "--workers", "1", "--threads", "8",
                "--timeout", "60", "--graceful-timeout", "2",
                "--chdir", str(d),
                "--pythonpath", str(REPO_ROOT),
                "--no-control-socket",
                "--access-logfile", str(access_log),
                # status, method, path: no headers, so no secrets in the log.
                "--access-logformat", '%(h)s "%(m)s %(U)s" %(s)s %(B)s',
                "--error-logfile", str(error_log),
                "tests.helpers.servers:index_wsgi_app()",
            ]
            proc = subprocess.Popen(cmd, env=env, cwd=d, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    preexec_fn=die_with_parent)
            try:
                wait_for_port(port, proc=proc, timeout=start_timeout, what="gunicorn")
                _wait_index_ready(port, certs.ca_pem, proc, start_timeout, client_cert)
            except (RuntimeError, TimeoutError) as exc:
                stop_pid(proc)
                log = error_log.read_text(errors="replace") if error_log.exists() else ""
                last_error = f"{exc}\n--- gunicorn error log ---\n{log[-4000:]}"
                if "Address already in use" in log:
                    continue
                raise RuntimeError(last_error) from None
            return cls(proc=proc, port=port, username=username, password=password,
                       ca=certs.ca_pem, packages_dir=packages, counts_path=counts,
                       access_log=access_log, error_log=error_log)
        raise RuntimeError(last_error)

    def stop(self) -> None:
        stop_pid(self.proc)


def _wait_index_ready(port: int, ca: Path, proc, timeout: float, client_cert: Path | None = None) -> None:
    """The worker imports pypiserver after the port is bound: wait for a real HTTP answer."""
    import http.client

    ctx = ssl.create_default_context(cafile=str(ca))
    if client_cert is not None:
        ctx.load_cert_chain(str(client_cert))
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        try:
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=2)
            conn.request("GET", "/health")
            conn.getresponse().read()
            conn.close()
            return
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise TimeoutError(f"index on port {port} not answering after {timeout}s")
            time.sleep(0.1)


# --------------------------------------------------------------------------- echo server


@dataclass
class EchoRequest:
    method: str
    path: str
    host: str | None
    authorization: str | None  # the raw header value: tests compare it to what they expect
    client_cert: bool  # whether a (verified) client certificate was presented
    headers: dict[str, str]
    status: int = 0


_BIG = re.compile(r"^/big/(\d+)$")
_REDIRECT = re.compile(r"^/redirect/(30[1278])$")
_STATUS = re.compile(r"^/status/(\d{3})$")
_HELD = re.compile(r"^/held/([A-Za-z0-9_-]+)(/.*)?$")
_HELD_ANY = re.compile(r"^/held-any/([A-Za-z0-9_-]+)(/.*)?$")
#: the longest a /held/NAME request waits for EchoServer.release(NAME)
HOLD_LIMIT = 15.0


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body are separate writes: without TCP_NODELAY, Nagle + the client's delayed
    # ACK add ~40 ms to every keep-alive request
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # quiet: the record list is the log
        pass

    def _record(self) -> EchoRequest:
        peer = None
        try:
            peer = self.connection.getpeercert()
        except (AttributeError, ValueError):
            pass
        rec = EchoRequest(
            method=self.command,
            path=self.path,
            host=self.headers.get("Host"),
            authorization=self.headers.get("Authorization"),
            client_cert=bool(peer),
            headers={k: v for k, v in self.headers.items()},
        )
        self.server.echo._add(rec)
        return rec

    def _send(self, rec: EchoRequest, status: int, body: bytes, headers=()) -> None:
        rec.status = status
        send_body(self, status, body, "application/json", headers)

    def _handle(self) -> None:
        rec = self._record()
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        echo = self.server.echo
        m = _HELD_ANY.match(rec.path.split("?", 1)[0])
        if m:  # /held-any/NAME/...: every answer waits, a challenge (401) too
            echo.gate(m.group(1)).wait(HOLD_LIMIT)
        if echo.credentials is not None:
            if rec.authorization != basic_header(*echo.credentials):
                status = 401 if rec.authorization is None else echo.wrong_credentials_status
                self._send(rec, status, b'{"error": "unauthorized"}',
                           [("WWW-Authenticate", 'Basic realm="echo"')])
                return
        m = _HELD.match(rec.path.split("?", 1)[0])
        if m:  # /held/NAME/...: answer (as for any path) once the test releases NAME
            echo.gate(m.group(1)).wait(HOLD_LIMIT)
        m = _BIG.match(rec.path.split("?", 1)[0])
        if m:
            self._send_big(rec, int(m.group(1)))
            return
        m = _REDIRECT.match(rec.path.split("?", 1)[0])
        if m:
            # /redirect/302?to=<url>: for tests of credentials (not) following a redirect.
            target = parse_qs(urlsplit(rec.path).query).get("to", ["/"])[0]
            self._send(rec, int(m.group(1)), b"{}", [("Location", target)])
            return
        m = _STATUS.match(rec.path.split("?", 1)[0])
        status = int(m.group(1)) if m else 200
        body = json.dumps({
            "path": rec.path, "host": rec.host, "method": rec.method,
            "authorization": rec.authorization is not None, "client_cert": rec.client_cert,
        }).encode()
        self._send(rec, status, body)

    def _send_big(self, rec: EchoRequest, size: int) -> None:
        # Streamed from one reusable chunk: the server never holds `size` bytes.
        rec.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if self.command != "HEAD":
            stream_bytes(self.wfile, size)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle


class EchoServer(Served):
    """HTTPS server in a thread on 127.0.0.1 (or ::1). Attributes: port, host (for url_for),
    requests (list of EchoRequest), errors (TLS/handshake errors as strings), credentials,
    client_ca. With credentials=(user, password): no Authorization -> 401, wrong ->
    wrong_credentials_status (401, or e.g. 403 like pypiserver).

    url_for(host="other.test", path="/") / url (other.test form) / url_ip (127.0.0.1 form).
    plain=True serves plain HTTP (no TLS), e.g. a listener on a loopback port.
    /held/NAME/...: the answer waits (after the credentials check, at most HOLD_LIMIT) until
    release(NAME): a request that is upstream while the test changes something.
    /held-any/NAME/...: the same, before the credentials check, so a 401 waits too (a
    request that went out bare and whose challenge comes back after the change). Once
    released, NAME stays open: a re-send of the same request is answered at once.
    """

    def __init__(self, certs: TestCerts, *, client_ca: Path | None = None,
                 credentials: tuple[str, str] | None = None, wrong_credentials_status: int = 401,
                 untrusted: bool = False, host: str = "other.test",
                 bind_host: str = "127.0.0.1", plain: bool = False):
        self.certs = certs
        self.client_ca = client_ca
        self.credentials = credentials
        self.wrong_credentials_status = wrong_credentials_status
        self.host = host
        self.scheme = "http" if plain else "https"
        self.context = None if plain else certs.server_context(untrusted=untrusted, client_ca=client_ca)
        self._lock = threading.Lock()
        self._requests: list[EchoRequest] = []
        self._errors: list[str] = []
        self._gates: dict[str, threading.Event] = {}
        self.bind_host = bind_host
        # Failed handshakes (no/unknown client cert, client rejecting our CA) are expected: noted.
        self._server = LoopbackServer(_EchoHandler, context=self.context, host=bind_host, timeout=15,
                                      label="echo", on_error=self._note_error, echo=self)
        self.port = self._server.port

    def __repr__(self) -> str:
        return f"<EchoServer {self.url_ip} host={self.host}>"

    def url_for(self, host: str | None = None, path: str = "/") -> str:
        host = host or self.host
        netloc = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{netloc}:{self.port}{path}"

    @property
    def url(self) -> str:
        return self.url_for(self.host)

    @property
    def url_ip(self) -> str:
        """The direct URL (bind address: 127.0.0.1, or [::1] with bind_host="::1")."""
        return self.url_for(self.bind_host)

    def _add(self, rec: EchoRequest) -> None:
        with self._lock:
            self._requests.append(rec)

    def gate(self, name: str) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(name, threading.Event())

    def release(self, name: str) -> None:
        self.gate(name).set()

    def stop(self) -> None:
        with self._lock:
            gates = list(self._gates.values())
        for gate in gates:  # a held request must not keep the server from stopping
            gate.set()
        super().stop()

    def _note_error(self, exc) -> None:
        with self._lock:
            self._errors.append(f"{type(exc).__name__}: {exc}")

    @property
    def requests(self) -> list[EchoRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def errors(self) -> list[str]:
        with self._lock:
            return list(self._errors)

    def count(self, status: int | None = None, *, auth: bool | None = None) -> int:
        return sum(
            1 for r in self.requests
            if (status is None or r.status == status)
            and (auth is None or (r.authorization is not None) == auth)
        )

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._errors.clear()


# --------------------------------------------------------------------------- client-cert reporter


class _CertReportHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        cert = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        cn = None
        if cert:
            for rdn in cert.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        cn = value
        body = json.dumps({"server": self.server.name, "path": self.path, "client_cn": cn}).encode()
        send_body(self, 200, body, "application/json")

    def log_message(self, *args):
        pass


class TlsServer:
    """HTTPS on 127.0.0.1:<free port> with a leaf from its own trustme `ca` for `names` (+
    127.0.0.1, localhost), for upstream-TLS tests: every GET is answered with a JSON document
    naming the server and the client certificate it saw (subject CN), so a test can tell which
    certificate the proxy sent. Optional client-certificate requirement (`client_ca`, as
    gunicorn's `--cert-reqs 2 --ca-certs` does it), highest TLS version (`tls_max`), a leaf
    that expired (`not_after`). Rejected handshakes are expected and quiet.

        with TlsServer(ca, ["pkgs.test"], name="a") as server: ... server.port ...
    """

    def __init__(self, ca: trustme.CA, names: list[str], name: str = "server",
                 client_ca: trustme.CA | None = None, tls_max: ssl.TLSVersion | None = None,
                 not_after=None):
        kw = {"not_after": not_after} if not_after is not None else {}
        if not_after is not None:
            kw["not_before"] = not_after - datetime.timedelta(days=30)
        leaf = ca.issue_cert(*names, "127.0.0.1", "localhost", **kw)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf.configure_cert(ctx)
        if client_ca is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
            client_ca.configure_trust(ctx)
        if tls_max is not None:
            ctx.maximum_version = tls_max
        self._server = LoopbackServer(_CertReportHandler, context=ctx, timeout=10, label=f"tls-{name}", name=name)
        self.port = self._server.port

    def __enter__(self) -> "TlsServer":
        self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop()


def client_pem(ca: trustme.CA, cn: str, path: Path, key_first: bool = False, with_chain: bool = True) -> str:
    """One PEM with a client certificate for `cn` (+ chain) from `ca`, and its key (after the
    certificate, or first with key_first); returns the path."""
    cert = ca.issue_cert(cn, common_name=cn)
    chain = b"".join(b.bytes() for b in (cert.cert_chain_pems if with_chain else cert.cert_chain_pems[:1]))
    key = cert.private_key_pem.bytes()
    path.write_bytes(key + chain if key_first else chain + key)
    return str(path)
