"""How long a running proxy takes to see a change (a logout, a netrc edit, a new login), and
whether a process it started is gone."""

from __future__ import annotations

import time

import pytest


def until(check, what: str, within: float, patience: float = 15.0, step: float = 0.05) -> float:
    """Call check() until it is true; the seconds from the start to when that successful
    check *began*. A check begun more than `within` seconds after the change fails the test
    (a slow machine may take longer to answer a check, up to `patience`)."""
    start = time.monotonic()
    while True:
        began = time.monotonic() - start
        if check():
            assert began <= within, f"{what}: first seen by a check begun {began:.2f} s after the change"
            return began
        if began > within or time.monotonic() - start > patience:
            pytest.fail(f"not within {within} s: {what}")
        time.sleep(step)


def pid_alive(pid: int) -> bool:
    """Running (a zombie counts as gone: it holds no memory and runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    """The pids still running after up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.02)
    return [p for p in pids if pid_alive(p)]
