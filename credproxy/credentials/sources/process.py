"""The one runner for every program credproxy runs: the `keyring` command, an index's
token-command, `git credential fill` (and certs/system.py's macOS `security` tool).

The program gets no terminal and no stdin unless given one (`stdin_data`), runs in a neutral
directory with helper_environment(), under reaper.py (which kills everything it leaves
behind: on Linux every descendant, even one that called setsid(); elsewhere its process
group), and is killed when it overruns `timeout` seconds or writes more than `limit` bytes
on stdout or stderr. Once it has exited, its pipes are waited for at most EOF_GRACE: a child
it left holding them cannot delay the answer it already printed. Nothing here raises for
the program's misbehaviour: the result says what happened, in words that never quote its
output.

The programs running at any moment are known: when the last proxy of the process stops
(`serving`), the ones still running are stopped, rather than the exit waiting out a hanging
helper's `timeout`; their result says so (Outcome.stopped) and a source asks nothing more."""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence
from urllib.parse import unquote, urlsplit

from ...logsafe import escape_controls

log = logging.getLogger(__name__)

#: stdout/stderr bytes a helper may write (a token is a few KiB at most)
OUTPUT_LIMIT = 64 * 1024
#: seconds the pipes are waited for once the program has exited
EOF_GRACE = 0.2

_REAPER = str(Path(__file__).with_name("reaper.py"))  # run with -I -S, never imported
_TIMED_OUT = 124  # reaper.TIMED_OUT
_CANNOT_START = 127  # reaper's exit status when the program cannot be started, then:
_CANNOT_RUN = b"reaper: cannot run: "  # reaper.CANNOT_RUN

_running: set[subprocess.Popen] = set()  # the reapers of the programs under way
_stopped: set[subprocess.Popen] = set()  # those of them stop_all stopped
_running_lock = threading.Lock()
_serving = 0  # proxies running in this process (serving())
#: Outcome.problem of a program stopped because the proxy stopped
STOPPED = "stopped: the proxy is stopping"

#: where credential helpers run: not the directory `serve` started in, which may be someone
#: else's project (docs/security.md). There, git would read the repository's `.git/config`
#: (`credential.helper = !program`), and `python -m module` would import the folder's
#: `module.py` first: a program of the folder's author, run with the user's rights.
NEUTRAL_DIR = os.path.abspath(os.sep)

#: the proxy's own admission secret (proxy/token.py ENV_VAR): no helper needs it
_PROXY_SECRET_VARS = ("CREDPROXY_PROXYAUTH",)
#: what `credproxy env` sets (proxy/envvars.py PROXY_VARS, ACTIVE, PREVIOUS_PREFIX), repeated
#: here because credentials/ does not import the proxy package
_ENV_SET_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")
_PROXY_VARS = _ENV_SET_VARS + ("ALL_PROXY", "all_proxy")
_ENV_ACTIVE = "CREDPROXY_ENV_ACTIVE"
_PREVIOUS_PREFIX = "CREDPROXY_PREVIOUS_"
_TOKEN_USER = "credproxy"  # the user name of the per-user token pair (proxy/token.py)


def helper_environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """The environment a credential helper runs with: the proxy's (`env`, else os.environ)
    without the proxy's own token. `serve` started in a shell where `eval "$(credproxy env)"`
    ran (or with CREDPROXY_PROXYAUTH) holds the token that admits clients; a helper (a keyring
    plugin, the aws CLI, git's helpers) has no use for it, and a helper sent through credproxy
    itself could wait on the lookup that is waiting for it. So CREDPROXY_PROXYAUTH is removed
    and a proxy variable that carries the token (or that `credproxy env` set) goes back to the
    value `credproxy env` replaced (CREDPROXY_PREVIOUS_<VAR>), or is removed."""
    result = dict(os.environ if env is None else env)
    pair = result.get("CREDPROXY_PROXYAUTH", "")
    for name in _PROXY_SECRET_VARS:
        result.pop(name, None)
    set_by_env = result.get(_ENV_ACTIVE) == "1"
    for name in _PROXY_VARS:
        value = result.get(name)
        if value is None or not ((set_by_env and name in _ENV_SET_VARS) or _carries_proxy_token(value, pair)):
            continue
        previous = result.get(_PREVIOUS_PREFIX + name)
        if previous and not _carries_proxy_token(previous, pair):
            result[name] = previous
        else:
            del result[name]
    return result


def _carries_proxy_token(value: str, pair: str) -> bool:
    """A proxy URL whose userinfo is credproxy's token pair (`credproxy:TOKEN`, or the
    --proxyauth/CREDPROXY_PROXYAUTH pair)."""
    try:
        parts = urlsplit(value if "://" in value else f"http://{value}")
        user, password = parts.username, parts.password
    except ValueError:
        return False
    if user is None or password is None:
        return False
    user, password = unquote(user), unquote(password)
    return user == _TOKEN_USER or (bool(pair) and f"{user}:{password}" == pair)


def echo_stderr(text: str) -> None:
    """Pass a helper's stderr (already redacted) on to ours with control characters escaped:
    it can quote what a server said, and a terminal escape sequence (`\x1b]...`, a carriage
    return that overwrites the line) must not reach the user's terminal raw (logsafe.py)."""
    if not text:
        return
    sys.stderr.write(escape_controls(text, keep="\n"))
    if not text.endswith("\n"):
        sys.stderr.write("\n")
    sys.stderr.flush()


@dataclass
class Outcome:
    """What a helper did. `stdout`/`stderr` are the bytes it wrote (up to the limit each);
    `problem` says why there is no usable answer: it was killed (timeout, too much output),
    could not be started, or exited non-zero ("exit N"); None when it exited 0 in bounds."""

    returncode: int | None
    stdout: bytes = field(default=b"", repr=False)
    stderr: bytes = field(default=b"", repr=False)
    problem: str | None = None

    @property
    def exited(self) -> bool:
        """It ran to an exit of its own within its bounds (any status): not killed, not unstartable."""
        return self.returncode is not None and (self.problem is None or self.problem == f"exit {self.returncode}")

    @property
    def stopped(self) -> bool:
        """Stopped because the proxy stopped: ask nothing more."""
        return self.problem == STOPPED

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


def run_bounded(argv: Sequence[str], *, env: Mapping[str, str] | None, timeout: float,
                limit: int = OUTPUT_LIMIT, stdin_data: bytes | None = None, cwd: str = NEUTRAL_DIR,
                grace: float = EOF_GRACE) -> Outcome:
    """Run `argv` under reaper.py with helper_environment(env) in `cwd`: at most `limit`
    bytes kept of stdout and of stderr (one byte more kills it), killed after `timeout`
    seconds, `stdin_data` (else nothing) on its stdin, and never waiting more than `grace`
    for the pipes once it has exited (a child it left behind may hold them). Never raises
    for the program's misbehaviour."""
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", _REAPER, repr(float(timeout)), "--", *argv],
            stdin=subprocess.PIPE if stdin_data else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=helper_environment(env), cwd=cwd,
            start_new_session=True,  # no terminal; the reaper leads a group: killpg reaches what it leaves
        )
    except OSError as e:
        return Outcome(None, problem=f"cannot run: {e.strerror or type(e).__name__}")
    with _running_lock:
        _running.add(proc)
    try:
        outcome = _collect(proc, timeout, limit, stdin_data, grace)
    finally:
        with _running_lock:
            _running.discard(proc)
            stopped = proc in _stopped
            _stopped.discard(proc)
    if stopped:
        return Outcome(outcome.returncode, outcome.stdout, outcome.stderr, STOPPED)
    return outcome


@contextmanager
def serving() -> Iterator[None]:
    """A proxy runs inside: when the last proxy of this process leaves, the programs still
    running are stopped (stop_all)."""
    global _serving
    with _running_lock:
        _serving += 1
    try:
        yield
    finally:
        with _running_lock:
            _serving -= 1
            last = _serving == 0
        if last:
            stop_all()


def stop_all() -> int:
    """Stop every program under way: SIGTERM to each reaper, which kills everything its
    program started; each lookup waiting on one ends at once, its Outcome `stopped`.
    Returns how many were running."""
    with _running_lock:
        procs = list(_running)
        _stopped.update(procs)
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except (ProcessLookupError, OSError):
            pass
    if procs:
        log.info("stopped %d credential helper program(s) still running", len(procs))
    return len(procs)


def _collect(proc: subprocess.Popen, timeout: float, limit: int, stdin_data: bytes | None,
             grace: float) -> Outcome:
    """run_bounded's reading and waiting, for a started reaper."""
    started = time.monotonic()
    backstop = started + timeout + 5.0  # the reaper enforces `timeout`; this is if it cannot
    buffers = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    names = {proc.stdout: "stdout", proc.stderr: "stderr"}
    pending = memoryview(stdin_data or b"")
    problem: str | None = None
    exited_at: float | None = None
    with selectors.DefaultSelector() as sel:
        for pipe in (*buffers, proc.stdin):
            if pipe is not None:
                os.set_blocking(pipe.fileno(), False)
                sel.register(pipe, selectors.EVENT_WRITE if pipe is proc.stdin else selectors.EVENT_READ)
        while problem is None and any(key.fileobj is not proc.stdin for key in sel.get_map().values()):
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
                if key.fileobj is proc.stdin:
                    try:
                        pending = pending[os.write(key.fd, pending):]
                    except BlockingIOError:
                        continue
                    except OSError:
                        pending = pending[:0]  # it does not read: its exit status tells
                    if not pending:
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
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
                    del buf[limit:]
                    problem = f"printed more than {_size(limit)} on {names[key.fileobj]}, killed"
                    break
    for pipe in (*buffers, proc.stdin):
        if pipe is not None:
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
    stdout, stderr, code = bytes(buffers[proc.stdout]), bytes(buffers[proc.stderr]), proc.returncode
    if problem is None and code == _TIMED_OUT and time.monotonic() - started >= timeout:
        problem = f"no answer within {timeout:g}s, killed"
    elif problem is None and code == _CANNOT_START and stderr.startswith(_CANNOT_RUN):
        problem, stderr = f"cannot run: {stderr[len(_CANNOT_RUN):].decode('utf-8', 'replace').strip()}", b""
    elif problem is None and code != 0:
        problem = f"exit {code}"
    return Outcome(code, stdout, stderr, problem)


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and not n % (1 << 20) else f"{n // 1024} KiB"


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
