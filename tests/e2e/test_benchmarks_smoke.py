"""benchmarks/run.py keeps working: a --quick run (seconds) prints every row with its ratios
and writes the raw numbers. The figures themselves are not judged here (benchmarks are not
timed tests); benchmarks/README.md has a full run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROWS = ["small requests", "new connection + GET", "50 MB download", "pip install (2 pkgs)",
        "uv install (2 pkgs)", "proxy start-up"]


def test_quick_benchmark_run_reports_every_row(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--json", str(out)],
                            capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert [row["what"] for row in data["rows"]] == ROWS
    for row in data["rows"][:3]:  # the proxy rows: every variant measured, positive
        assert set(row["median"]) == {"direct", "passthrough", "intercepted", "mitmdump"}
        assert all(v > 0 for v in row["median"].values())
    for row in data["rows"][3:5]:
        assert set(row["median"]) == {"direct", "intercepted"}
    lines = {line.split("  ")[0]: line for line in result.stdout.splitlines()}
    for what in ROWS[:5]:  # the table shows the intercepted ratio of each row
        assert what in lines and re.search(r"\d+\.\d\dx", lines[what]), result.stdout
    assert 0 < data["proxy_peak_rss_mb"] < 500


def test_cli_startup_benchmark_compares_two_trees_and_cleans_up():
    """benchmarks/cli_startup.py against HEAD itself (one round): both trees run, a ratio is
    printed, and its temporary worktree is gone afterwards."""
    before = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True,
                            timeout=30).stdout
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cli_startup.py"), "--base", "HEAD",
                             "--rounds", "1"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"credproxy env  HEAD +\d+\.\d{3} s", result.stdout), result.stdout
    assert re.search(r"credproxy env  this checkout +\d+\.\d{3} s", result.stdout), result.stdout
    assert re.search(r"ratio HEAD/this checkout: \d+\.\d\dx", result.stdout), result.stdout
    after = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True,
                           timeout=30).stdout
    assert after == before


def test_reload_stall_benchmark_compares_two_trees_and_cleans_up():
    """benchmarks/reload_stall.py --quick against HEAD itself: both proxies ran, saw the netrc
    rewrites, and both streams got answers; a ratio per stream; its worktree is gone after."""
    before = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True,
                            timeout=30).stdout
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reload_stall.py"), "--base", "HEAD",
                             "--quick"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for stream in ("relayed", "stored"):
        for commit in ("HEAD", "this checkout"):
            assert re.search(rf"{stream} +{commit} +\d+ms +\d+ms +\d+\.\dms +[1-9]\d*$", result.stdout, re.M), result.stdout
        assert re.search(rf"{stream} +ratio HEAD/this +\d+\.\d\dx", result.stdout), result.stdout
    after = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True,
                           timeout=30).stdout
    assert after == before
