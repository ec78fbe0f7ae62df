"""`make test-oldest`, CI's second lane: the oldest stack pyproject allows (Python 3.11,
mitmproxy 11.0.2, the lowest runtime dependency versions in constraints/oldest.txt).

- its pins are the lower bounds pyproject.toml states, so the lane tests what users may get;
- without a Python 3.11 it says so: skipped with a message on a developer's machine, a
  failure in CI (CREDPROXY_REQUIRE_SYSTEM_TOOLS=1); a pyenv shim that cannot run is no Python;
- when its bootstrap cannot install, it says why and what to set, as `make run`'s does.

The lane itself (the tests it runs on the old stack) is `.ci/run`'s `make test-oldest`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.helpers.clients import REAL_PYTHON, home_env, run

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")


def oldest_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints" / "oldest.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_oldest_pins_are_pyprojects_lower_bounds():
    """Each runtime dependency with a lower bound is pinned to exactly that bound (so raising
    one in pyproject.toml without the other fails here), and nothing else is pinned."""
    deps = [Requirement(d) for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]]
    lower = {}
    for req in deps:
        bounds = [s.version for s in req.specifier if s.operator == ">="]
        if bounds:
            lower[req.name.lower()] = Version(bounds[0])
    assert set(lower) == {"mitmproxy", "keyring", "cryptography", "platformdirs", "click"}, lower
    assert {name: Version(v) for name, v in oldest_pins().items()} == lower


def no_python_311(tmp_path: Path) -> dict[str, str]:
    """A PATH whose only `python3.11`/`python3` are pyenv shims of an inactive version (they
    print an error instead of running), and an empty pyenv: no usable Python 3.11."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ls", "sort"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    for shim in ("python3.11", "python3"):
        (bin_dir / shim).write_text(f"#!/bin/sh\necho \"pyenv: {shim}: command not found\" >&2\nexit 127\n")
        (bin_dir / shim).chmod(0o755)
    (tmp_path / "pyenv" / "versions").mkdir(parents=True)
    return {**home_env(tmp_path / "home"), "PATH": str(bin_dir), "PYENV_ROOT": str(tmp_path / "pyenv")}


def test_without_python_311_the_lane_is_skipped_with_a_message_and_fails_in_ci(clone, tmp_path):
    env = no_python_311(tmp_path)
    r = run([MAKE, "--no-print-directory", "test-oldest"], env=env, cwd=clone, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "make test-oldest: SKIPPED: no Python 3.11 here" in r.stderr
    assert not (clone / ".venv-oldest").exists()

    r = run([MAKE, "--no-print-directory", "test-oldest"], env={**env, "CREDPROXY_REQUIRE_SYSTEM_TOOLS": "1"},
            cwd=clone, timeout=60)
    assert r.returncode != 0
    assert "make test-oldest: FAILED: no Python 3.11" in r.stderr
    assert "pyenv install 3.11" in r.stderr
    assert not (clone / ".venv-oldest").exists()


def test_find_python_with_a_version_prints_only_that_version(tmp_path):
    """The lane asks scripts/find-python for 3.11; a Python of another version is not taken."""
    env = no_python_311(tmp_path)
    (Path(env["PATH"]) / "python3").unlink()
    (Path(env["PATH"]) / "python3").symlink_to(REAL_PYTHON)  # this suite's Python (3.12+ in `make test`)
    r = run([REPO / "scripts" / "find-python", "3.11"], env=env, timeout=30)
    here = subprocess.run([REAL_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                          capture_output=True, text=True, timeout=30).stdout.strip()
    if here == "3.11":
        assert r.returncode == 0 and os.path.realpath(r.stdout.strip()) == str(REAL_PYTHON), r.stderr
    else:
        assert r.returncode == 1 and r.stdout == "", r.stdout
        assert "no Python 3.11 found" in r.stderr
    r = run([REPO / "scripts" / "find-python", here], env=env, timeout=30)
    assert r.returncode == 0 and os.path.realpath(r.stdout.strip()) == str(REAL_PYTHON), r.stderr


def test_failed_oldest_bootstrap_says_why_and_what_to_set(clone, tmp_path):
    env = {**home_env(tmp_path / "home"), "PATH": os.environ["PATH"]}
    env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
    r = run([MAKE, "--no-print-directory", ".venv-oldest/.installed", f"OLDEST_PYTHON={REAL_PYTHON}",
             "BOOTSTRAP_PIP_ARGS=--index-url https://127.0.0.1:9/simple/ --retries 0 --timeout 2"],
            env=env, cwd=clone, timeout=300)
    assert r.returncode != 0
    assert "installing credproxy's dependencies into .venv-oldest failed" in r.stderr
    assert 'make test-oldest BOOTSTRAP_PIP_ARGS="--index-url https://MIRROR/simple/"' in r.stderr
    assert "constraints/oldest.txt" in r.stderr
    assert not (clone / ".venv-oldest" / ".installed").exists()
