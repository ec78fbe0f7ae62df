"""A git smart-HTTP server: git's own CGI `git http-backend` behind TLS and Basic auth.

    server = GitServer.start(tmp_path / "git", certs, username="alice", password="pw")
    server.url("repo.git")   # https://pkgs.test:PORT/repo.git (through the proxy's name mapping)
    server.head("repo.git")  # the commit the bare repository's HEAD branch points at

Requests without the exact credential get 401 with `WWW-Authenticate: Basic`. Request bodies
(chunked or with a length) are piped into http-backend as they arrive and its output is sent
back chunked as it is produced: the server holds no pack in memory. Records (status, method,
path, whether Authorization was sent) per request; never the value."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from tests.helpers.loopback import LoopbackServer, Served, basic_header, send_body
from tests.helpers.servers import TestCerts

_CHUNK = 64 * 1024
GIT_TIMEOUT = 60  # seconds for one local git command of the set-up


@dataclass
class GitRequest:
    status: int
    method: str
    path: str
    auth: bool


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass

    def _record(self, status: int) -> None:
        git = self.server.git
        with git.lock:
            git.requests.append(GitRequest(status, self.command, self.path, "Authorization" in self.headers))

    def _deny(self) -> None:
        self._drain()
        self._record(401)
        send_body(self, 401, b"authentication required\n", headers={"WWW-Authenticate": 'Basic realm="git"'})

    def _drain(self) -> None:
        for _ in self._body_chunks():
            pass

    def _body_chunks(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                if not (yield from self._read(size)):
                    return
                self.rfile.readline()
        else:
            yield from self._read(int(self.headers.get("Content-Length") or 0))

    def _read(self, left: int):
        """Yield `left` bytes of the body in pieces; returns False if the client stopped early."""
        while left:
            data = self.rfile.read(min(left, _CHUNK))
            if not data:
                return False
            left -= len(data)
            yield data
        return True

    def _handle(self) -> None:
        git = self.server.git
        if self.headers.get("Authorization") != basic_header(git.username, git.password):
            self._deny()
            return
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(git.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(git.root),
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REMOTE_USER": git.username,
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
        }
        for header, var in (("Content-Length", "CONTENT_LENGTH"), ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
                            ("Git-Protocol", "HTTP_GIT_PROTOCOL")):
            if self.headers.get(header):
                env[var] = self.headers[header]
        proc = subprocess.Popen([git.backend], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)

        def feed() -> None:
            try:
                for data in self._body_chunks():
                    proc.stdin.write(data)
            except (OSError, ValueError):
                pass
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            self._relay(proc)
        except BaseException:
            proc.kill()  # the client left mid-pack: http-backend (ours, by its pid) ends now
            raise
        finally:
            feeder.join(timeout=60)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            proc.stdout.close()

    def _relay(self, proc: subprocess.Popen) -> None:
        """http-backend's CGI answer to the client: its head, then its output chunked."""
        status, headers = 200, []
        while True:
            line = proc.stdout.readline().decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            else:
                headers.append((name, value.strip()))
        self._record(status)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while True:
            data = proc.stdout.read1(_CHUNK)
            if not data:
                break
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"0\r\n\r\n")

    do_GET = do_POST = _handle


class GitServer(Served):
    def __init__(self, root: Path, certs: TestCerts, *, username: str, password: str):
        self.root = root
        self.username = username
        self.password = password
        self.backend = str(Path(subprocess.run(["git", "--exec-path"], capture_output=True, text=True,
                                               check=True, timeout=GIT_TIMEOUT).stdout.strip()) / "git-http-backend")
        self.lock = threading.Lock()
        self.requests: list[GitRequest] = []
        self.context = certs.server_context()
        # a pack can take a while: 60 s of silence per socket before a handler gives up
        self._server = LoopbackServer(_Handler, context=self.context, timeout=60, label="git", git=self)
        self.port = self._server.port

    def __repr__(self) -> str:
        return f"<GitServer 127.0.0.1:{self.port} user={self.username!r}>"

    @classmethod
    def start(cls, root: Path, certs: TestCerts, **kwargs) -> "GitServer":
        root.mkdir(parents=True, exist_ok=True)
        return super().start(root, certs, **kwargs)

    def url(self, repo: str, host: str = "pkgs.test") -> str:
        return f"https://{host}:{self.port}/{repo}"

    def create_repo(self, name: str, files: dict[str, bytes]) -> str:
        """A bare repository with one commit holding `files`; returns the commit id."""
        bare = self.root / name
        env = git_identity_env(self.root)
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], env=env, check=True, timeout=GIT_TIMEOUT)
        subprocess.run(["git", "-C", str(bare), "config", "http.receivepack", "true"], env=env, check=True, timeout=GIT_TIMEOUT)
        work = self.root / (name + ".seed")
        subprocess.run(["git", "init", "-q", "-b", "main", str(work)], env=env, check=True, timeout=GIT_TIMEOUT)
        for rel, data in files.items():
            (work / rel).write_bytes(data)
        subprocess.run(["git", "-C", str(work), "add", "-A"], env=env, check=True, timeout=GIT_TIMEOUT)
        subprocess.run(["git", "-C", str(work), "commit", "-q", "-m", "seed"], env=env, check=True, timeout=GIT_TIMEOUT)
        subprocess.run(["git", "-C", str(work), "push", "-q", str(bare), "main"], env=env, check=True, timeout=GIT_TIMEOUT)
        shutil.rmtree(work)
        return self.head(name)

    def head(self, name: str) -> str:
        return subprocess.run(["git", "-C", str(self.root / name), "rev-parse", "main"], capture_output=True,
                              text=True, check=True, env=git_identity_env(self.root),
                              timeout=GIT_TIMEOUT).stdout.strip()

    def statuses(self) -> list[int]:
        with self.lock:
            return [r.status for r in self.requests]


def git_identity_env(home: Path, **extra: str) -> dict[str, str]:
    """git with no system/user configuration of this machine, a fixed identity, no prompts."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
        **extra,
    }
