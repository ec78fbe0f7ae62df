"""How long a running proxy takes to see a change (a logout, a netrc edit, a new login),
whether a process it started is gone, and how long requests wait while a big file changes."""

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


# --- a stalled event loop, seen from a client ---------------------------------------------------


def big_netrc(machines: int = 20_000, *, seed: int = 0) -> str:
    """A generated netrc, as people keep them (about 160 bytes a machine: 20,000 is about
    3 MB). `seed` changes every password (a rewrite with other content)."""
    return "".join(f"machine host{i}.generated.example\n  login user{i}\n  password pw{seed}-{i:08d}-{'x' * 80}\n"
                   for i in range(machines))


def replace_file(path, text: str, mode: int = 0o600) -> None:
    """Write `text` to a temporary file and rename it over `path`: a reader never sees half
    of it (as editors and credential tools save)."""
    import os
    from pathlib import Path

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def netrc_parse_seconds(path, repeat: int = 2) -> float:
    """How long parsing the netrc file at `path` takes in this process (the least of `repeat`
    tries), with the parser credproxy's netrc source uses (the standard library's): the unit
    for bounds on how long a request may wait."""
    import netrc

    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        netrc.netrc(path)
        best = min(best, time.perf_counter() - start)
    return best


class LatencyStream:
    """GETs to `url` through `proxy` (a tests.helpers.proxy.Proxy) on one keep-alive
    connection, one after another in a thread, each timed, until `stop()`. A request that
    fails (or answers other than `expect`) is counted in `errors` and the connection opened
    again. `samples`: (monotonic start, seconds) of each successful request."""

    def __init__(self, proxy, url: str, context, *, expect: int = 200, pause: float = 0.005,
                 timeout: float = 30.0):
        import threading

        self.proxy, self.url, self.context = proxy, url, context
        self.expect, self.pause, self.timeout = expect, pause, timeout
        self.samples: list[tuple[float, float]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"latency {url}", daemon=True)

    def start(self) -> "LatencyStream":
        self._thread.start()
        return self

    def stop(self) -> "LatencyStream":
        self._stop.set()
        self._thread.join(self.timeout + 5)
        assert not self._thread.is_alive(), f"the request stream to {self.url} did not stop"
        return self

    def _run(self) -> None:
        import http.client

        from tests.helpers.proxy_client import open_connection

        conn = None
        while not self._stop.is_set():
            if conn is None:
                conn, target, headers = open_connection(self.proxy, self.url, self.context, self.timeout)
            began = time.monotonic()
            try:
                conn.request("GET", target, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as e:
                self.errors.append(type(e).__name__)
                conn.close()
                conn = None
                continue
            if status == self.expect:
                self.samples.append((began, time.monotonic() - began))
            else:
                self.errors.append(f"status {status}")
            self._stop.wait(self.pause)
        if conn is not None:
            conn.close()

    def worst(self) -> float:
        return max(seconds for _, seconds in self.samples)

    def p99(self) -> float:
        ordered = sorted(seconds for _, seconds in self.samples)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
