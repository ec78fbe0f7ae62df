"""Installing credproxy as a new user does (issue 10 points 1-4), from a fresh `git clone`.

- the README's install line (`uv tool install .`) puts `credproxy` on PATH; `pip install
  --user .` (the fallback it names) does too;
- `make run`'s bootstrap installs only what running needs, `make test` adds the test
  extras, each with its own stamp, with no warnings in the output;
- a pip.conf in HOME (and PIP_* variables) naming an index that only works through the
  proxy does not break the bootstrap; when the bootstrap cannot install, it says why and
  what to set.

Offline: dependencies come from a wheelhouse packed from this venv's installed
distributions (tests/helpers/wheelhouse.py), handed to the installers with --no-index
--find-links (for make, through the BOOTSTRAP_PIP_ARGS the failure message names). What the
tests add to the README's command is only that; the rest is the command as written.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.clients import REAL_PYTHON, UV, home_env, installed, run
from tests.helpers.wheelhouse import wheelhouse

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
OFFLINE = ["--offline", "--no-index"]


def readme_install_commands() -> list[str]:
    """The command lines of the README's `## Install` section's first code block."""
    text = README.read_text()
    section = text.split("## Install", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    return [line.split("#", 1)[0].strip() for line in block.splitlines()[1:] if line.split("#", 1)[0].strip()]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    """credproxy's run and test dependencies (`make test` installs the negotiate extra too),
    and setuptools to build it, as wheels."""
    return wheelhouse(tmp_path_factory.mktemp("wheelhouse"), ["credproxy[test,negotiate,pac]", "setuptools>=77"])


def hostile_home(tmp_path: Path) -> dict[str, str]:
    """A HOME whose pip.conf (legacy-pip.md's set-up) names an index that needs the proxy,
    plus PIP_* variables doing the same. Any install that reads them fails: the index is a
    closed port and the constraint file does not exist."""
    env = home_env(tmp_path / "home")
    conf = Path(env["XDG_CONFIG_HOME"]) / "pip" / "pip.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("[global]\nindex-url = https://127.0.0.1:9/simple/\nconstraint = /nonexistent/c.txt\n")
    return {**env, "PIP_INDEX_URL": "https://127.0.0.1:9/simple/", "PIP_CONSTRAINT": "/nonexistent/c.txt",
            "PIP_RETRIES": "0", "PIP_TIMEOUT": "2"}


def on_path(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("credproxy", path=env["PATH"])
    assert exe is not None, f"credproxy not on PATH {env['PATH']}"
    return run([exe, *args], env=env, timeout=60)


def assert_runs(env: dict[str, str], where: Path) -> None:
    exe = shutil.which("credproxy", path=env["PATH"])
    assert exe is not None and Path(exe).parent == where, exe
    r = on_path(env, "--version")
    assert (r.returncode, r.stdout.strip()) == (0, "credproxy, version 0.1.0"), r.stderr
    r = on_path(env, "--help")
    assert r.returncode == 0 and "serve" in r.stdout and "auth" in r.stdout, r.stderr


def test_readme_install_line_is_uv_tool_install():
    commands = readme_install_commands()
    assert commands[0] == "uv tool install .", commands
    assert "pipx install ." in README.read_text() and "pip install --user ." in README.read_text()


def test_uv_tool_install_from_fresh_clone_puts_credproxy_on_path(clone, wheels, tmp_path):
    bin_dir = tmp_path / "bin"
    uv_only = tmp_path / "uv-only"  # uv on PATH, without this venv's credproxy beside it
    uv_only.mkdir()
    (uv_only / "uv").symlink_to(UV)
    env = {
        **hostile_home(tmp_path),
        "PATH": f"{bin_dir}:{uv_only}:/usr/bin:/bin",
        "UV_TOOL_DIR": str(tmp_path / "tools"),
        "UV_TOOL_BIN_DIR": str(bin_dir),
        "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_PYTHON": str(REAL_PYTHON),
        "UV_NO_PROGRESS": "1",
    }
    assert shutil.which("credproxy", path=env["PATH"]) is None
    install = shlex.split(readme_install_commands()[0])
    r = run([*install, *OFFLINE, "--find-links", wheels], env=env, cwd=clone, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "arning" not in r.stderr, r.stderr
    assert_runs(env, bin_dir)
    # it runs from the tool's own environment, not from the clone or this venv
    shutil.rmtree(clone)
    assert on_path(env, "--version").returncode == 0


def test_pip_install_user_fallback_puts_credproxy_on_path(clone, wheels, tmp_path):
    userbase = tmp_path / "userbase"
    env = {
        **home_env(tmp_path / "home"),
        "PATH": f"{userbase / 'bin'}:/usr/bin:/bin",
        "PYTHONUSERBASE": str(userbase),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    # the interpreter outside any venv (--user is refused inside one)
    r = run([REAL_PYTHON, "-m", "pip", "install", "--user", ".", "--no-index", "--find-links", wheels],
            env=env, cwd=clone, timeout=300)
    if r.returncode != 0 and "No module named pip" in r.stderr:
        pytest.fail(f"{REAL_PYTHON} has no pip: cannot check the README's fallback")
    assert r.returncode == 0, r.stderr
    assert_runs(env, userbase / "bin")


def make(clone: Path, env: dict[str, str], *targets: str, args: str = "") -> subprocess.CompletedProcess:
    return run(["make", "--no-print-directory", *targets, f"PYTHON={REAL_PYTHON}", f"BOOTSTRAP_PIP_ARGS={args}"],
               env=env, cwd=clone, timeout=600)


def test_make_bootstrap_ignores_users_pip_conf_and_installs_only_what_runs(clone, wheels, tmp_path):
    env = {**hostile_home(tmp_path), "PATH": "/usr/bin:/bin"}
    offline = f"--no-index --find-links {wheels}"
    r = make(clone, env, "venv-run", args=offline)
    assert r.returncode == 0, r.stdout + r.stderr
    for line in (r.stdout + r.stderr).splitlines():
        assert not re.search(r"(?i)warning|deprecat", line), line
    venv = clone / ".venv"
    have = installed(venv)
    assert "credproxy" in have and "mitmproxy" in have
    for test_only in ("pytest", "pypiserver", "gunicorn", "uv", "trustme", "hypothesis"):
        assert test_only not in have, f"make run installed {test_only}"
    assert (venv / ".installed-run").exists() and not (venv / ".installed").exists()
    r = run([venv / "bin" / "credproxy", "--version"], env=env)
    assert r.returncode == 0, r.stderr
    # `make run` now starts the proxy without installing anything more
    assert make(clone, env, "-n", "run").stdout.strip() == ".venv/bin/credproxy serve"

    # `make test` adds the test extras, then only runs the tests
    r = make(clone, env, "venv", args=offline)
    assert r.returncode == 0, r.stdout + r.stderr
    have = installed(venv)
    assert {"pytest", "pypiserver", "gunicorn", "uv", "trustme", "hypothesis"} <= set(have)
    assert make(clone, env, "-n", "test").stdout.strip().startswith(".venv/bin/python -m pytest")


def test_failed_bootstrap_says_why_and_what_to_set(clone, tmp_path):
    env = {**hostile_home(tmp_path), "PATH": "/usr/bin:/bin"}
    r = make(clone, env, "venv-run", args="--index-url https://127.0.0.1:9/simple/ --retries 0 --timeout 2")
    assert r.returncode != 0
    assert "installing credproxy's dependencies into .venv failed" in r.stderr
    assert "ignores your pip.conf" in r.stderr
    assert 'BOOTSTRAP_PIP_ARGS="--index-url https://MIRROR/simple/"' in r.stderr
    assert not (clone / ".venv" / ".installed-run").exists()
