"""`credproxy env` (what every new shell runs, through `eval "$(credproxy env)"`) timed side by
side: this checkout against another commit, in this venv, alternating run by run so load hits
both alike.

    .venv/bin/python benchmarks/cli_startup.py --base 31e10d6 [--rounds 15]

The other commit is checked out into a temporary git worktree (removed at the end); each run
imports credproxy from its own tree (the editable install's finder is taken out of the way).
HOME and the XDG folders are empty temporary ones, so no user config is read. Prints the median
[min-max] of each and the ratio base/this (above 1: this checkout is faster)."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_PRE = ("import sys; sys.meta_path = [f for f in sys.meta_path if '__editable__' not in "
        "(getattr(f, '__module__', '') or getattr(type(f), '__module__', ''))]; sys.path.insert(0, sys.argv.pop(1)); ")
RUN = _PRE + "sys.argv = ['credproxy', 'env']; from credproxy.cli import main; main()"
WHERE = _PRE + "import credproxy; print(credproxy.__file__)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the commit to compare with")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--quiet", "--detach", str(base), args.base],
                       check=True, timeout=120)
        try:
            home = Path(tmp) / "home"
            env = {"PATH": os.environ["PATH"], "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                   "XDG_DATA_HOME": str(home / ".local/share"), "XDG_STATE_HOME": str(home / ".local/state")}
            trees = {args.base: base, "this checkout": ROOT}
            for name, tree in trees.items():
                where = subprocess.run([sys.executable, "-c", WHERE, str(tree)], env=env, capture_output=True,
                                       text=True, timeout=60).stdout.strip()
                assert where.startswith(str(tree)), f"{name}: imported {where}, not from {tree}"
            times: dict[str, list[float]] = {name: [] for name in trees}
            for _ in range(args.rounds):
                for name, tree in trees.items():
                    start = time.perf_counter()
                    r = subprocess.run([sys.executable, "-c", RUN, str(tree)], env=env, capture_output=True,
                                       text=True, timeout=60)
                    times[name].append(time.perf_counter() - start)
                    assert r.returncode == 0 and "HTTPS_PROXY" in r.stdout, f"{name}: {r.stderr[-400:]}"
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], timeout=60)
    median = {name: statistics.median(v) for name, v in times.items()}
    for name, v in times.items():
        print(f"credproxy env  {name:14} {median[name]:.3f} s [{min(v):.3f}-{max(v):.3f}]  n={len(v)}")
    print(f"ratio {args.base}/this checkout: {median[args.base] / median['this checkout']:.2f}x")


if __name__ == "__main__":
    main()
