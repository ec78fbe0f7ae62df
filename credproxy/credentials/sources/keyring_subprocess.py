"""The `keyring` command line, exactly as uv calls it (uv §11).

`keyring get <SERVICE> <USERNAME>` when a username is known, else
`keyring get <SERVICE> --mode creds`. Services: the index URL as configured (or the request
URL), then `host[:port]`, then `scheme://host[:port]` for non-https; first success wins.

The command's stderr is captured and echoed to our stderr afterwards with any secret it
learnt redacted. Nothing here raises: problems become warnings (logging.warning,
`warnings`) and an Answer detail.

Bounds (issue 9, finding 5): stdout and stderr are read up to OUTPUT_LIMIT (64 KiB) each;
more is "no credential" and the command is killed. A command that hangs is killed after
`timeout` seconds. The command runs under keyring_reaper.py, which kills what it leaves
behind (its process group, and on Linux every descendant, even one that called setsid());
and once the command has exited we wait at most EOF_GRACE for its pipes to close, so a
survivor holding them cannot delay the request."""

from __future__ import annotations

import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..index import Index
from ..model import Credentials, Realm, redact_text, shown_name
from .base import Answer, realm_prefix, url_prefix
from .process import NEUTRAL_DIR, echo_stderr, helper_environment

log = logging.getLogger(__name__)

OUTPUT_LIMIT = 64 * 1024  # bytes, each of stdout and stderr
EOF_GRACE = 0.2  # seconds to wait for the pipes once the command has exited
_REAPER = str(Path(__file__).with_name("keyring_reaper.py"))
_TIMED_OUT = 124  # keyring_reaper.py's exit status after its timeout
_CANNOT_RUN = "keyring_reaper: cannot run: "  # keyring_reaper.CANNOT_RUN (it is run, not imported)

MODE_UNSUPPORTED = (
    "Attempted to fetch credentials using the keyring command, but it does not support "
    "--mode creds; upgrade to keyring>=v25.2.1 or provide a username"
)


def keyring_services(url: str, index: Index | None) -> list[str]:
    """The index URL (else the request URL without userinfo, query and fragment: a query
    may hold a token, and the service is the command's argument, which every local user can
    read in /proc/PID/cmdline, and is named in log lines), `host[:port]`, then
    `scheme://host[:port]` for plain http."""
    first = index.url if index is not None else url_prefix(url)
    realm = Realm.of(url)
    services = [first, realm.netloc]
    if realm.scheme != "https":
        services.append(str(realm))
    return list(dict.fromkeys(services))


def service_prefix(service: str, url: str, index: Index | None) -> str:
    """The prefix a keyring entry answered for `service` may be used under: the index root
    (the service was the index URL), the URL asked about (no index), else the realm (the
    service was `host[:port]` or `scheme://host[:port]`)."""
    if index is not None and service == index.url:
        return index.root_url
    if "/" in service.partition("://")[2]:  # a URL with a path: the request URL
        return url_prefix(service)
    return realm_prefix(url)


class KeyringSubprocessSource:
    name = "keyring"
    fast = False

    def __init__(self, command: str = "keyring", timeout: float = 10.0, env: Mapping[str, str] | None = None):
        self.command = command
        self.timeout = timeout
        self._env = dict(env) if env is not None else None
        self._mode_warned = False
        self.warnings: list[str] = []

    def _warn(self, message: str) -> str:
        self.warnings.append(message)
        log.warning("%s", message)
        return message

    def _resolve(self) -> str | None:
        path = self._env.get("PATH", "") if self._env is not None else None
        return shutil.which(self.command, path=path)

    def lookup(self, url: str, username: str | None, index: Index | None) -> Answer:
        exe = self._resolve()
        if exe is None:
            where = "PATH" if self._env is None else "the configured PATH"
            return Answer(self.name, detail=self._warn(f"keyring command {self.command!r} not found on {where}"))
        details: list[str] = []
        for service in keyring_services(url, index):
            creds, detail = self._ask(exe, service, username)
            details.append(detail)
            if creds is not None:
                return Answer(self.name, creds, detail=detail, prefix=service_prefix(service, url, index))
        return Answer(self.name, detail="; ".join(details))

    def _ask(self, exe: str, service: str, username: str | None) -> tuple[Credentials | None, str]:
        argv = [exe, "get", service, username] if username is not None else [exe, "get", service, "--mode", "creds"]
        shown = f"keyring get {service} {username if username is not None else '--mode creds'}"
        try:
            result = run_bounded(argv, env=self._env, timeout=self.timeout)
        except OSError as e:
            return None, self._warn(f"{shown}: cannot run: {e.strerror or type(e).__name__}")
        if result.problem is not None:
            return None, self._warn(f"{shown}: {result.problem} (no credentials)")
        stdout = result.stdout.decode("utf-8", "replace")
        stderr = result.stderr.decode("utf-8", "replace")
        if result.returncode == 127 and stderr.startswith(_CANNOT_RUN):
            return None, self._warn(f"{shown}: cannot run: {stderr[len(_CANNOT_RUN):].strip()}")
        creds: Credentials | None = None
        detail = ""
        if result.returncode != 0:
            detail = f"{shown}: exit {result.returncode}"
            if username is None and "unrecognized arguments: --mode" in stderr and not self._mode_warned:
                self._mode_warned = True
                self._warn(MODE_UNSUPPORTED)
        elif username is not None:
            password = stdout.rstrip()
            creds = Credentials.basic(username, password)
            detail = f"{shown}: found"
            if password == "":
                self._warn(f"{shown}: keyring returned an empty password")
        else:
            lines = stdout.splitlines()
            if len(lines) < 2:
                detail = self._warn(f"{shown}: expected username and password on two lines, got {len(lines)} line(s)")
            else:
                user, password = lines[0].rstrip("\r"), lines[1].rstrip()
                creds = Credentials.basic(user or None, password)
                detail = f"{shown}: found user {shown_name(user)}" if user else f"{shown}: found"
                if password == "":
                    self._warn(f"{shown}: keyring returned an empty password")
        if stderr:
            learnt = [creds.password] if creds is not None else []
            # Whatever keyring printed on stdout may be a secret even when we rejected it.
            learnt += [line.strip() for line in stdout.splitlines() if line.strip()]
            names = [username, creds.username if creds is not None else None]
            echo_stderr(redact_text(stderr, learnt, usernames=names))
        return creds, detail

    def knows_host(self, scheme: str, host: str, port: int) -> bool:
        return False


@dataclass
class BoundedResult:
    returncode: int | None
    stdout: bytes
    stderr: bytes
    problem: str | None = None  # why there is no usable answer: timeout, too much output


def run_bounded(argv: list[str], *, env: Mapping[str, str] | None, timeout: float,
                limit: int = OUTPUT_LIMIT, grace: float = EOF_GRACE) -> BoundedResult:
    """Run `argv` under keyring_reaper.py: at most `limit` bytes kept of stdout and of stderr
    (one byte more kills it), killed after `timeout` seconds, and never waiting more than
    `grace` for the pipes after it has exited. Raises OSError only if the reaper cannot start."""
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", _REAPER, repr(float(timeout)), "--", *argv],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=helper_environment(env),
        cwd=NEUTRAL_DIR,  # not the folder serve started in (process.NEUTRAL_DIR)
        start_new_session=True,  # the reaper leads a group: killpg reaches what it leaves
    )
    started = time.monotonic()
    backstop = started + timeout + 5.0  # the reaper enforces `timeout`; this is if it cannot
    buffers = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    names = {proc.stdout: "stdout", proc.stderr: "stderr"}
    problem: str | None = None
    exited_at: float | None = None
    with selectors.DefaultSelector() as sel:
        for pipe in buffers:
            os.set_blocking(pipe.fileno(), False)
            sel.register(pipe, selectors.EVENT_READ)
        while sel.get_map():
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at >= grace:
                break  # something it left behind holds the pipes: do not wait for it
            if now >= backstop:
                problem = f"no answer within {timeout:g}s, killed"
                break
            wait = 0.05 if exited_at is None else max(0.0, grace - (now - exited_at))
            for key, _ in sel.select(timeout=min(wait, backstop - now)):
                try:
                    chunk = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf = buffers[key.fileobj]
                buf += chunk[:limit + 1 - len(buf)]
                if len(buf) > limit:
                    problem = f"printed more than {limit // 1024} KiB on {names[key.fileobj]}, killed"
                    break
            if problem is not None:
                break
    for pipe in buffers:
        pipe.close()
    if problem is not None:
        _stop(proc)
    else:
        try:
            proc.wait(timeout=max(0.1, backstop - time.monotonic()))
        except subprocess.TimeoutExpired:
            _stop(proc)
            problem = f"no answer within {timeout:g}s, killed"
    _killpg(proc.pid)  # anything still in the reaper's group (non-Linux: the command's own)
    if problem is None and proc.returncode == _TIMED_OUT and time.monotonic() - started >= timeout:
        problem = f"no answer within {timeout:g}s, killed"
    return BoundedResult(proc.returncode, bytes(buffers[proc.stdout]), bytes(buffers[proc.stderr]), problem)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM lets the reaper kill every descendant; SIGKILL the group if it does not exit."""
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        _killpg(proc.pid)
        proc.wait(timeout=5)


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
