"""Importing pip's configuration (pip.conf files and PIP_INDEX_URL & co.) by pip's own rules."""

from __future__ import annotations

import configparser
import os
import sys
from pathlib import Path
from typing import Mapping

from ..credentials.index import Index
from .model import Layer, Settings
from .values import env_value, home_dir, quote, safe_url, url_problem, url_scheme



def pip_config_paths(env: Mapping[str, str]) -> list[Path]:
    """The files pip reads, lowest priority first: global (`$XDG_CONFIG_DIRS/pip/pip.conf`,
    `/etc/pip.conf`), user (`~/.pip/pip.conf`, then `$XDG_CONFIG_HOME/pip/pip.conf`), site
    (`$VIRTUAL_ENV/pip.conf`), then `PIP_CONFIG_FILE`. `PIP_CONFIG_FILE=/dev/null` (os.devnull)
    means none at all; an existing `PIP_CONFIG_FILE` skips the user files, as in pip."""
    env_file = env.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return []
    home = home_dir(env)
    out: list[Path] = []
    if sys.platform == "win32":
        if env.get("PROGRAMDATA"):
            out.append(Path(env["PROGRAMDATA"]) / "pip" / "pip.ini")
        user = [home / "pip" / "pip.ini"]
        if env.get("APPDATA"):
            user.append(Path(env["APPDATA"]) / "pip" / "pip.ini")
    else:
        dirs = [d for d in (env.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":") if d]
        out += [Path(d) / "pip" / "pip.conf" for d in dirs]
        out.append(Path("/etc/pip.conf"))
        user = [home / ".pip" / "pip.conf"]
        if sys.platform == "darwin":
            user.append(home / "Library" / "Application Support" / "pip" / "pip.conf")
        user.append(Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "pip" / "pip.conf")
    if not (env_file and os.path.exists(env_file)):
        out += user
    if env.get("VIRTUAL_ENV"):
        out.append(Path(env["VIRTUAL_ENV"]) / ("pip.ini" if sys.platform == "win32" else "pip.conf"))
    if env_file:
        out.append(Path(env_file))
    return out


_PIP_KEYS = ("index-url", "extra-index-url", "trusted-host")


def pip_layer(paths: list[Path], env: Mapping[str, str], settings: Settings) -> Layer:
    """pip's effective index-url / extra-index-url / trusted-host: for each key the
    environment (PIP_INDEX_URL, ...) wins, else `[install]`, else `[global]`, a later file
    overriding an earlier one — pip's own rules."""
    values: dict[str, dict[str, tuple[str, str]]] = {"global": {}, "install": {}}
    for path in paths:
        if not path.is_file():
            continue
        parser = configparser.RawConfigParser()
        try:
            with open(path, encoding="utf-8") as f:
                parser.read_file(f)
        except (configparser.Error, UnicodeDecodeError, OSError) as exc:
            settings.warnings.append(f"ignored pip configuration {path}: {_configparser_reason(exc)}")
            continue
        settings.config_files.append(str(path))
        for section in ("global", "install"):
            if parser.has_section(section):
                for option, value in parser.items(section):
                    key = option.lstrip("-").replace("_", "-")  # pip accepts index_url, --index-url
                    if key in _PIP_KEYS:
                        values[section][key] = (value, f"pip.conf:{path}")
    env_vars = {"index-url": "PIP_INDEX_URL", "extra-index-url": "PIP_EXTRA_INDEX_URL",
                "trusted-host": "PIP_TRUSTED_HOST"}
    layer = Layer()
    for key in _PIP_KEYS:
        if env_value(env, env_vars[key]) is not None:
            value, origin = env[env_vars[key]], f"env:{env_vars[key]}"
        elif key in values["install"]:
            value, origin = values["install"][key]
        elif key in values["global"]:
            value, origin = values["global"][key]
        else:
            continue
        for item in value.split():  # pip splits multi-line and space-separated values
            if key == "trusted-host":
                if "@" not in item:
                    layer.allow_insecure_host.append(item)
                continue
            if url_scheme(item) not in ("http", "https"):
                settings.notes.append(f"{origin}: ignored {key} {safe_url(item)} (not an http(s) index)")
            elif (why := url_problem(item)) is not None:
                settings.warnings.append(f"{origin}: ignored {key}: expected {why}, got {quote(safe_url(item))}")
            else:
                layer.indexes.append(Index.from_url(item, origin=origin))
    return layer


def _configparser_reason(exc: Exception) -> str:
    """configparser's messages quote whole lines, which may hold a URL with a password:
    keep only the line number."""
    lineno = getattr(exc, "lineno", None)
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"invalid pip configuration at line {lineno}: no [section] header before it"
    if isinstance(exc, configparser.ParsingError):
        lines = sorted({n for n, _ in getattr(exc, "errors", [])}) or ([lineno] if lineno else [])
        return "invalid pip configuration at line " + ", ".join(str(n) for n in lines)
    if isinstance(exc, configparser.DuplicateOptionError):
        return f"duplicate option {exc.option!r} in [{exc.section}] at line {lineno}"
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"duplicate section [{exc.section}] at line {lineno}"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    return type(exc).__name__

