"""Runs one credential helper for process.run_bounded and leaves nothing of it running.

    python -I -S reaper.py TIMEOUT -- COMMAND [ARGS...]

Every program credproxy runs for a credential goes through here: `keyring get ...`, an
index's `token-command`, `git credential fill` (and so git's own helpers). The command
inherits this process's stdin (the request, or /dev/null), stdout and stderr (the proxy's
bounded pipes), environment and working directory.

Why a separate process: a helper may leave a grandchild behind (a helper daemon, a
credential agent, git's credential-cache--daemon), even one that calls setsid() and so
leaves the process group that a timeout kills. On Linux this process makes itself a child
subreaper (PR_SET_CHILD_SUBREAPER): anything the command orphans is re-parented here instead of to
init, so it can be found (/proc/PID/task/TID/children) and killed when the command exits,
when TIMEOUT passes, or when the proxy sends SIGTERM (stdout or stderr over its limit).
The proxy itself must not be a subreaper: the setting is process-wide, and every orphan of
every subprocess any thread of the proxy starts would become the proxy's to reap.

Exit status: the command's; 124 after TIMEOUT (as timeout(1)); 128+N when the command died
of signal N; 143 after SIGTERM; 127 when the command cannot be started. Elsewhere than Linux
only the command's process group is killed: a grandchild that called setsid() may survive
(docs/how-it-works.md, "Limits"). Standard library only; it runs with -I -S."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
TIMED_OUT = 124
CANNOT_RUN = "reaper: cannot run: "  # then the reason; exit status 127


class _Terminated(Exception):
    pass


class _TimedOut(Exception):
    pass


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            pass
    return out


def _descendants() -> list[int]:
    seen: list[int] = []
    todo = _children(os.getpid())
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.append(pid)
            todo += _children(pid)
    return seen


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_everything(child: subprocess.Popen) -> None:
    """The command, its process group, and (Linux) everything re-parented to us."""
    for kill in (lambda: os.killpg(child.pid, signal.SIGKILL), lambda: os.kill(child.pid, signal.SIGKILL)):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        pids = _descendants()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.005)  # let the kernel re-parent the killed ones' children to us
        _reap()
    _reap()


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write("usage: reaper.py TIMEOUT -- COMMAND [ARGS...]\n")
        return 2
    timeout = float(argv[1])
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # the proxy died: clean up all the same

    started: list[subprocess.Popen] = []
    pending: list[int] = []

    def terminate(signum, frame):
        if not started:
            # Popen is under way: the command may already run though Popen has not returned
            # it; raising here would leave it running unseen. Kill it once Popen returns.
            pending.append(signum)
            return
        raise _Terminated()

    def alarm(signum, frame):
        raise _TimedOut()

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGALRM, alarm)
    try:
        # its own process group, so killpg never reaches us
        child = subprocess.Popen(argv[3:], process_group=0)
    except OSError as e:
        sys.stderr.write(f"{CANNOT_RUN}{e.strerror or type(e).__name__}\n")
        return 127
    started.append(child)
    if pending:  # SIGTERM came while the command was starting
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        kill_everything(child)
        return 128 + signal.SIGTERM
    try:
        # a blocking wait ended by SIGALRM: Popen.wait(timeout) would poll, adding up to 50 ms
        signal.setitimer(signal.ITIMER_REAL, timeout)
        code = child.wait()
        signal.setitimer(signal.ITIMER_REAL, 0)
    except _TimedOut:
        code = TIMED_OUT
    except _Terminated:
        signal.setitimer(signal.ITIMER_REAL, 0)
        code = 128 + signal.SIGTERM
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    kill_everything(child)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
