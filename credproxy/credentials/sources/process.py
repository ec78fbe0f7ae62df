"""Running a credential helper (token command, `git credential fill`) with bounds.

The program gets no terminal and no stdin unless given one (`stdin_data`), runs in its own
process group, and is killed with that whole group when it overruns `timeout` seconds or
writes more than `limit` bytes on stdout or stderr. Nothing here raises for the program's
misbehaviour: the result says what happened, in words that never quote its output."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence
from urllib.parse import unquote, urlsplit

from ...logsafe import escape_controls

#: stdout/stderr bytes a helper may write (a token is a few KiB at most)
OUTPUT_LIMIT = 64 * 1024

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
    """`problem` is None when the program exited 0 within its bounds. stdout/stderr are what
    it wrote (up to `limit` bytes each), decoded as UTF-8 with replacement."""

    returncode: int | None
    stdout: str = field(default="", repr=False)
    stderr: str = field(default="", repr=False)
    problem: str | None = None


def run_bounded(argv: Sequence[str], *, env: Mapping[str, str] | None, timeout: float,
                limit: int = OUTPUT_LIMIT, stdin_data: bytes | None = None, cwd: str = NEUTRAL_DIR) -> Outcome:
    shown = os.path.basename(argv[0]) if argv else "?"
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=helper_environment(env),
            cwd=cwd,
            start_new_session=True,  # no controlling terminal; a timeout kills the whole group
        )
    except OSError as e:
        return Outcome(None, problem=f"cannot run {shown}: {e.strerror or type(e).__name__}")
    if stdin_data is not None:
        try:
            proc.stdin.write(stdin_data)
        except OSError:
            pass  # the program did not read it; its exit status tells
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    sizes = dict.fromkeys(chunks, 0)
    deadline = time.monotonic() + timeout
    problem = None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        while sel.get_map() and problem is None:
            left = deadline - time.monotonic()
            if left <= 0:
                problem = f"{shown}: no answer within {timeout:g}s, killed"
                break
            for key, _ in sel.select(left):
                data = os.read(key.fd, 16384)
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                sizes[key.fd] += len(data)
                if sizes[key.fd] > limit:
                    problem = f"{shown}: wrote more than {limit // 1024} KiB, killed"
                    break
                chunks[key.fd].append(data)
    if problem is None:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            problem = f"{shown}: no answer within {timeout:g}s, killed"
    if problem is not None:
        _kill_group(proc)
    proc.stdout.close()
    proc.stderr.close()
    out = b"".join(chunks[out_fd]).decode("utf-8", "replace")
    err = b"".join(chunks[err_fd]).decode("utf-8", "replace")
    if problem is None and proc.returncode != 0:
        problem = f"{shown}: exit {proc.returncode}"
    return Outcome(proc.returncode, out, err, problem)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
