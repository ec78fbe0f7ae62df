"""Real clients (pip, uv, curl) run hermetically: an environment built from scratch per test.

This machine (and a user's) exports SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE,
PIP_CERT, PIP_FIND_LINKS, a pip config, proxies...: nothing of that may leak into a test.
client_env() keeps PATH only and sets what the test asks for (see testbed-notes.md).

Every runner returns a subprocess.CompletedProcess (text) and is bounded by a timeout
(subprocess.TimeoutExpired kills the child and propagates).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping

# The venv's bin dir (where uv and credproxy live); not resolved, so the venv stays the venv.
VENV_BIN = Path(sys.executable).parent
UV = VENV_BIN / "uv"
# The real interpreter: uv must never try to download a Python, and pyenv shims are scripts.
REAL_PYTHON = Path(os.path.realpath(sys.executable))


def home_env(home: Path) -> dict[str, str]:
    """PATH, LANG, and HOME/TMPDIR/XDG dirs inside `home` (created): a process that reads
    none of this machine's user configuration."""
    for sub in ("", ".cache", ".config", ".local/share", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TMPDIR": str(home / "tmp"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
    }


def client_env(
    tmp_path: os.PathLike | str,
    *,
    proxy_url: str | None = None,
    ca_bundle: os.PathLike | str | None = None,
    extra: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """A fresh environment for a client process.

    HOME, caches and XDG dirs live under tmp_path/"client-home" (so ~/.netrc, the uv credential
    store, keyring config are the test's own). With proxy_url: HTTPS_PROXY/HTTP_PROXY in both
    cases, NO_PROXY/no_proxy empty (pip/uv/curl do not bypass loopback by themselves). With
    ca_bundle: every variable pip 23/26, uv and curl read for trust (SSL_CERT_FILE,
    REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, PIP_CERT). `extra` is applied last; a None value
    removes the variable.
    """
    home = Path(tmp_path) / "client-home"
    env: dict[str, str] = {
        **home_env(home),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INPUT": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_CACHE_DIR": str(home / ".cache/pip"),
        "PYTHONNOUSERSITE": "1",
        "UV_NO_CONFIG": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_CACHE_DIR": str(home / ".cache/uv"),
        "UV_NO_PROGRESS": "1",
        # Keep the keyring library (if a client loads it) off the desktop keyring.
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
    }
    if proxy_url is not None:
        for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
            env[name] = proxy_url
        env["NO_PROXY"] = env["no_proxy"] = ""
    if ca_bundle is not None:
        bundle = str(ca_bundle)
        for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT"):
            env[name] = bundle
    return apply_extra(env, extra)


def apply_extra(env: dict[str, str], extra: Mapping[str, str | None] | None) -> dict[str, str]:
    """`extra` applied to `env` in place (a None value removes the variable); returns env."""
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run(cmd: list[str], *, env: Mapping[str, str], timeout: float = 120,
        cwd: os.PathLike | str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in cmd], env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout,
    )


def pip_install(
    target: os.PathLike | str,
    *args: str,
    env: Mapping[str, str],
    timeout: float = 120,
    python: os.PathLike | str | None = None,
) -> subprocess.CompletedProcess:
    """`python -m pip install --target <target> <args>` with the venv's pip (26.x), or with
    the pip of `python` (e.g. a `python -m venv` with its stock, older pip).

    Pass the index and trust explicitly, e.g. ("--index-url", url, "--cert", ca, "private-pkg").
    """
    cmd = [str(python or sys.executable), "-m", "pip", "install", "--no-compile", "--target",
           str(target), *args]
    return run(cmd, env=env, timeout=timeout)


def uv_venv(path: os.PathLike | str, *, env: Mapping[str, str],
            timeout: float = 60) -> subprocess.CompletedProcess:
    """`uv venv --python <real interpreter> <path>`; raises if it fails (setup, not the test)."""
    result = run([UV, "venv", "--python", REAL_PYTHON, path], env=env, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"uv venv failed ({result.returncode}):\n{result.stderr}")
    return result


def uv_pip_install(
    target: os.PathLike | str,
    *args: str,
    env: Mapping[str, str],
    venv: bool = False,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    """`uv pip install` into `target`.

    venv=False: `--target <target> --python <real interpreter>` (no venv needed).
    venv=True: a fresh `uv venv` at `target` (created if missing), installed with its python.
    Pass the index explicitly, e.g. ("--index-url", url, "private-pkg"); trust comes from
    client_env(ca_bundle=...) (uv reads SSL_CERT_FILE).
    """
    if venv:
        if not (Path(target) / "bin" / "python").exists():
            uv_venv(target, env=env)
        cmd = [UV, "pip", "install", "--python", Path(target) / "bin" / "python", *args]
    else:
        cmd = [UV, "pip", "install", "--python", REAL_PYTHON, "--target", target, *args]
    return run(cmd, env=env, timeout=timeout)


def curl(*args: str, env: Mapping[str, str], timeout: float = 30) -> subprocess.CompletedProcess:
    """curl that ignores ~/.curlrc (-q), is quiet but shows errors, and is bounded (--max-time).

    Useful: ("-o", "/dev/null", "-w", "%{http_code}", url) -> stdout is the status code.
    """
    cmd = ["curl", "-q", "--silent", "--show-error", "--max-time", str(int(timeout)), *args]
    return run(cmd, env=env, timeout=timeout + 10)


def combined_bundle(path: os.PathLike | str, *pems: os.PathLike | str) -> Path:
    """Write the concatenation of PEM files (e.g. proxy CA + test CA) to `path`.

    A client behind the proxy needs the proxy's CA for intercepted hosts and the upstream's
    CA for hosts the proxy passes through untouched."""
    path = Path(path)
    path.write_bytes(b"\n".join(Path(p).read_bytes().strip() + b"\n" for p in pems))
    return path


def installed(target: os.PathLike | str) -> dict[str, str]:
    """{normalized project name: version} from the .dist-info dirs under a --target dir or venv."""
    import re

    root = Path(target)
    found: dict[str, str] = {}
    for meta in list(root.glob("*.dist-info/METADATA")) + list(
        root.glob("lib/python*/site-packages/*.dist-info/METADATA")
    ):
        name = version = None
        for line in meta.read_text(errors="replace").splitlines():
            if line.startswith("Name: "):
                name = line[6:].strip()
            elif line.startswith("Version: "):
                version = line[9:].strip()
            elif not line:
                break
        if name and version:
            found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found
