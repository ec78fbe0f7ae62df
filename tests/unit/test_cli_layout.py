"""The command line (credproxy/cli/) stays a thin face: only `serve` and `run` start the proxy,
so only they may load the proxy (proxy.master, the addons, mitmproxy's master and addons).
Every other command runs in a real subprocess here and reports what it imported:
`eval "$(credproxy env)"` sits in shell start-up files, and loading the proxy for it cost
~0.5 s a shell (it did, through proxy.master). Allowed: mitmproxy's certs module (the CA is
created on first use) and its proxy layers for `doctor` (it checks that the internals the
request limits wrap exist, proxy/limits.py)."""

from __future__ import annotations

import ast
import importlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.proxy import hermetic_env

CLI = Path(__file__).resolve().parents[2] / "credproxy" / "cli"
# what the face may take from credproxy/proxy/: the entry points of serve/run and of `env`
PROXY_ENTRIES = {"master", "run", "token", "envvars"}

REPORT = """
import json, sys
from credproxy.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
proxy = ("credproxy.addons", "credproxy.proxy.master", "mitmproxy.master", "mitmproxy.addons")
loaded = [m for m in sys.modules if m.startswith(proxy)]
print(json.dumps(sorted(loaded)), file=sys.stderr)
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args", [
    ["env"],
    ["env", "--shell", "fish"],
    ["explain", "https://pypi.org/simple/"],
    ["doctor", "--port", "PORT"],
    ["auth", "dir"],
    ["ca", "path"],
    ["status"],
    ["service", "status"],
    ["--help"],
], ids=" ".join)
def test_a_command_other_than_serve_or_run_does_not_load_the_proxy(tmp_path, args):
    args = [str(_closed_port()) if a == "PORT" else a for a in args]  # doctor finds no proxy there
    env = hermetic_env(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "config"))
    proc = subprocess.run([sys.executable, "-c", REPORT, *args], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    loaded = json.loads(proc.stderr.strip().splitlines()[-1])
    assert loaded == [], f"`credproxy {' '.join(args)}` loaded {loaded}"


def _imports(path: Path) -> list[str]:
    """The credproxy modules a file imports, absolute (`..proxy.master` -> credproxy.proxy.master)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ["credproxy", "cli"][: 2 - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found += [module] if node.module else [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [m for m in found if m.startswith("credproxy")]


def test_the_face_imports_no_addon_and_only_the_proxys_entry_points():
    files = sorted(CLI.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "__main__.py", "common.py", "serve.py", "env.py"}
    wrong = []
    for f in files:
        for module in _imports(f):
            parts = module.split(".")
            if parts[1:2] == ["addons"] or (parts[1:2] == ["proxy"] and parts[2:3] and parts[2] not in PROXY_ENTRIES):
                wrong.append(f"{f.name}: {module}")
    assert wrong == []


def test_the_import_check_sees_the_proxy_imports():
    """The AST walk above resolves relative imports (so it cannot pass by seeing nothing)."""
    assert "credproxy.proxy.master" in _imports(CLI / "serve.py")
    assert "credproxy.proxy.envvars" in _imports(CLI / "env.py")


def test_every_import_in_the_face_resolves():
    """Each `from X import a, b` in credproxy/cli/*.py, function bodies included, names a module
    and attributes that exist: a hunk moved in from the old top-level cli*.py files keeps one
    dot too few (`from .status import ...` would now mean cli/status.py) and fails here, not
    only when a user reaches that branch."""
    missing = []
    for f in sorted(CLI.glob("*.py")):
        if f.name == "__main__.py":
            continue  # running it runs the command line
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.module == "__future__":
                continue
            name = "." * node.level + (node.module or "")
            try:
                module = importlib.import_module(name, "credproxy.cli")
            except ImportError as e:
                missing.append(f"{f.name}:{node.lineno}: {name}: {e}")
                continue
            for alias in node.names:
                if not hasattr(module, alias.name):
                    try:  # a submodule (`from .. import status`)
                        importlib.import_module(f"{module.__name__}.{alias.name}")
                    except ImportError:
                        missing.append(f"{f.name}:{node.lineno}: {name} has no {alias.name}")
    assert missing == []
