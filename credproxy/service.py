"""`credproxy service`: run `credproxy serve` as a per-user service (no mitmproxy here).

- Linux: a systemd user unit, `$XDG_CONFIG_HOME/systemd/user/credproxy.service`; logs go to
  the journal (`journalctl --user -u credproxy`).
- macOS: a launchd agent, `~/Library/LaunchAgents/<LABEL>.plist`; stdout/stderr go to
  `service.log` in credproxy's data directory. launchd does not rotate it; the proxy's own
  output is small (warnings and the request log), and `credproxy service install` rotates
  the previous file to `service.log.1` before (re)loading the agent.
- Windows: a Task Scheduler recipe in docs/service.md.

The unit and the plist carry the environment the proxy needs: the upstream proxy variables
and CREDPROXY_CONFIG / CREDPROXY_DATA_DIR when set. Never a secret: a proxy URL with a
password in it is refused (put the password in ~/.netrc or the config's files, which the
service reads), and no other variable is copied.

The unit and the plist are written by pure functions (unit-tested); the commands around them
are thin."""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import urlsplit

from . import paths
from .paths import platform_name
from .proxy.envvars import ACTIVE as ENV_ACTIVE
from .proxy.envvars import PREVIOUS_PREFIX
from .proxy.envvars import PROXY_VARS as ENV_SET_VARS

UNIT_NAME = "credproxy.service"
LAUNCHD_LABEL = "io.github.credproxy"

# variables a service keeps from the environment it was installed from
PASSED_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
                    "NO_PROXY", "no_proxy", "CREDPROXY_CONFIG", "CREDPROXY_DATA_DIR",
                    "CREDPROXY_CREDENTIALS_DIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "UV_SYSTEM_CERTS")
# `credproxy env` replaces the proxy variables and remembers the old values here: the
# service wants the company proxy, not itself
_PROXY_VARS = {"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
               "NO_PROXY", "no_proxy"}


class ServiceError(Exception):
    """A message that names the fix."""


@dataclass
class Plan:
    platform: str  # "systemd" | "launchd"
    path: Path  # the unit / plist file
    argv: list[str]  # the command the service runs
    environment: dict[str, str]
    log: str  # where its output goes, for people


def credproxy_executable() -> str:
    """The absolute path of this credproxy: the console script next to this interpreter,
    else `python -m credproxy.cli`."""
    script = Path(sys.executable).parent / ("credproxy.exe" if os.name == "nt" else "credproxy")
    if script.is_file():
        return str(script.absolute())
    found = shutil.which("credproxy")
    if found:
        return str(Path(found).absolute())
    return ""


def serve_argv(serve_args: Sequence[str]) -> list[str]:
    exe = credproxy_executable()
    base = [exe] if exe else [str(Path(sys.executable).absolute()), "-m", "credproxy.cli"]
    return [*base, "serve", *serve_args]


def service_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The variables the service keeps. Proxy variables that point at credproxy itself (set by
    `credproxy env`) are replaced by the value `env` remembered, or dropped."""
    out: dict[str, str] = {}
    for name in PASSED_VARIABLES:
        value = env.get(name)
        if name in _PROXY_VARS and value is not None and (PREVIOUS_PREFIX + name) in env:
            value = env.get(PREVIOUS_PREFIX + name) or None
        elif name in ENV_SET_VARS and env.get(ENV_ACTIVE) == "1":
            value = None  # `credproxy env` set it (pointing at credproxy) and there was none before
        if value:
            out[name] = value
    for name, value in out.items():
        if name.lower().endswith("_proxy") and name.lower() != "no_proxy":
            if has_userinfo(value):
                raise ServiceError(
                    f"{name} holds a login; a service file is not the place for it. Put the proxy "
                    f"credentials in ~/.netrc (machine <proxy host> login <user> password <password>) and "
                    f"set {name} without them, then run `credproxy service install` again")
    return out


# --- systemd ---------------------------------------------------------------------------------------


def systemd_unit_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return Path(base) / "systemd" / "user" / UNIT_NAME


def _systemd_quote(arg: str) -> str:
    """One ExecStart word, quoted for systemd (it splits like a shell, and expands % and $)."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    if escaped and all(c.isalnum() or c in "-_./:=@+," for c in escaped):
        return escaped
    return f'"{escaped}"'


def _systemd_env(name: str, value: str) -> str:
    item = f"{name}={value}".replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'Environment="{item}"'


def systemd_unit(argv: Sequence[str], environment: Mapping[str, str]) -> str:
    """The user unit's text. Restart on failure; output to the journal."""
    lines = [
        "# written by `credproxy service install`; rewrite it with that command",
        "[Unit]",
        "Description=credproxy: authenticating proxy for package registries",
        "Documentation=https://github.com/credproxy/credproxy/blob/main/docs/service.md",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        "ExecStart=" + " ".join(_systemd_quote(a) for a in argv),
        *[_systemd_env(k, v) for k, v in sorted(environment.items())],
        "Restart=on-failure",
        "RestartSec=2",
        "StandardOutput=journal",
        "StandardError=journal",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


def parse_exec_start(unit_text: str) -> list[str]:
    """ExecStart of a unit written by systemd_unit, split back into argv (for status and tests)."""
    for line in unit_text.splitlines():
        if line.startswith("ExecStart="):
            words = shlex.split(line[len("ExecStart="):])
            return [w.replace("%%", "%").replace("$$", "$") for w in words]
    raise ServiceError("the unit has no ExecStart line; run `credproxy service install` again")


# --- launchd ---------------------------------------------------------------------------------------


def launchd_plist_path(env: Mapping[str, str]) -> Path:
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home) / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"


def launchd_log_path(env: Mapping[str, str]) -> Path:
    return paths.data_dir(env) / "service.log"


def launchd_plist(argv: Sequence[str], environment: Mapping[str, str], log: Path) -> bytes:
    """The agent's plist: started at login, restarted when it exits with an error."""
    doc = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": list(argv),
        "EnvironmentVariables": dict(environment),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 5,
        "StandardOutPath": str(log),
        "StandardErrorPath": str(log),
        "ProcessType": "Background",
    }
    return plistlib.dumps(doc, fmt=plistlib.FMT_XML)


def rotate_log(log: Path, keep_bytes: int = 0) -> None:
    """Move service.log to service.log.1 (one old file kept) when it is larger than keep_bytes."""
    try:
        if log.stat().st_size > keep_bytes:
            os.replace(log, log.with_name(log.name + ".1"))
    except OSError:
        pass


# --- plan ------------------------------------------------------------------------------------------


def has_userinfo(value: str) -> bool:
    """A proxy URL with a user or password (a username alone may be a token): a secret."""
    try:
        parts = urlsplit(value if "://" in value else "http://" + value)
        return parts.username is not None or parts.password is not None
    except ValueError:
        return "@" in value


def platform_kind(platform: str | None = None) -> str:
    """The service manager: launchd (macOS), windows, systemd (Linux and the rest)."""
    return {"macos": "launchd", "windows": "windows"}.get(platform_name(platform), "systemd")


def plan(serve_args: Sequence[str], env: Mapping[str, str], platform: str | None = None) -> Plan:
    kind = platform_kind(platform)
    if kind == "windows":
        raise ServiceError("on Windows, register `credproxy serve` with Task Scheduler: see docs/service.md "
                           "(the `schtasks /Create` recipe)")
    argv = serve_argv(serve_args)
    environment = service_environment(env)
    if kind == "launchd":
        return Plan("launchd", launchd_plist_path(env), argv, environment, str(launchd_log_path(env)))
    return Plan("systemd", systemd_unit_path(env), argv, environment, "journalctl --user -u credproxy")


def render(p: Plan, env: Mapping[str, str]) -> bytes:
    if p.platform == "launchd":
        return launchd_plist(p.argv, p.environment, Path(p.log))
    return systemd_unit(p.argv, p.environment).encode()


def write_file(path: Path, data: bytes) -> None:
    """Atomic write, 0644 (no secret inside: a unit must be readable by the user's manager)."""
    from . import paths

    paths.write_atomic(path, data, 0o644)
