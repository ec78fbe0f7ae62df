"""Where credproxy keeps its own state. Never the user's `~/.mitmproxy`, never the repo.

`CREDPROXY_DATA_DIR` moves everything (tests use it); `CREDPROXY_CREDENTIALS_DIR` moves the
store alone (computed by credentials/store.py, which imports nothing from here so the core
stays independent); `CREDPROXY_CONFIG` names the config file.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Mapping

import platformdirs

APP = "credproxy"


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("CREDPROXY_DATA_DIR"):
        return Path(env["CREDPROXY_DATA_DIR"])
    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def ca_dir(env: Mapping[str, str] | None = None) -> Path:
    """The proxy's own CA (mitmproxy's confdir layout), key 0600 in a 0700 directory."""
    return data_dir(env) / "ca"


def bundle_path(env: Mapping[str, str] | None = None) -> Path:
    """The combined trust bundle `credproxy env` exports (public roots + proxy CA + upstream CA).
    Upstream trust must never collapse to this file when the proxy's own SSL_CERT_FILE is it."""
    return data_dir(env) / "ca-bundle.pem"


def token_file(env: Mapping[str, str] | None = None) -> Path:
    """The per-user proxy token (proxy/token.py): 0600, created on first use, never overwritten.
    Delete it to rotate the token."""
    return data_dir(env) / "proxy-token"


def default_config_file(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("CREDPROXY_CONFIG"):
        return Path(env["CREDPROXY_CONFIG"])
    return Path(platformdirs.user_config_dir(APP, appauthor=False)) / "config.toml"


def write_atomic(path: os.PathLike | str, data: bytes, mode: int = 0o600) -> Path:
    """Replace `path` with `data` atomically (a temp file in the same directory, then rename),
    with `mode`: a reader sees the old file or the new one, never half of it. The temp file is
    created 0600 (mkstemp), so nothing is readable before its mode is set."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def platform_name(platform: str | None = None) -> str:
    """"macos", "windows" or "linux" (Linux and the BSDs) for sys.platform or `platform`: the
    three kinds of OS credproxy treats differently (trust store, service manager)."""
    platform = platform or sys.platform
    if platform == "darwin":
        return "macos"
    if platform in ("win32", "cygwin"):
        return "windows"
    return "linux"
