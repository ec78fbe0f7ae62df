"""Issue 5 §5: 1,000 requests at 50 concurrency through the proxy to a local upstream.

Mix: pre-emptively authenticated intercepted requests (netrc machine entry), passthrough
tunnels (a host no source knows), and retry-on-challenge (ten configured indexes answered
only by the netrc `default` entry, so each realm's first requests are challenged and
retried). Each request opens its own connection, as a fresh pip process would.

Asserts: 0 failures; the request log has one line per intercepted request and one per
passthrough tunnel; the proxy's RSS after all requests is within 20% of its RSS after the
first 100; the whole run is bounded well under two minutes."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers.proxy_client import get
from tests.helpers.upstream import wait_for

from .observe_setup import SECRET, USER, World

pytestmark = pytest.mark.e2e

TOTAL = 1000
WARMUP = 100
CONCURRENCY = 50
RETRY_HOSTS = tuple(f"r{i}.test" for i in range(10))
NETRC = f"machine pkgs.test login {USER} password {SECRET}\ndefault login {USER} password {SECRET}\n"
CONFIG = "".join(
    f'\n[[index]]\nname = "r{i}"\nurl = "https://{host}:{{port}}/private/simple/"\n'
    for i, host in enumerate(RETRY_HOSTS)
)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def plan(n: int) -> tuple[str, str, str]:
    """(kind, host, path) for request n: 5 of 10 intercepted, 3 passthrough, 2 challenge."""
    slot = n % 10
    if slot < 5:
        return ("intercepted", "pkgs.test", f"/private/simple/p{n}/")
    if slot < 8:
        return ("passthrough", "other.test", f"/public/{n}")
    host = RETRY_HOSTS[(n // 10) % len(RETRY_HOSTS)]
    return ("challenge", host, f"/private/simple/c{n}/")


def test_thousand_requests_at_fifty_concurrency(tmp_path):
    names = ("pkgs.test", "other.test", *RETRY_HOSTS)
    with World(tmp_path, netrc=NETRC, config_extra=CONFIG, names=names) as world:
        proxy = world.start("--log-format", "json")
        context = world.context

        def one(n: int) -> tuple[str, int | str]:
            kind, host, path = plan(n)
            try:
                reply = get(proxy, world.url(host, path), context, timeout=30)
            except Exception as e:  # counted, reported below
                return kind, f"{type(e).__name__}: {e}"
            return kind, reply.status

        started = time.monotonic()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            first = list(pool.map(one, range(WARMUP)))
            rss_first = rss_kib(proxy.pid)
            rest = list(pool.map(one, range(WARMUP, TOTAL)))
        elapsed = time.monotonic() - started
        time.sleep(0.5)  # let the last connections close
        rss_after = rss_kib(proxy.pid)
        results = first + rest
        # tunnel lines are written when the client disconnects: wait for all of them
        wait_for(lambda: len(_records(proxy.stderr())) >= TOTAL, timeout=20)
        stderr = world.stop()

    failures = [(n, r) for n, r in enumerate(results) if r[1] != 200]
    assert failures == [], f"{len(failures)} failures, e.g. {failures[:5]}"
    assert elapsed < 100, f"{TOTAL} requests took {elapsed:.1f}s"
    growth = (rss_after - rss_first) / rss_first
    assert abs(growth) <= 0.20, f"RSS {rss_first} KiB after {WARMUP}, {rss_after} KiB after {TOTAL}"

    records = _records(stderr)
    requests = [r for r in records if "tunnel" not in r]
    tunnels = [r for r in records if r.get("tunnel") == "passthrough"]
    kinds = [plan(n)[0] for n in range(TOTAL)]
    assert len(requests) == kinds.count("intercepted") + kinds.count("challenge")
    assert len(tunnels) == kinds.count("passthrough")
    assert all(r["status"] == 200 for r in requests)
    assert {r["source"] for r in requests if "pkgs.test" in r["url"]} == {"netrc"}
    retried = [r for r in requests if r["auth"] == "retry"]
    assert len(retried) >= len(RETRY_HOSTS), "each challenged realm was retried at least once"
    print(f"\n{TOTAL} requests in {elapsed:.1f}s; RSS {rss_first} -> {rss_after} KiB; {len(retried)} retries")


def _records(stderr: str) -> list[dict]:
    records = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records
