"""How long requests wait while a big credential file is rewritten under a running proxy:
this checkout against another commit, alternating proxy by proxy so load hits both alike.

    .venv/bin/python benchmarks/reload_stall.py --base main [--rounds 2] [--rewrites 5]
    .venv/bin/python benchmarks/reload_stall.py --base HEAD --quick   # a smoke check, seconds

Each run starts a real `credproxy serve` (the other commit's from a temporary git worktree,
in this venv; this checkout's as installed) with a generated netrc of --machines entries (20,000
is about 3 MB: people keep generated netrc files with thousands of machines) and an HTTPS echo
server on 127.0.0.1 in its own process. Two clients send GETs one after another, each on one
keep-alive connection, to hosts that are NOT in the big netrc:

- relayed: mirror.test, which nothing names: its TLS is relayed untouched, so only the event
  loop serves it;
- stored: pkgs.test, with a credential in the store (`credproxy auth login`, after the netrc
  in the chain): intercepted, the credential injected from the session cache, and the fast
  sources (the netrc among them) asked again on every request.

Once both flow, the netrc is replaced (a new file renamed over it, other passwords) every
--interval seconds, --rewrites times; the proxy's watcher reloads each time. Reported per
commit and stream: the worst and the 99th-percentile request latency over all runs of it, the
median, the request count, and the ratio base/this (above 1: this checkout waits less).
Everything started is stopped by pid; the worktree is removed at the end."""

from __future__ import annotations

import argparse
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.cli_startup import _PRE  # noqa: E402
from benchmarks.run import start_echo  # noqa: E402
from tests.helpers.clients import combined_bundle  # noqa: E402
from tests.helpers.proxy import credproxy_cmd, proxy_env, start_credproxy  # noqa: E402
from tests.helpers.servers import make_certs, stop_pid  # noqa: E402
from tests.helpers.timing import LatencyStream, big_netrc, netrc_parse_seconds, replace_file  # noqa: E402

SERVE = _PRE + "sys.argv = ['credproxy', 'serve', *sys.argv[1:]]; from credproxy.cli import main; main()"
RELAYED, STORED = "mirror.test", "pkgs.test"
STORE_PASSWORD = "bench-store-pw"


def one_run(tmp: Path, name: str, command: list[str] | None, env: dict, certs, echo_port: int,
            netrc: Path, rewrites: list[str], interval: float) -> dict[str, list[float]]:
    """Start a proxy, stream, rewrite, stop: the latencies (seconds) of each stream."""
    replace_file(netrc, rewrites[-1])  # every run starts from the same file
    proxy = start_credproxy(tmp, "-v", env=env, name=name, command=command, timeout=120)
    try:
        bundle = combined_bundle(tmp / f"{name}-bundle.pem", proxy.ca_cert, certs.ca_pem)
        context = ssl.create_default_context(cafile=str(bundle))
        streams = {what: LatencyStream(proxy, f"https://{host}:{echo_port}/{what}", context)
                   for what, host in (("relayed", RELAYED), ("stored", STORED))}
        for stream in streams.values():
            stream.start()
        try:
            time.sleep(1.0)
            for text in rewrites:
                replace_file(netrc, text)
                time.sleep(interval)
        finally:
            for stream in streams.values():
                stream.stop()
        reloads = proxy.stderr().count("reloaded settings and credentials")
        assert reloads >= 1, f"{name}: the proxy never reloaded:\n{proxy.stderr()[-2000:]}"
        for what, stream in streams.items():
            assert stream.samples, f"{name}: no {what} request succeeded: {stream.errors[:5]}"
        return {what: [seconds for _, seconds in stream.samples] for what, stream in streams.items()}
    finally:
        proxy.stop()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the commit to compare with")
    ap.add_argument("--rounds", type=int, default=2, help="proxy runs per commit, alternating")
    ap.add_argument("--rewrites", type=int, default=5, help="netrc rewrites per run")
    ap.add_argument("--interval", type=float, default=2.0, help="seconds between two rewrites")
    ap.add_argument("--machines", type=int, default=20_000, help="entries in the generated netrc")
    ap.add_argument("--quick", action="store_true", help="1 round, 2 rewrites, 2,000 machines")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.rewrites, args.machines, args.interval = 1, 2, 2_000, 1.0
    print(f"reload stall: python {platform.python_version()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    started: list = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base = tmp / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--quiet", "--detach", str(base), args.base],
                       check=True, timeout=120)
        try:
            certs = make_certs(tmp / "certs")
            echo, echo_port = start_echo(certs)
            started.append(echo)
            env = proxy_env(tmp, upstream_ca=certs.ca_plus_certifi_pem)
            login = subprocess.run(credproxy_cmd("auth", "login", f"https://{STORED}:{echo_port}/", "-u", "bench",
                                                 "--password", "-"), env=env, input=STORE_PASSWORD + "\n",
                                   capture_output=True, text=True, timeout=60)
            assert login.returncode == 0, login.stderr
            netrc = Path(env["HOME"]) / ".netrc"
            rewrites = [big_netrc(args.machines, seed=seed) for seed in range(1, args.rewrites + 1)]
            replace_file(netrc, rewrites[0])
            parse = netrc_parse_seconds(netrc)
            print(f"netrc: {args.machines} machines, {netrc.stat().st_size / 1e6:.1f} MB, parsed in {parse:.2f} s "
                  f"(this process); {args.rewrites} rewrites every {args.interval:g} s per run, "
                  f"{args.rounds} run(s) per commit\n")
            variants = {args.base: [sys.executable, "-c", SERVE, str(base)], "this checkout": None}
            samples: dict[str, dict[str, list[float]]] = {v: {"relayed": [], "stored": []} for v in variants}
            for n in range(args.rounds):
                for variant, command in variants.items():
                    run = one_run(tmp, f"{'base' if command else 'this'}{n}", command, env, certs, echo_port,
                                  netrc, rewrites, args.interval)
                    for what, values in run.items():
                        samples[variant][what] += values
        finally:
            for proc in started:  # the echo server: it exits when its stdin closes
                proc.stdin.close()
                stop_pid(proc)
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], timeout=60)
    print(f"{'stream':<9}{'commit':<16}{'worst':>9}{'p99':>9}{'median':>9}{'requests':>10}")
    for what in ("relayed", "stored"):
        for variant in variants:
            v = samples[variant][what]
            print(f"{what:<9}{variant:<16}{max(v) * 1000:>7.0f}ms{p99(v) * 1000:>7.0f}ms"
                  f"{statistics.median(v) * 1000:>7.1f}ms{len(v):>10}")
        b, t = samples[args.base][what], samples["this checkout"][what]
        print(f"{what:<9}{'ratio ' + args.base + '/this':<16}{max(b) / max(t):>8.2f}x{p99(b) / p99(t):>8.2f}x"
              f"{statistics.median(b) / statistics.median(t):>8.2f}x")


if __name__ == "__main__":
    main()
