"""Importing uv's configuration (uv.toml, pyproject.toml `[tool.uv]`): where uv looks, and the
parts that matter to a proxy. Lenient: a file uv owns never makes loading fail."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping

from ..credentials.index import Index, valid_index_name
from ..credentials.model import without_userinfo
from .model import AUTH_POLICIES, KEYRING_PROVIDERS, ConfigError, Layer, Settings
from .values import home_dir, one_of, parse_boolish, quote, read_toml, safe_url, type_name, url_problem, url_scheme


def uv_user_config_file(env: Mapping[str, str]) -> Path:
    """uv's user-level config: `%APPDATA%\\uv\\uv.toml` on Windows, else
    `$XDG_CONFIG_HOME/uv/uv.toml` (default `~/.config`, macOS included)."""
    if sys.platform == "win32" and env.get("APPDATA"):
        return Path(env["APPDATA"]) / "uv" / "uv.toml"
    base = env.get("XDG_CONFIG_HOME") or str(home_dir(env) / ".config")
    return Path(base) / "uv" / "uv.toml"


def uv_system_config_files(env: Mapping[str, str]) -> list[Path]:
    """uv's system-level config: the first `uv/uv.toml` in `$XDG_CONFIG_DIRS` (default
    `/etc/xdg`), else `/etc/uv/uv.toml` (Windows: `%SYSTEMDRIVE%\\ProgramData\\uv\\uv.toml`)."""
    if sys.platform == "win32":
        return [Path(env.get("SYSTEMDRIVE", "C:") + "\\") / "ProgramData" / "uv" / "uv.toml"]
    dirs = [d for d in (env.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":") if d]
    return [Path(d) / "uv" / "uv.toml" for d in dirs] + [Path("/etc/uv/uv.toml")]


def _has_tool_uv(path: Path) -> bool:
    try:
        return isinstance(read_toml(path).get("tool", {}).get("uv"), dict)
    except (ConfigError, AttributeError):
        return False


def uv_project_config_file(cwd: Path) -> Path | None:
    """As uv searches: from `cwd` upwards, the first directory with a `uv.toml`, or a
    `pyproject.toml` that has a `[tool.uv]` table."""
    for directory in (cwd, *cwd.parents):
        if (directory / "uv.toml").is_file():
            return directory / "uv.toml"
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file() and _has_tool_uv(pyproject):
            return pyproject
    return None


def uv_config_paths(env: Mapping[str, str], project: Path | None = None) -> list[Path]:
    """The uv config files uv itself would read, lowest priority first (system, user, then
    the project's when `project` is given). `UV_CONFIG_FILE` replaces discovery; `UV_NO_CONFIG`
    disables it. `load_settings` asks for system and user only: a project is opt-in
    (project.py) and never the working directory."""
    if env.get("UV_CONFIG_FILE"):
        return [Path(env["UV_CONFIG_FILE"])]
    if env.get("UV_NO_CONFIG") and parse_boolish(env["UV_NO_CONFIG"]) is not False:
        return []
    out: list[Path] = []
    system = next((p for p in uv_system_config_files(env) if p.is_file()), None)
    if system:
        out.append(system)
    user = uv_user_config_file(env)
    if user.is_file():
        out.append(user)
    found = uv_project_config_file(project) if project is not None else None
    if found:
        out.append(found)
    return out


def uv_layer(path: Path, settings: Settings) -> Layer | None:
    """The parts of a uv config file that matter to a proxy. Lenient: uv owns the format, so
    unknown keys are fine; a value we cannot use is skipped with a warning."""
    try:
        data = read_toml(path)
    except ConfigError as exc:
        settings.warnings.append(f"ignored uv configuration {exc}")
        return None
    kind = "pyproject.toml" if path.name == "pyproject.toml" else "uv.toml"
    if kind == "pyproject.toml":
        data = data.get("tool", {}).get("uv") if isinstance(data.get("tool"), dict) else None
        if not isinstance(data, dict):
            return None
    origin = f"{kind}:{path}"
    prefix = "tool.uv." if kind == "pyproject.toml" else ""
    layer = Layer()

    def warn(key: str, expected: str, value: Any = ...) -> None:
        got = ""
        if value is not ...:
            got = f", got {quote(value)}" if isinstance(value, str) else f", got {type_name(value)}"
        settings.warnings.append(f"{path}: ignored {prefix}{key}: expected {expected}{got}")

    def add_url(key: str, url: Any, name: str | None = None, **kw) -> None:
        if not isinstance(url, str):
            warn(key, "a URL string", url)
            return
        if url_scheme(url) not in ("http", "https"):
            settings.notes.append(f"{path}: ignored {prefix}{key} {safe_url(url)} (not an http(s) index)")
            return
        if (why := url_problem(url)) is not None:
            warn(key, why, safe_url(url))
            return
        layer.indexes.append(Index.from_url(url, name=name, origin=origin, **kw))

    tables = data.get("index", [])
    if not isinstance(tables, list):
        warn("index", "an array of tables", tables)
        tables = []
    for n, table in enumerate(tables, 1):
        key = f"index[{n}]"
        if not isinstance(table, dict):
            warn(key, "a table", table)
            continue
        name = table.get("name")
        if name is not None and not (isinstance(name, str) and name.isascii() and valid_index_name(name)):
            warn(f"{key}.name", "a valid index name", name)
            name = None
        auth = table.get("authenticate", "auto")
        if auth not in AUTH_POLICIES:
            warn(f"{key}.authenticate", one_of(AUTH_POLICIES), auth)
            auth = "auto"
        publish = table.get("publish-url")
        publish = without_userinfo(publish) if isinstance(publish, str) and url_problem(publish) is None else None
        add_url(f"{key}.url", table.get("url"), name, authenticate=auth, publish_url=publish)

    # top-level and `[pip]` forms: uv reads both
    for section_prefix, section in (("", data), ("pip.", data.get("pip") if isinstance(data.get("pip"), dict) else {})):
        if "index-url" in section:
            add_url(section_prefix + "index-url", section["index-url"])
        extra = section.get("extra-index-url", [])
        if isinstance(extra, list):
            for n, url in enumerate(extra, 1):
                add_url(f"{section_prefix}extra-index-url[{n}]", url)
        else:
            warn(section_prefix + "extra-index-url", "an array of URLs", extra)
        hosts = section.get("allow-insecure-host", [])
        if isinstance(hosts, list):
            for n, host in enumerate(hosts, 1):
                if isinstance(host, str) and host.strip():
                    layer.allow_insecure_host.append(host.strip())
                elif isinstance(host, dict) and isinstance(host.get("host"), str):
                    # uv's table form {scheme, host, port}
                    text = host["host"]
                    if isinstance(host.get("port"), int):
                        text = f"{text}:{host['port']}"
                    if isinstance(host.get("scheme"), str):
                        text = f"{host['scheme']}://{text}"
                    layer.allow_insecure_host.append(text)
                else:
                    warn(f"{section_prefix}allow-insecure-host[{n}]", "a host string or table", host)
        else:
            warn(section_prefix + "allow-insecure-host", "an array of hosts", hosts)
        if "keyring-provider" in section and layer.keyring_provider is None:
            v = section["keyring-provider"]
            if v in KEYRING_PROVIDERS:
                layer.keyring_provider = v
            else:
                warn(section_prefix + "keyring-provider", one_of(KEYRING_PROVIDERS), v)
        for key in ("system-certs", "native-tls"):
            if key in section:
                v = section[key]
                if not isinstance(v, bool):
                    warn(section_prefix + key, "a boolean", v)
                elif layer.system_certs is None or key == "system-certs":
                    layer.system_certs = v
    return layer

