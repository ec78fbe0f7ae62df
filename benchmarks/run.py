"""credproxy benchmarks: the same work direct, through credproxy passing the host through,
and through credproxy intercepting it (credential injected). One process tree: this script
starts every server and the proxy itself, on 127.0.0.1 only, runs the variants interleaved
(A B C, A B C, ...) so drift hits all of them alike, reports medians and ratios, and stops
everything it started by pid.

    python benchmarks/run.py                 # default counts, a few minutes
    python benchmarks/run.py --quick         # tiny counts: a smoke check, seconds
    python benchmarks/run.py --json out.json # also write the raw numbers

Columns: direct (no proxy); passthrough (credproxy relays the TLS untouched); intercepted
(credproxy decrypts, injects a credential); mitmdump (bare mitmproxy intercepting, none of
our addons: the floor for interception).

Rows:
  small requests   GET of a ~150-byte JSON body on one keep-alive connection
  new connection   CONNECT (or TCP) + TLS handshake + one GET, per request
  50 MB download   one body streamed on a keep-alive connection
  pip install      2 packages from a private pypiserver (credentials: in the URL direct,
                   from credproxy via netrc when proxied); fresh target, no cache
  uv pip install   the same with uv (--no-cache)
  proxy start-up   `credproxy serve --port 0` until it prints its listening line
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.clients import client_env, combined_bundle, pip_install, uv_pip_install  # noqa: E402
from tests.helpers.proxy import proxy_env, start_credproxy  # noqa: E402
from tests.helpers.servers import PrivateIndex, free_port, make_certs, stop_pid, wait_for_port  # noqa: E402
from tests.helpers.wheels import make_wheel  # noqa: E402

INTERCEPTED = "other.test"  # the proxy has a netrc machine entry for it: decrypted, injected
PASSED = "mirror.test"  # nothing names it: relayed as raw TLS
INDEX_USER, INDEX_PASSWORD = "alice", "bench-s3cret"
BIG = 50 * 1024 * 1024

COUNTS = {  # rounds x requests per round (each round runs every variant once)
    "default": {"rounds": 7, "small": 500, "conn": 50, "big_rounds": 5, "client_rounds": 7, "startup": 5},
    "quick": {"rounds": 2, "small": 20, "conn": 5, "big_rounds": 1, "client_rounds": 1, "startup": 1},
}


# --- the echo server, in its own process (its GIL is not the client's) -------------------------

ECHO_MAIN = """
import ssl, sys, time
sys.path.insert(0, sys.argv[1])
from tests.helpers.servers import EchoServer

class Certs:  # EchoServer needs only server_context()
    def server_context(self, **_):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        return ctx

server = EchoServer.start(Certs(), host="other.test")
print(server.port, flush=True)
sys.stdin.read()  # until the parent closes our stdin (or dies)
"""


def start_mitmdump(confdir: Path, upstream_ca: Path) -> tuple[subprocess.Popen, int]:
    """Bare mitmdump (mitmproxy's default addons, none of ours), same CA: the reference for
    what interception costs before credproxy does anything."""
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mitmdump"), "-q", "--listen-host", "127.0.0.1",
                             "-p", str(port), "--set", f"confdir={confdir}",
                             "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return proc, port


def start_echo(certs) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", ECHO_MAIN, str(ROOT), str(certs.server_cert_pem),
                             str(certs.server_key_pem)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    wait_for_port(port)
    return proc, port


# --- measuring ------------------------------------------------------------------------------


class Target:
    """Where a client connects: direct to 127.0.0.1, or through the proxy to a host name."""

    def __init__(self, name: str, host: str, port: int, proxy_port: int | None, context: ssl.SSLContext,
                 proxy_headers: dict[str, str] | None = None):
        self.name, self.host, self.port, self.proxy_port, self.context = name, host, port, proxy_port, context
        self.proxy_headers = proxy_headers or {}  # credproxy's Proxy-Authorization (its owner's token)

    def connect(self) -> http.client.HTTPSConnection:
        if self.proxy_port is None:
            conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=60)
        else:
            conn = http.client.HTTPSConnection("127.0.0.1", self.proxy_port, context=self.context, timeout=60)
            conn.set_tunnel(self.host, self.port, headers=self.proxy_headers)
        conn.connect()
        return conn


def get(conn: http.client.HTTPSConnection, path: str, chunk: int = 1 << 20) -> int:
    conn.request("GET", path)
    response = conn.getresponse()
    n = 0
    while True:
        data = response.read(chunk)
        if not data:
            break
        n += len(data)
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status}")
    return n


def small_requests(target: Target, n: int) -> float:
    """Requests per second on one keep-alive connection."""
    conn = target.connect()
    get(conn, "/warm-up")
    start = time.perf_counter()
    for _ in range(n):
        get(conn, "/simple/")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def new_connections(target: Target, n: int) -> float:
    """Connections (each: handshake + one GET) per second."""
    start = time.perf_counter()
    for _ in range(n):
        conn = target.connect()
        get(conn, "/simple/")
        conn.close()
    return n / (time.perf_counter() - start)


def big_download(target: Target) -> float:
    """MB/s for one 50 MB body."""
    conn = target.connect()
    start = time.perf_counter()
    got = get(conn, f"/big/{BIG}")
    elapsed = time.perf_counter() - start
    conn.close()
    if got != BIG:
        raise RuntimeError(f"downloaded {got} of {BIG} bytes")
    return BIG / elapsed / 1e6


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --- reporting ------------------------------------------------------------------------------


class Results:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, what: str, unit: str, higher_is_better: bool, samples: dict[str, list[float]]) -> None:
        self.rows.append({"what": what, "unit": unit, "higher_is_better": higher_is_better,
                          "samples": samples, "median": {k: statistics.median(v) for k, v in samples.items()}})
        self.print_row(self.rows[-1])

    @staticmethod
    def ratio(row: dict, variant: str) -> float:
        """How many times slower than direct (1.00 = same; 2.00 = half the speed)."""
        base, value = row["median"]["direct"], row["median"][variant]
        return base / value if row["higher_is_better"] else value / base

    @staticmethod
    def cell(row: dict, variant: str) -> str:
        if variant not in row["median"]:
            return "-"
        s = row["samples"][variant]
        d = 2 if row["unit"] == "s" else 1
        return f"{row['median'][variant]:.{d}f} [{min(s):.{d}f}-{max(s):.{d}f}]"

    VARIANTS = ("direct", "passthrough", "intercepted", "mitmdump")

    def print_row(self, row: dict) -> None:
        cells = [self.cell(row, v) for v in self.VARIANTS]
        ratios = [f"{self.ratio(row, v):.2f}x" if v in row["median"] else "-" for v in self.VARIANTS[1:]]
        print(f"{row['what']:<22}{row['unit']:<7}" + "".join(f"{c:<23}" for c in cells)
              + "".join(f"{r:<10}" for r in ratios), flush=True)

    def header(self) -> None:
        print(f"{'':<22}{'unit':<7}" + "".join(f"{v:<23}" for v in self.VARIANTS)
              + "".join(f"{v + '/dir':<10}" for v in ("pass", "icpt", "mitm")))


# --- the run --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny counts (a smoke check)")
    parser.add_argument("--rounds", type=int, help="rounds of the interleaved variants")
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    parser.add_argument("--no-clients", action="store_true", help="skip the pip/uv rows")
    args = parser.parse_args()
    counts = dict(COUNTS["quick" if args.quick else "default"])
    if args.rounds:
        counts["rounds"] = counts["client_rounds"] = args.rounds

    tmp = Path(tempfile.mkdtemp(prefix="credproxy-bench-"))
    started: list = []
    try:
        return run(tmp, counts, args, started)
    finally:
        for thing in reversed(started):
            if isinstance(thing, subprocess.Popen):
                if thing.stdin:
                    thing.stdin.close()
                stop_pid(thing)
            else:
                thing.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, counts: dict, args, started: list) -> int:
    import mitmproxy.version

    print(f"credproxy benchmarks: python {platform.python_version()}, mitmproxy {mitmproxy.version.VERSION}, "
          f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print("cells: median [min-max] over rounds; ratios: times slower than direct (1.00x = same)\n")

    certs = make_certs(tmp / "certs")
    echo, echo_port = start_echo(certs)
    started.append(echo)
    wheels = [make_wheel(tmp / "wheels", "private-pkg", "1.0", requires=["private-dep"]),
              make_wheel(tmp / "wheels", "private-dep", "1.0")]
    index = PrivateIndex.start(tmp / "index", certs, username=INDEX_USER, password=INDEX_PASSWORD, wheels=wheels)
    started.append(index)

    penv = proxy_env(tmp, upstream_ca=certs.ca_plus_certifi_pem)
    netrc = Path(penv["HOME"]) / ".netrc"
    netrc.write_text(f"machine {INTERCEPTED} login bob password bench-echo-pw\n"
                     f"machine pkgs.test login {INDEX_USER} password {INDEX_PASSWORD}\n")
    netrc.chmod(0o600)
    proxy = start_credproxy(tmp, env=penv)
    started.append(proxy)

    mitmdump, mitmdump_port = start_mitmdump(proxy.ca_dir, certs.ca_pem)
    started.append(mitmdump)

    bundle = combined_bundle(tmp / "client-bundle.pem", proxy.ca_cert, certs.ca_pem)
    context = ssl.create_default_context(cafile=str(bundle))
    targets = [Target("direct", "127.0.0.1", echo_port, None, context),
               Target("passthrough", PASSED, echo_port, proxy.port, context, proxy.auth_headers()),
               Target("intercepted", INTERCEPTED, echo_port, proxy.port, context, proxy.auth_headers()),
               Target("mitmdump", "127.0.0.1", echo_port, mitmdump_port, context)]

    results = Results()
    results.header()
    rows = [("small requests", "req/s", lambda t: small_requests(t, counts["small"]), counts["rounds"]),
            ("new connection + GET", "conn/s", lambda t: new_connections(t, counts["conn"]), counts["rounds"]),
            ("50 MB download", "MB/s", big_download, counts["big_rounds"])]
    for what, unit, fn, rounds in rows:
        samples: dict[str, list[float]] = {t.name: [] for t in targets}
        for _ in range(rounds):
            for t in targets:
                samples[t.name].append(fn(t))
        results.add(what, unit, True, samples)

    if not args.no_clients:
        client_rows(tmp, counts, index, proxy, bundle, certs, results)

    startup = []
    for i in range(counts["startup"]):
        def start_and_stop():
            p = start_credproxy(tmp, env=penv, name=f"startup{i}", data_dir=proxy.data_dir)  # CA exists
            p.stop()
        startup.append(timed(start_and_stop))
    results.rows.append({"what": "proxy start-up", "unit": "s", "median": {"credproxy": statistics.median(startup)},
                         "samples": {"credproxy": startup}})
    print(f"{'proxy start-up':<22}{'s':<7}{statistics.median(startup):.2f} [{min(startup):.2f}-{max(startup):.2f}] "
          "(`credproxy serve --port 0` to its listening line, and stop)")

    peak_mb = proxy.rss_peak_kb() / 1024
    print(f"{'proxy peak RSS':<22}{'MB':<7}{peak_mb:.0f} (VmHWM of the proxy after every row above)")
    failures = [r for r in index.requests() if r.status >= 500]
    if failures:
        print(f"warning: the index answered {len(failures)} requests with 5xx", file=sys.stderr)

    if args.json:
        args.json.write_text(json.dumps({"python": platform.python_version(),
                                         "mitmproxy": mitmproxy.version.VERSION,
                                         "cpus": os.cpu_count(), "argv": sys.argv, "rows": results.rows,
                                         "proxy_peak_rss_mb": peak_mb}, indent=2))
    return 0


def client_rows(tmp: Path, counts: dict, index, proxy, bundle: Path, certs, results: Results) -> None:
    """pip and uv installing 2 packages: direct (credentials in the URL) vs through credproxy
    (no credentials of their own; the proxy injects them from netrc)."""
    direct_env = client_env(tmp / "direct", ca_bundle=certs.ca_pem)
    proxied_env = client_env(tmp / "proxied", proxy_url=proxy.url, ca_bundle=bundle)
    direct_url = index.creds_url("127.0.0.1")
    proxied_url = index.url  # https://pkgs.test:PORT/simple/, no credentials
    n = 0

    def install(tool: str, url: str, env: dict) -> float:
        nonlocal n
        n += 1
        target = tmp / f"target-{n}"
        if tool == "pip":
            fn = lambda: pip_install(target, "--no-cache-dir", "--index-url", url, "private-pkg", env=env)  # noqa: E731
        else:
            fn = lambda: uv_pip_install(target, "--no-cache", "--index-url", url, "private-pkg", env=env)  # noqa: E731
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}):\n{result.stderr[-2000:]}")
        shutil.rmtree(target, ignore_errors=True)
        return elapsed

    for tool in ("pip", "uv"):
        install(tool, direct_url, direct_env)  # warm-up: imports, the proxy's first handshake
        install(tool, proxied_url, proxied_env)
        samples: dict[str, list[float]] = {"direct": [], "intercepted": []}
        for _ in range(counts["client_rounds"]):
            samples["direct"].append(install(tool, direct_url, direct_env))
            samples["intercepted"].append(install(tool, proxied_url, proxied_env))
        results.add(f"{tool} install (2 pkgs)", "s", False, samples)


if __name__ == "__main__":
    sys.exit(main())
