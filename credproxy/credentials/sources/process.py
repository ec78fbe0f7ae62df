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
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

#: stdout/stderr bytes a helper may write (a token is a few KiB at most)
OUTPUT_LIMIT = 64 * 1024


@dataclass
class Outcome:
    """`problem` is None when the program exited 0 within its bounds. stdout/stderr are what
    it wrote (up to `limit` bytes each), decoded as UTF-8 with replacement."""

    returncode: int | None
    stdout: str = field(default="", repr=False)
    stderr: str = field(default="", repr=False)
    problem: str | None = None


def run_bounded(argv: Sequence[str], *, env: Mapping[str, str] | None, timeout: float,
                limit: int = OUTPUT_LIMIT, stdin_data: bytes | None = None) -> Outcome:
    shown = os.path.basename(argv[0]) if argv else "?"
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else None,
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
