"""Start `credproxy` as a real subprocess, hermetically, and stop it by pid."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

LISTENING = re.compile(r"^credproxy listening on http://127\.0\.0\.1:(\d+)$")
_DROP_PREFIXES = ("PIP_", "UV_", "SSL_CERT_", "CREDPROXY_", "NETRC", "HF_")
_DROP_SUFFIXES = ("_PROXY", "_proxy", "_CA_BUNDLE", "_CAINFO", "_CAFILE")


def hermetic_env(tmp: Path, **extra: str) -> dict[str, str]:
    """This machine's environment minus everything that would steer a client or the proxy
    (proxies, CA variables, pip/uv settings); HOME and the data dir inside `tmp`."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(_DROP_PREFIXES) and not k.endswith(_DROP_SUFFIXES)
        and k not in ("NO_PROXY", "no_proxy", "NODE_EXTRA_CA_CERTS", "NPM_CONFIG_CAFILE", "GIT_SSL_CAINFO")
    }
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    # An explicitly named config must exist; tests that need settings write into it.
    config = tmp / "no-config.toml"
    if not config.exists():
        config.write_text("")
    env.update({
        "HOME": str(home),
        "CREDPROXY_DATA_DIR": str(tmp / "data"),
        "CREDPROXY_CONFIG": str(config),
        "CREDPROXY_CREDENTIALS_DIR": str(tmp / "credentials"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INPUT": "1",
        "UV_NO_CONFIG": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def credproxy_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "credproxy.cli", *args]


class ProxyProcess:
    """`credproxy serve --port 0 ...` until stop(); `port` parsed from the first stdout line."""

    def __init__(self, env: dict[str, str], *args: str, timeout: float = 30.0):
        self.proc = subprocess.Popen(
            credproxy_cmd("serve", "--port", "0", *args), env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.first_line = _read_line(self.proc, timeout)
        match = LISTENING.match(self.first_line.strip())
        if not match:
            self.stop()
            raise AssertionError(f"unexpected first line {self.first_line!r}; stderr: {self.stderr_text()}")
        self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_text(self) -> str:
        if self.proc.poll() is None:
            return ""
        return self.proc.stderr.read() if self.proc.stderr else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def __enter__(self) -> "ProxyProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            return proc.stdout.readline()
        if proc.poll() is not None:
            return proc.stdout.readline()
    proc.kill()
    proc.wait(5)
    raise AssertionError(f"credproxy printed nothing within {timeout} s")
