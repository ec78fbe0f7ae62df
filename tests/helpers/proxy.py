"""Run the real `credproxy serve` as a subprocess for end-to-end tests.

    proxy = start_credproxy(tmp_path, "--some-flag", env=env)
    ... client_env(tmp_path, proxy_url=proxy.url, ca_bundle=proxy.ca_bundle) ...
    proxy.stop()

Contract (PREAMBLE): `credproxy serve --port 0` prints `credproxy listening on
http://127.0.0.1:PORT` as its first stdout line once the listener is up; state lives in
CREDPROXY_DATA_DIR (always a temp dir here).

The proxy admits only its owner: `proxy.url` carries the proxy token
(`http://credproxy:TOKEN@127.0.0.1:PORT`, read from the proxy's data dir after start, as a
real client gets it from `credproxy env`; or the --proxyauth-file / CREDPROXY_PROXYAUTH pair the
proxy was started with). `proxy.bare_url` has no credentials (a stranger's view);
`proxy.auth_headers()` is the Proxy-Authorization header for hand-written requests.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import quote

from tests.helpers.clients import apply_extra, home_env
from tests.helpers.servers import die_with_parent, stop_pid

CREDPROXY = Path(sys.executable).parent / "credproxy"
_LISTENING = re.compile(r"credproxy listening on (http://127\.0\.0\.1:(\d+))\s*$")


class ProxyStartError(RuntimeError):
    pass


@dataclass
class Proxy:
    proc: subprocess.Popen = field(repr=False)
    port: int
    data_dir: Path
    stdout_path: Path
    stderr_path: Path
    # the USER:TOKEN clients must send (proxy/token.py); None before the proxy listens
    user: str | None = None
    token: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """`http://credproxy:TOKEN@127.0.0.1:PORT`: what `credproxy env` exports."""
        if self.token is None:
            return self.bare_url
        return f"http://{quote(self.user or '', safe='')}:{quote(self.token, safe='')}@127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ca_dir(self) -> Path:
        return self.data_dir / "ca"

    @property
    def ca_cert(self) -> Path:
        """The proxy's CA certificate (mitmproxy confdir layout)."""
        return self.ca_dir / "mitmproxy-ca-cert.pem"

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def rss_peak_kb(self) -> int:
        """Peak resident set size (VmHWM) of the proxy process, in kB (Linux)."""
        return _proc_status_kb(self.pid, "VmHWM")

    def rss_kb(self) -> int:
        return _proc_status_kb(self.pid, "VmRSS")

    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def bare_url(self) -> str:
        """`http://127.0.0.1:PORT` with no proxy credentials: what a stranger would use."""
        return f"http://127.0.0.1:{self.port}"

    def auth_headers(self) -> dict[str, str]:
        """Headers a raw-socket client (CONNECT or absolute-form request written by hand) adds
        to be let in as the owner. `proxy.url` already carries them for real clients."""
        if self.token is None:
            return {}
        raw = f"{self.user}:{self.token}".encode()
        return {"Proxy-Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}

    def stop(self, grace: float = 5.0, sig: int = signal.SIGTERM) -> int:
        """`sig` (SIGTERM; SIGINT is Ctrl-C), wait, then SIGKILL this pid only. Returns the
        exit code."""
        stop_pid(self.proc, grace=grace, sig=sig)
        return self.proc.returncode


    def __enter__(self) -> "Proxy":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def credproxy_cmd(*args: str) -> list[str]:
    """`credproxy ARGS` as this interpreter runs it (for the CLI commands other than serve)."""
    return [sys.executable, "-m", "credproxy.cli", *args]


def hermetic_env(tmp_path: os.PathLike | str, **extra: str) -> dict[str, str]:
    """proxy_env for CLI tests: state under tmp_path (CREDPROXY_DATA_DIR = tmp_path/data), no
    test-name mapping, and no pip/uv configuration of this machine read (PIP_CONFIG_FILE,
    UV_NO_CONFIG). `extra` last."""
    tmp = Path(tmp_path)
    return proxy_env(tmp, resolve=(), extra={
        "CREDPROXY_DATA_DIR": str(tmp / "data"),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INPUT": "1",
        "UV_NO_CONFIG": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "PYTHONUNBUFFERED": "1",
        **extra,
    })


def _proc_status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/{pid}/status")


def proxy_env(
    tmp_path: os.PathLike | str,
    *,
    upstream_ca: os.PathLike | str | None = None,
    resolve: tuple[str, ...] | list[str] = ("pkgs.test", "other.test", "mirror.test", "mtls.test"),
    extra: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """A from-scratch environment for the proxy process (none of this machine's settings).

    HOME/XDG dirs in tmp (no user netrc, store, keyring config), CREDPROXY_CONFIG pointing at
    an empty tmp/credproxy-config.toml (a named config file must exist; tests write theirs there),
    CREDPROXY_TEST_RESOLVE mapping `resolve` to 127.0.0.1, and with upstream_ca
    SSL_CERT_FILE (replaces the default roots: pass certs.ca_plus_certifi_pem to keep public
    roots). `extra` last; None removes a variable.
    """
    tmp = Path(tmp_path)
    (tmp / "credproxy-config.toml").touch()
    env = {
        **home_env(tmp / "proxy-home"),
        "CREDPROXY_CONFIG": str(tmp / "credproxy-config.toml"),
        # The local store moves with this variable, not with the data dir.
        "CREDPROXY_CREDENTIALS_DIR": str(tmp / "credproxy-credentials"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
    }
    if resolve:
        env["CREDPROXY_TEST_RESOLVE"] = ",".join(f"{name}=127.0.0.1" for name in resolve)
    if upstream_ca is not None:
        env["SSL_CERT_FILE"] = str(upstream_ca)
    return apply_extra(env, extra)


def start_credproxy(
    tmp_path: os.PathLike | str,
    *args: str,
    env: Mapping[str, str],
    data_dir: os.PathLike | str | None = None,
    timeout: float = 20.0,
    name: str = "credproxy",
    command: list[str] | None = None,
    cwd: os.PathLike | str | None = None,
) -> Proxy:
    """Start `credproxy serve --port 0 <args>`; wait (bounded) for its listening line.

    `command` replaces `[.venv/bin/credproxy, "serve"]` (another build, or a fake in tests of
    this helper). `cwd` is the proxy's working directory (default tmp_path).
    `env` is used as given (build it with client_env or by hand), plus CREDPROXY_DATA_DIR
    (tmp_path/<name>-data unless `data_dir`, or env, names one). On exit before listening,
    or timeout, the process is stopped and ProxyStartError carries its stderr.
    """
    tmp = Path(tmp_path)
    full_env = dict(env)
    if data_dir is not None:
        full_env["CREDPROXY_DATA_DIR"] = str(data_dir)
    full_env.setdefault("CREDPROXY_DATA_DIR", str(tmp / f"{name}-data"))
    Path(full_env["CREDPROXY_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    stdout_path, stderr_path = tmp / f"{name}.stdout", tmp / f"{name}.stderr"
    cmd = [*(command or [str(CREDPROXY), "serve"]), "--port", "0", *args]
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(cmd, env=full_env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err, cwd=tmp if cwd is None else cwd, preexec_fn=die_with_parent)
    proxy = Proxy(proc=proc, port=0, data_dir=Path(full_env["CREDPROXY_DATA_DIR"]),
                  stdout_path=stdout_path, stderr_path=stderr_path)

    deadline = time.monotonic() + timeout
    while True:
        first_line = _first_line(stdout_path)
        if first_line is not None:
            m = _LISTENING.match(first_line)
            if m:
                proxy.port = int(m.group(2))
                proxy.user, proxy.token = _client_pair(proxy.data_dir, args, full_env)
                return proxy
            proxy.stop()
            raise ProxyStartError(
                f"unexpected first stdout line {first_line!r}; stderr:\n{proxy.stderr()[-4000:]}"
            )
        if proc.poll() is not None:
            raise ProxyStartError(
                f"credproxy serve exited with {proc.returncode} before listening; "
                f"stderr:\n{proxy.stderr()[-4000:]}"
            )
        if time.monotonic() > deadline:
            proxy.stop()
            raise ProxyStartError(
                f"credproxy serve not listening after {timeout}s; stderr:\n{proxy.stderr()[-4000:]}"
            )
        time.sleep(0.05)


def _client_pair(data_dir: Path, args: tuple[str, ...], env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The pair the proxy expects, found where the owner's `credproxy env` finds it."""
    args = list(args)
    text = None
    if "--proxyauth-file" in args:
        lines = Path(args[args.index("--proxyauth-file") + 1]).read_text().split()
        text = lines[0] if lines else None
    elif env.get("CREDPROXY_PROXYAUTH"):
        text = env["CREDPROXY_PROXYAUTH"]
    if text is not None:
        user, _, token = text.partition(":")
        return user, token
    token_file = data_dir / "proxy-token"
    if not token_file.exists():
        return None, None  # a fake `command` in this helper's own tests
    return "credproxy", token_file.read_text().strip()


def _first_line(path: Path) -> str | None:
    """The first complete stdout line, or None while it is still being written."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    end = data.find(b"\n")
    return None if end < 0 else data[:end].decode(errors="replace")
