"""Local stand-ins for hosted registries (issue 12): a small HTTPS server on 127.0.0.1.

    reg = TokenRegistry.start(certs, base="/pypi/my-repo", username="aws", token="t1")
    reg.index_url("pkgs.test")    # https://pkgs.test:PORT/pypi/my-repo/simple/
    reg.rotate("t2")              # the old token is rejected from now on

It checks what the real service checks: `Authorization: Basic base64(USERNAME:TOKEN)` with the
exact username the service requires (`username=""` for JFrog's empty one; `username=None`
accepts any non-empty username, as Azure does for a PAT), or `Authorization: Bearer TOKEN`
(`scheme="bearer"`, npm). No or a wrong credential: 401 with a challenge.

Serves a PEP 503 simple index for `wheels` under BASE/simple/ and the files under
BASE/packages/, and for npm (`npm_packages`: name -> tarball bytes, version 1.0.0) the
packument at BASE/<@scope%2fname> and the tarball at BASE/<@scope/name>/-/<name>-1.0.0.tgz.
Records every request (status, method, path, username or "bearer"), never the secret."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote

from tests.helpers.loopback import LoopbackServer, Served, send_body
from tests.helpers.servers import TestCerts


@dataclass
class Seen:
    status: int
    method: str
    path: str
    who: str | None  # the Basic username sent ("" for an empty one), "bearer", or None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass

    def _who_and_ok(self) -> tuple[str | None, bool]:
        reg = self.server.registry
        value = self.headers.get("Authorization") or ""
        scheme, _, rest = value.partition(" ")
        with reg.lock:
            tokens = set(reg.tokens)
        if scheme.lower() == "bearer":
            return "bearer", reg.scheme == "bearer" and rest.strip() in tokens
        if scheme.lower() != "basic":
            return None, False
        try:
            user, _, password = base64.b64decode(rest).decode().partition(":")
        except ValueError:
            return None, False
        if reg.scheme != "basic" or password not in tokens:
            return user, False
        if reg.username is None:
            return user, bool(user)
        return user, user == reg.username

    def _reply(self, status: int, body: bytes, ctype: str = "text/html", who: str | None = None) -> None:
        reg = self.server.registry
        with reg.lock:
            reg.seen.append(Seen(status, self.command, self.path, who))
        challenge = 'Bearer realm="registry"' if reg.scheme == "bearer" else 'Basic realm="registry"'
        send_body(self, status, body, ctype, {"WWW-Authenticate": challenge} if status == 401 else ())

    def do_GET(self) -> None:  # noqa: N802
        reg = self.server.registry
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))
        who, ok = self._who_and_ok()
        if not ok:
            self._reply(401, b"unauthorized\n", who=who)
            return
        path = self.path.split("?", 1)[0]
        if not path.startswith(reg.base + "/"):
            self._reply(404, b"not found\n", who=who)
            return
        rest = path[len(reg.base):]
        found = reg.route(rest, self.headers.get("Host", ""))
        if found is None:
            self._reply(404, b"not found\n", who=who)
            return
        body, ctype = found
        self._reply(200, body, ctype, who=who)

    do_HEAD = do_GET


class TokenRegistry(Served):
    def __init__(self, certs: TestCerts, *, base: str, username: str | None, token: str,
                 scheme: str = "basic", wheels: list[Path] = (), npm_packages: dict[str, bytes] | None = None):
        self.base = base.rstrip("/")
        self.username = username
        self.scheme = scheme
        self.tokens = [token]
        self.lock = threading.Lock()
        self.seen: list[Seen] = []
        self.wheels = {w.name: w.read_bytes() for w in wheels}
        self.npm = dict(npm_packages or {})
        self.context = certs.server_context()
        # clients that drop a connection are not the test's concern: handler errors are quiet
        self._server = LoopbackServer(_Handler, context=self.context, timeout=15, label="registry",
                                      registry=self)
        self.port = self._server.port

    def __repr__(self) -> str:  # never the token
        return f"<TokenRegistry 127.0.0.1:{self.port}{self.base} user={self.username!r}>"

    def rotate(self, token: str) -> None:
        """The service issues a new token; the old one is rejected from now on."""
        with self.lock:
            self.tokens = [token]

    def url(self, host: str = "pkgs.test", path: str = "/") -> str:
        return f"https://{host}:{self.port}{self.base}{path}"

    def index_url(self, host: str = "pkgs.test") -> str:
        return self.url(host, "/simple/")

    def statuses(self) -> list[int]:
        with self.lock:
            return [s.status for s in self.seen]

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()

    # --- content ---------------------------------------------------------------------------

    def route(self, rest: str, host: str) -> tuple[bytes, str] | None:
        if rest == "/simple/":
            links = "".join(f'<a href="{_project(n)}/">{_project(n)}</a>\n' for n in self.wheels)
            return f"<!DOCTYPE html><html><body>\n{links}</body></html>\n".encode(), "text/html"
        if rest.startswith("/simple/") and rest.endswith("/"):
            project = rest[len("/simple/"):-1]
            files = [n for n in self.wheels if _project(n) == project]
            if not files:
                return None
            links = "".join(
                f'<a href="../../packages/{n}#sha256={hashlib.sha256(self.wheels[n]).hexdigest()}">{n}</a>\n'
                for n in files)
            return f"<!DOCTYPE html><html><body>\n{links}</body></html>\n".encode(), "text/html"
        if rest.startswith("/packages/") and rest[len("/packages/"):] in self.wheels:
            return self.wheels[rest[len("/packages/"):]], "application/octet-stream"
        return self._npm_route(unquote(rest), host)

    def _npm_route(self, rest: str, host: str) -> tuple[bytes, str] | None:
        for name, tarball in self.npm.items():
            short = name.rsplit("/", 1)[-1]
            if rest == f"/{name}":
                tar_url = f"https://{host}{self.base}/{name}/-/{short}-1.0.0.tgz"
                doc = {
                    "name": name, "dist-tags": {"latest": "1.0.0"},
                    "versions": {"1.0.0": {
                        "name": name, "version": "1.0.0",
                        "dist": {"tarball": tar_url,
                                 "shasum": hashlib.sha1(tarball).hexdigest(),
                                 "integrity": "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()},
                    }},
                }
                return json.dumps(doc).encode(), "application/json"
            if rest == f"/{name}/-/{short}-1.0.0.tgz":
                return tarball, "application/octet-stream"
        return None


def _project(filename: str) -> str:
    return filename.split("-", 1)[0].replace("_", "-").lower()
