"""Settings: CLI flags > environment > config file > imported uv/pip configuration.

`load_settings()` is the one entry point. It never raises for a user's mistake except with
`ConfigError`, whose text names the file, the key and what was expected.

Scalars (keyring-provider, system-certs, ca-bundle, intercept, ...) take the value of the
highest layer that sets them. Lists (indexes, allow-insecure-host, client certificates,
intercept-hosts) are combined, highest layer first, as uv combines CLI/env and config
values. Indexes pointing at the same URL are merged into one: the higher layer's fields win,
missing fields (name, username, URL credentials) are filled from the lower ones.

Imported files (uv.toml, pyproject.toml `[tool.uv]`, pip.conf) never make loading fail: a
broken one is skipped with a warning, so a stray file in a project cannot stop the proxy.
"""

from __future__ import annotations

import configparser
import math
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping
from urllib.parse import urlsplit

from .credentials.index import Index, valid_index_name
from .credentials.model import MASK, Realm, redact_url, without_userinfo

KeyringProvider = Literal["disabled", "subprocess", "native"]
InterceptPolicy = Literal["auto", "all"]

KEYRING_PROVIDERS = ("disabled", "subprocess", "native")
UV_KEYRING_PROVIDERS = ("disabled", "subprocess")  # what uv itself accepts in UV_KEYRING_PROVIDER
INTERCEPT_POLICIES = ("auto", "all")
NETRC_DEFAULT_SCOPES = ("indexes", "any-host")  # netrc-default: who the `default` entry answers
NETRC_LOOPBACK_SCOPES = ("index-ports", "any-port")  # netrc-loopback: `machine localhost` ports
AUTH_POLICIES = ("auto", "always", "never")
LOG_FORMATS = ("text", "json")


class ConfigError(Exception):
    """A configuration problem the user must fix; the message names file, key and fix."""


@dataclass(frozen=True)
class ClientCertRule:
    """`[[client-cert]]`: a host pattern (`host`, `*.suffix`, `host:port`) and one PEM file
    holding the certificate chain and the key."""

    host: str
    cert: str
    origin: str = "config"


@dataclass
class Settings:
    indexes: list[Index] = field(default_factory=list)
    keyring_provider: KeyringProvider = "disabled"
    # seconds a `keyring` command may take before it is killed (a hanging keyring must not
    # hold requests); raise it for keyrings that prompt (a device-code sign-in)
    keyring_timeout: float = 10.0
    # seconds from the first byte of a request head to its end (proxy/limits.py)
    request_head_timeout: float = 30.0
    allow_insecure_host: list[str] = field(default_factory=list)
    system_certs: bool = False
    ca_bundle: str | None = None
    client_certs: list[ClientCertRule] = field(default_factory=list)
    intercept: InterceptPolicy = "auto"
    # serve options
    host: str = "127.0.0.1"
    port: int = 8899
    log_format: Literal["text", "json"] = "text"
    save_flows: str | None = None
    # the request log's file (None = stderr); `credproxy run` sets it so the command's own
    # output stays readable. Not read from the config file or the environment.
    log_file: str | None = None
    verbose: int = 0
    # where things were read from, for `doctor`; warnings to show once at start-up
    config_files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # the environment the sources read (UV_INDEX_*, NETRC, HF_TOKEN, SSL_*); a copy, so tests
    # and `credproxy run` can pass their own. Not in repr: it holds passwords and tokens.
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)
    # --- additive fields (config branch) ---
    # `user:password` clients must send as Proxy-Authorization; required to bind off loopback
    proxyauth: str | None = field(default=None, repr=False)
    # SSL_CERT_FILE / SSL_CERT_DIR / SSL_CLIENT_CERT as uv reads them (empty = unset); the
    # upstream TLS code applies them
    ssl_cert_file: str | None = None
    ssl_cert_dir: str | None = None
    ssl_client_cert: str | None = None
    # hosts (`host`, `*.suffix`, `host:port`) intercepted even without a credential source
    intercept_hosts: list[str] = field(default_factory=list)
    # things `-v`/doctor may show but that are not worth a warning (ignored file:// indexes...)
    notes: list[str] = field(default_factory=list)
    # the netrc `default` entry answers configured indexes only, or any host (uv's way)
    netrc_default: str = "indexes"
    # a netrc machine entry for a loopback name applies to the ports indexes name, or all
    netrc_loopback: str = "index-ports"
    # `serve --remember`: store credentials a client sent itself that the upstream accepted;
    # never for hosts matching `remember_exclude` (`host`, `*.suffix`, `host:port`)
    remember: bool = False
    remember_exclude: list[str] = field(default_factory=list)
    # uv's native store (the OS keyring under `uv:` service names) in the chain, before a
    # `keyring` command: on with UV_PREVIEW_FEATURES=native-auth (or UV_PREVIEW), as in uv
    native_auth: bool = False


# --- small helpers ---------------------------------------------------------------------------

_BOOL_TRUE = ("y", "yes", "t", "true", "on", "1")
_BOOL_FALSE = ("n", "no", "f", "false", "off", "0")


def parse_boolish(value: str) -> bool | None:
    """clap's BoolishValueParser, which uv uses for UV_SYSTEM_CERTS & co. None = invalid."""
    v = value.strip().lower()
    if v in _BOOL_TRUE:
        return True
    if v in _BOOL_FALSE:
        return False
    return None


def native_auth_enabled(env: Mapping[str, str]) -> bool:
    """uv's switch for its native credential store: `UV_PREVIEW_FEATURES` naming
    `native-auth` (comma-separated), or `UV_PREVIEW` on (every preview feature)."""
    features = {f.strip().lower() for f in (env.get("UV_PREVIEW_FEATURES") or "").split(",")}
    if "native-auth" in features:
        return True
    preview = env.get("UV_PREVIEW")
    return bool(preview) and parse_boolish(preview) is True


def safe_url(value: str) -> str:
    """A URL as it may appear in a message: userinfo masked, never the raw secret."""
    try:
        shown = redact_url(value)
    except ValueError:
        shown = value
    if "@" in shown.replace(MASK + "@", ""):
        # an `@` urlsplit did not take for userinfo (no scheme, a path, `u:p/w@h`): mask all
        # up to the last one rather than guess where a secret ends
        shown = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)?.*@", lambda m: (m.group(1) or "") + MASK + "@", shown)
    return shown


def _quote(value: Any) -> str:
    return '"' + str(value).replace('"', '\\"') + '"'


def _one_of(values: Iterable[str]) -> str:
    return "one of " + ", ".join(_quote(v) for v in values)


_TOML_TYPES = {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
               list: "an array", dict: "a table"}


def _type_name(value: Any) -> str:
    for t, name in _TOML_TYPES.items():
        if type(value) is t:
            return name
    return type(value).__name__


def url_problem(url: str) -> str | None:
    """Why `url` cannot be an index we proxy, or None. Never echoes the userinfo."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
        without_userinfo(url)
    except ValueError as exc:
        return f"a valid URL ({exc})" if "contains invalid UTF-8" in str(exc) else "a valid URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "an http:// or https:// URL"
    if not parts.hostname:
        return "an http:// or https:// URL with a host"
    return None


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def url_scheme(url: str) -> str:
    """The scheme of something that may not parse as a URL at all ("" for a path)."""
    m = _SCHEME.match(url)
    return m.group(1).lower() if m else ""


def _url_key(url: str) -> tuple:
    """Two index URLs are the same index when realm and path (minus a final `/`) agree."""
    return (Realm.of(url), (urlsplit(url).path or "/").rstrip("/"))


_HOST_PATTERN = re.compile(r"^(\*\.)?[A-Za-z0-9_.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$|^\*$")


def valid_host_pattern(pattern: str) -> bool:
    """`host`, `*.suffix`, `host:port`, `[v6]`, `[v6]:port` or `*`."""
    return bool(_HOST_PATTERN.match(pattern))


class _Problems:
    """Collects every mistake in one file so the user fixes them in one go."""

    def __init__(self, where: str):
        self.where = where
        self.items: list[str] = []

    def add(self, key: str, expected: str, value: Any = ..., *, show_value: bool = True) -> None:
        text = f"{key}: expected {expected}"
        if value is not ...:
            if isinstance(value, str) and show_value:
                text += f", got {_quote(value)}"
            else:
                text += f", got {_type_name(value)}"
        self.items.append(text)

    def raise_if_any(self) -> None:
        if not self.items:
            return
        if len(self.items) == 1:
            raise ConfigError(f"{self.where}: {self.items[0]}")
        raise ConfigError(f"{self.where}: {len(self.items)} problems:\n" + "\n".join("  " + i for i in self.items))


def _read_toml(path: Path) -> dict:
    """Parse a TOML file; ConfigError names the file and the line (tomllib's text has it)."""
    try:
        raw = path.read_bytes()
        return tomllib.loads(raw.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        text = str(exc)
        if "(at end of document)" in text:  # tomllib gives no line there: the last one
            last = raw.rstrip(b"\n").count(b"\n") + 1
            text = text.replace("(at end of document)", f"(at end of document, line {last})")
        raise ConfigError(f"{path}: invalid TOML: {text}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None


# --- the credproxy config file ---------------------------------------------------------------

_TOP_KEYS = ("keyring-provider", "keyring-timeout", "request-head-timeout", "allow-insecure-host", "system-certs", "ca-bundle", "intercept",
             "intercept-hosts", "index", "client-cert", "netrc-default", "netrc-loopback")
_INDEX_KEYS = ("name", "url", "authenticate", "username", "publish-url")
_CERT_KEYS = ("host", "cert")


@dataclass
class _Layer:
    """What one layer (flags, environment, config file, an import) contributes. None = unset."""

    indexes: list[Index] = field(default_factory=list)
    keyring_provider: str | None = None
    keyring_timeout: float | None = None
    request_head_timeout: float | None = None
    allow_insecure_host: list[str] = field(default_factory=list)
    system_certs: bool | None = None
    ca_bundle: str | None = None
    intercept: str | None = None
    intercept_hosts: list[str] = field(default_factory=list)
    client_certs: list[ClientCertRule] = field(default_factory=list)
    netrc_default: str | None = None
    netrc_loopback: str | None = None


def _positive_seconds(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def _string_list(p: _Problems, key: str, value: Any, check=None, expected: str = "an array of strings") -> list[str]:
    if not isinstance(value, list):
        p.add(key, expected, value)
        return []
    out = []
    for i, item in enumerate(value, 1):
        if not isinstance(item, str):
            p.add(f"{key}[{i}]", "a string", item)
        elif check is not None and not check(item):
            p.add(f"{key}[{i}]", expected, item)
        else:
            out.append(item)
    return out


def _path_value(value: str, base: Path) -> str:
    """`~` expanded; a relative path is relative to the config file's directory."""
    path = Path(os.path.expanduser(value))
    return str(path if path.is_absolute() else base / path)


def parse_config(data: Mapping[str, Any], path: Path) -> _Layer:
    """Validate a credproxy config document; one ConfigError lists every problem."""
    p = _Problems(str(path))
    layer = _Layer()
    origin = f"config:{path}"
    for key in data:
        if key not in _TOP_KEYS:
            p.add(_quote(key), "a known key (" + ", ".join(_TOP_KEYS) + ")")

    if "keyring-provider" in data:
        v = data["keyring-provider"]
        if v in KEYRING_PROVIDERS:
            layer.keyring_provider = v
        else:
            p.add("keyring-provider", _one_of(KEYRING_PROVIDERS), v)
    if "keyring-timeout" in data:
        v = data["keyring-timeout"]
        if _positive_seconds(v):
            layer.keyring_timeout = float(v)
        else:
            p.add("keyring-timeout", "a positive number of seconds", v)
    if "request-head-timeout" in data:
        v = data["request-head-timeout"]
        if _positive_seconds(v):
            layer.request_head_timeout = float(v)
        else:
            p.add("request-head-timeout", "a positive number of seconds", v)
    if "intercept" in data:
        v = data["intercept"]
        if v in INTERCEPT_POLICIES:
            layer.intercept = v
        else:
            p.add("intercept", _one_of(INTERCEPT_POLICIES), v)
    for key, allowed in (("netrc-default", NETRC_DEFAULT_SCOPES), ("netrc-loopback", NETRC_LOOPBACK_SCOPES)):
        if key in data:
            if data[key] in allowed:
                setattr(layer, key.replace("-", "_"), data[key])
            else:
                p.add(key, _one_of(allowed), data[key])
    if "system-certs" in data:
        v = data["system-certs"]
        if isinstance(v, bool):
            layer.system_certs = v
        else:
            p.add("system-certs", "a boolean (true or false)", v)
    if "ca-bundle" in data:
        v = data["ca-bundle"]
        if isinstance(v, str) and v:
            layer.ca_bundle = _path_value(v, path.parent)
        else:
            p.add("ca-bundle", "a non-empty string (path to a PEM file)", v)
    if "allow-insecure-host" in data:
        layer.allow_insecure_host = _string_list(
            p, "allow-insecure-host", data["allow-insecure-host"],
            check=lambda s: bool(s.strip()) and "@" not in s,
            expected="an array of host names (`host`, `host:port`, `https://host`)")
    if "intercept-hosts" in data:
        layer.intercept_hosts = _string_list(
            p, "intercept-hosts", data["intercept-hosts"], check=valid_host_pattern,
            expected="an array of host patterns (`host`, `*.suffix`, `host:port`)")

    if "index" in data:
        tables = data["index"]
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            p.add("index", "an array of tables ([[index]])", tables)
        else:
            seen_names: dict[str, int] = {}
            for n, table in enumerate(tables, 1):
                index = _parse_index_table(p, f"index[{n}]", table, origin, seen_names, n)
                if index is not None:
                    layer.indexes.append(index)

    if "client-cert" in data:
        tables = data["client-cert"]
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            p.add("client-cert", "an array of tables ([[client-cert]])", tables)
        else:
            for n, table in enumerate(tables, 1):
                key = f"client-cert[{n}]"
                for k in table:
                    if k not in _CERT_KEYS:
                        p.add(f"{key}.{_quote(k)}", "a known key (" + ", ".join(_CERT_KEYS) + ")")
                host, cert = table.get("host"), table.get("cert")
                ok = True
                if not isinstance(host, str) or not valid_host_pattern(host):
                    p.add(f"{key}.host", "a host pattern (`host`, `*.suffix`, `host:port`)",
                          ... if host is None else host)
                    ok = False
                if not isinstance(cert, str) or not cert:
                    p.add(f"{key}.cert", "a non-empty string (path to a PEM file with certificate and key)",
                          ... if cert is None else cert)
                    ok = False
                if ok:
                    layer.client_certs.append(ClientCertRule(host, _path_value(cert, path.parent), origin))
    p.raise_if_any()
    return layer


def _parse_index_table(p: _Problems, key: str, table: dict, origin: str,
                       seen_names: dict[str, int], n: int) -> Index | None:
    ok = True
    for k in table:
        if k not in _INDEX_KEYS:
            p.add(f"{key}.{_quote(k)}", "a known key (" + ", ".join(_INDEX_KEYS) + ")")
            ok = False
    name = table.get("name")
    if name is not None:
        if not isinstance(name, str) or not name.isascii() or not valid_index_name(name):
            p.add(f"{key}.name", "a name of ASCII letters, digits, `.`, `_` or `-`", name)
            ok = False
        elif name in seen_names:
            p.add(f"{key}.name", f"a name not used by another index (index[{seen_names[name]}] has it)", name)
            ok = False
        else:
            seen_names[name] = n
    url = table.get("url")
    if url is None:
        p.add(f"{key}.url", "an http:// or https:// URL (the key is required)")
        ok = False
    elif not isinstance(url, str):
        p.add(f"{key}.url", "an http:// or https:// URL", url)
        ok = False
    elif (why := url_problem(url)) is not None:
        p.add(f"{key}.url", why, safe_url(url))
        ok = False
    auth = table.get("authenticate", "auto")
    if auth not in AUTH_POLICIES:
        p.add(f"{key}.authenticate", _one_of(AUTH_POLICIES), auth)
        ok = False
    username = table.get("username")
    if username is not None and (not isinstance(username, str) or not username):
        p.add(f"{key}.username", "a non-empty string", username, show_value=False)
        ok = False
    publish = table.get("publish-url")
    if publish is not None:
        if not isinstance(publish, str):
            p.add(f"{key}.publish-url", "an http:// or https:// URL", publish)
            ok = False
        elif (why := url_problem(publish)) is not None:
            p.add(f"{key}.publish-url", why, safe_url(publish))
            ok = False
        elif "@" in urlsplit(publish).netloc:
            p.add(f"{key}.publish-url", "a URL without credentials (use UV_INDEX_<NAME>_USERNAME/"
                  "_PASSWORD or `credproxy auth login`)", safe_url(publish))
            ok = False
    if not ok:
        return None
    return Index.from_url(url, name=name, authenticate=auth, username=username,
                          publish_url=publish, origin=origin)


# --- environment -----------------------------------------------------------------------------


def _env(env: Mapping[str, str], name: str) -> str | None:
    """uv (clap) treats an empty variable as unset."""
    value = env.get(name)
    return value if value else None


def parse_index_arg(value: str) -> tuple[str | None, str]:
    """uv's `--index`/UV_INDEX item: `name=url` when the part before the first `=` has no `:`
    (so a URL with `=` in its query stays whole), else a bare URL."""
    name, sep, url = value.partition("=")
    if sep and ":" not in name:
        return name, url
    return None, value


def _env_layer(env: Mapping[str, str], settings: Settings) -> _Layer:
    layer = _Layer()
    problems: list[str] = []

    # uv accepts only disabled|subprocess (`native` makes uv exit 2): the OS keyring has its
    # own switch, CREDPROXY_KEYRING_PROVIDER, which wins
    if (v := _env(env, "CREDPROXY_KEYRING_PROVIDER")) is not None:
        if v in KEYRING_PROVIDERS:
            layer.keyring_provider = v
        else:
            problems.append(f"CREDPROXY_KEYRING_PROVIDER: expected {_one_of(KEYRING_PROVIDERS)}, got {_quote(v)}")
    elif (v := _env(env, "UV_KEYRING_PROVIDER")) is not None:
        if v in UV_KEYRING_PROVIDERS:
            layer.keyring_provider = v
        elif v == "native":
            layer.keyring_provider = v
            settings.warnings.append(
                "UV_KEYRING_PROVIDER=native makes uv fail (uv accepts \"disabled\" or \"subprocess\"): "
                "unset it and set CREDPROXY_KEYRING_PROVIDER=native (uv itself reads the OS keyring with "
                "UV_PREVIEW_FEATURES=native-auth)")
        else:
            problems.append(f"UV_KEYRING_PROVIDER: expected {_one_of(UV_KEYRING_PROVIDERS)}, got {_quote(v)} "
                            "(for the OS keyring: CREDPROXY_KEYRING_PROVIDER=native)")

    if (v := _env(env, "CREDPROXY_KEYRING_TIMEOUT")) is not None:
        try:
            seconds = float(v)
        except ValueError:
            seconds = -1.0
        if _positive_seconds(seconds):
            layer.keyring_timeout = seconds
        else:
            problems.append(f"CREDPROXY_KEYRING_TIMEOUT: expected a positive number of seconds, got {_quote(v)}")

    if (v := _env(env, "CREDPROXY_REQUEST_HEAD_TIMEOUT")) is not None:
        try:
            seconds = float(v)
        except ValueError:
            seconds = -1.0
        if _positive_seconds(seconds):
            layer.request_head_timeout = seconds
        else:
            problems.append(f"CREDPROXY_REQUEST_HEAD_TIMEOUT: expected a positive number of seconds, got {_quote(v)}")

    if (v := _env(env, "UV_INSECURE_HOST")) is not None:
        layer.allow_insecure_host = v.split()

    for var in ("UV_SYSTEM_CERTS", "UV_NATIVE_TLS"):
        if (v := _env(env, var)) is None:
            continue
        b = parse_boolish(v)
        if b is None:
            problems.append(f"{var}: expected a boolean ({', '.join(_BOOL_TRUE)} or "
                            f"{', '.join(_BOOL_FALSE)}), got {_quote(v)}")
            continue
        if var == "UV_NATIVE_TLS":
            settings.warnings.append("UV_NATIVE_TLS is deprecated; use UV_SYSTEM_CERTS instead")
        if layer.system_certs is None:  # UV_SYSTEM_CERTS wins over its deprecated alias
            layer.system_certs = b

    items: list[tuple[str, str]] = []  # (variable, item)
    for var, split in (("UV_INDEX", True), ("UV_DEFAULT_INDEX", False),
                       ("UV_INDEX_URL", False), ("UV_EXTRA_INDEX_URL", True)):
        if (v := _env(env, var)) is not None:
            items += [(var, item) for item in (v.split() if split else [v.strip()])]
    for var, item in items:
        named = var in ("UV_INDEX", "UV_DEFAULT_INDEX")  # the *_INDEX_URL forms take a URL only
        name, url = parse_index_arg(item) if named else (None, item)
        if name is not None and not (name.isascii() and valid_index_name(name)):
            problems.append(f"{var}: expected index names of ASCII letters, digits, `.`, `_` or `-`, "
                            f"got {_quote(name)}")
            continue
        if url_scheme(url) not in ("http", "https"):
            # a local directory or file:// index: nothing for a proxy to authenticate
            settings.notes.append(f"{var}: ignored {safe_url(url)} (not an http(s) index)")
            continue
        if (why := url_problem(url)) is not None:
            problems.append(f"{var}: expected {why}, got {_quote(safe_url(url))}")
            continue
        layer.indexes.append(Index.from_url(url, name=name, origin=f"env:{var}"))

    if problems:
        if len(problems) == 1:
            raise ConfigError(f"environment variable {problems[0]}")
        raise ConfigError("environment variables:\n" + "\n".join("  " + x for x in problems))

    for attr, var in (("ssl_cert_file", "SSL_CERT_FILE"), ("ssl_cert_dir", "SSL_CERT_DIR"),
                      ("ssl_client_cert", "SSL_CLIENT_CERT")):
        if getattr(settings, attr) is None:  # a flag already set it
            setattr(settings, attr, _env(env, var))
    return layer


# --- uv configuration import -----------------------------------------------------------------


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~"))


def uv_user_config_file(env: Mapping[str, str]) -> Path:
    """uv's user-level config: `%APPDATA%\\uv\\uv.toml` on Windows, else
    `$XDG_CONFIG_HOME/uv/uv.toml` (default `~/.config`, macOS included)."""
    if sys.platform == "win32" and env.get("APPDATA"):
        return Path(env["APPDATA"]) / "uv" / "uv.toml"
    base = env.get("XDG_CONFIG_HOME") or str(_home(env) / ".config")
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
        return isinstance(_read_toml(path).get("tool", {}).get("uv"), dict)
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


def uv_config_paths(env: Mapping[str, str], cwd: Path) -> list[Path]:
    """The uv config files uv itself would read, lowest priority first (system, user,
    project). `UV_CONFIG_FILE` replaces discovery; `UV_NO_CONFIG` disables it."""
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
    project = uv_project_config_file(cwd)
    if project:
        out.append(project)
    return out


def _uv_layer(path: Path, settings: Settings) -> _Layer | None:
    """The parts of a uv config file that matter to a proxy. Lenient: uv owns the format, so
    unknown keys are fine; a value we cannot use is skipped with a warning."""
    try:
        data = _read_toml(path)
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
    layer = _Layer()

    def warn(key: str, expected: str, value: Any = ...) -> None:
        got = ""
        if value is not ...:
            got = f", got {_quote(value)}" if isinstance(value, str) else f", got {_type_name(value)}"
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
            warn(f"{key}.authenticate", _one_of(AUTH_POLICIES), auth)
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
                warn(section_prefix + "keyring-provider", _one_of(KEYRING_PROVIDERS), v)
        for key in ("system-certs", "native-tls"):
            if key in section:
                v = section[key]
                if not isinstance(v, bool):
                    warn(section_prefix + key, "a boolean", v)
                elif layer.system_certs is None or key == "system-certs":
                    layer.system_certs = v
    return layer


# --- pip configuration import ----------------------------------------------------------------


def pip_config_paths(env: Mapping[str, str]) -> list[Path]:
    """The files pip reads, lowest priority first: global (`$XDG_CONFIG_DIRS/pip/pip.conf`,
    `/etc/pip.conf`), user (`~/.pip/pip.conf`, then `$XDG_CONFIG_HOME/pip/pip.conf`), site
    (`$VIRTUAL_ENV/pip.conf`), then `PIP_CONFIG_FILE`. `PIP_CONFIG_FILE=/dev/null` (os.devnull)
    means none at all; an existing `PIP_CONFIG_FILE` skips the user files, as in pip."""
    env_file = env.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return []
    home = _home(env)
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


def _pip_layer(paths: list[Path], env: Mapping[str, str], settings: Settings) -> _Layer:
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
    layer = _Layer()
    for key in _PIP_KEYS:
        if _env(env, env_vars[key]) is not None:
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
                settings.warnings.append(f"{origin}: ignored {key}: expected {why}, got {_quote(safe_url(item))}")
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


# --- overrides (command-line flags) ----------------------------------------------------------


def _override_layer(overrides: Mapping[str, Any], settings: Settings) -> _Layer:
    """Flags: keys are Settings field names; None means "not given". List fields are put
    in front of the lower layers' lists; scalars replace."""
    names = {f.name for f in fields(Settings)}
    layer = _Layer()
    problems = _Problems("command line")
    for key, value in overrides.items():
        if key not in names:
            problems.add(f"option {key}", "a setting name (" + ", ".join(sorted(names)) + ")")
            continue
        if value is None:
            continue
        if key == "indexes":
            for item in value:
                if isinstance(item, Index):
                    layer.indexes.append(item)
                    continue
                name, url = parse_index_arg(item)
                if name is not None and not (name.isascii() and valid_index_name(name)):
                    problems.add("--index", "a name of ASCII letters, digits, `.`, `_` or `-`", name)
                elif (why := url_problem(url)) is not None:
                    problems.add("--index", why, safe_url(url))
                else:
                    layer.indexes.append(Index.from_url(url, name=name, origin="flag"))
        elif key == "keyring_provider":
            if value in KEYRING_PROVIDERS:
                layer.keyring_provider = value
            else:
                problems.add("--keyring-provider", _one_of(KEYRING_PROVIDERS), value)
        elif key == "intercept":
            if value in INTERCEPT_POLICIES:
                layer.intercept = value
            else:
                problems.add("--intercept", _one_of(INTERCEPT_POLICIES), value)
        elif key == "log_format" and value not in LOG_FORMATS:
            problems.add("--log-format", _one_of(LOG_FORMATS), value)
        elif key == "system_certs":
            layer.system_certs = bool(value)
        elif key == "ca_bundle":
            layer.ca_bundle = str(value)
        elif key == "allow_insecure_host":
            layer.allow_insecure_host = list(value)
        elif key == "intercept_hosts":
            layer.intercept_hosts = list(value)
        elif key == "client_certs":
            layer.client_certs = list(value)
        elif key in ("config_files", "warnings", "notes"):
            getattr(settings, key).extend(value)
        else:
            setattr(settings, key, value)
    problems.raise_if_any()
    return layer


# --- combining -------------------------------------------------------------------------------

_IMPORT_PREFIXES = ("uv.toml:", "pyproject.toml:", "pip.conf:", "env:PIP_")


def merge_indexes(indexes: Iterable[Index], notes: list[str] | None = None) -> list[Index]:
    """One Index per URL, in first-seen order. The first (highest layer) keeps its fields;
    name, username, publish-url and URL credentials it lacks come from later duplicates."""
    merged: dict[tuple, Index] = {}
    for index in indexes:
        key = _url_key(index.url)
        first = merged.get(key)
        if index.name is not None and any(i.name == index.name for k, i in merged.items() if k != key):
            # UV_INDEX_<NAME>_* must mean one index: the highest layer's keeps the name
            if notes is not None:
                notes.append(f"index name {_quote(index.name)} from {index.origin} is already used by "
                             f"a higher-priority index; {index.url} is kept without it")
            index = replace(index, name=None)
        if first is None:
            merged[key] = index
            continue
        fill = {}
        for attr in ("name", "username", "publish_url", "url_credentials"):
            if getattr(first, attr) is None and getattr(index, attr) is not None:
                if attr == "name" and any(i.name == index.name for i in merged.values()):
                    continue
                fill[attr] = getattr(index, attr)
        if fill:
            merged[key] = replace(first, **fill)
    return list(merged.values())


def derived_index_name(url: str) -> str:
    """A deterministic name for an imported index that has none: its host (and port), with
    characters an index name cannot hold replaced by `-`. UV_INDEX_<NAME>_* then apply."""
    realm = Realm.of(url)
    return re.sub(r"[^A-Za-z0-9._]+", "-", realm.netloc).strip("-") or "index"


def name_imported_indexes(indexes: list[Index]) -> list[Index]:
    used = {i.name for i in indexes if i.name}
    out = []
    for index in indexes:
        if index.name is None and index.origin.startswith(_IMPORT_PREFIXES):
            base = derived_index_name(index.url)
            name, n = base, 2
            while name in used:
                name, n = f"{base}-{n}", n + 1
            used.add(name)
            index = replace(index, name=name)
        out.append(index)
    return out


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --- the entry point -------------------------------------------------------------------------


def load_settings(
    config_file: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    *,
    pip_config_files: Iterable[str | os.PathLike] | None = None,
    uv_config_files: Iterable[str | os.PathLike] | None = None,
) -> Settings:
    """Build Settings from flags (`overrides`, keys = Settings field names, None = unset),
    the environment (`env`, default os.environ), the config file (`config_file`, else
    CREDPROXY_CONFIG, else the platform config dir's credproxy/config.toml when it exists)
    and the user's uv and pip configuration (discovered from `env` and `cwd` unless
    `uv_config_files` / `pip_config_files` are given, lowest priority first)."""
    env = dict(os.environ if env is None else env)
    cwd_path = Path(os.getcwd() if cwd is None else cwd)
    settings = Settings(env=env)
    overrides = dict(overrides or {})

    # Lazily imported: paths imports platformdirs, config must stay cheap to import in tests.
    from . import paths

    flags = _override_layer(overrides, settings)
    env_layer = _env_layer(env, settings)

    layers: list[_Layer] = [flags, env_layer]
    explicit = config_file is not None or bool(env.get("CREDPROXY_CONFIG"))
    path = Path(config_file) if config_file is not None else paths.default_config_file(env)
    path = Path(os.path.expanduser(path)).absolute()
    if path.is_file():
        layers.append(parse_config(_read_toml(path), path))
        settings.config_files.append(str(path))
    elif explicit:
        where = "--config" if config_file is not None else "CREDPROXY_CONFIG"
        raise ConfigError(f"{path}: config file not found (named by {where})")

    uv_paths = [Path(p) for p in uv_config_files] if uv_config_files is not None else uv_config_paths(env, cwd_path)
    if uv_config_files is None and env.get("UV_CONFIG_FILE") and not uv_paths[0].is_file():
        settings.warnings.append(f"UV_CONFIG_FILE names {uv_paths[0]}, which does not exist; "
                                 "no uv configuration imported")
    # highest priority first for combining: project, user, system
    for uv_path in reversed(uv_paths):
        if not uv_path.is_file():
            continue
        layer = _uv_layer(uv_path, settings)
        if layer is not None:
            layers.append(layer)
            settings.config_files.append(str(uv_path))

    pip_paths = [Path(p) for p in pip_config_files] if pip_config_files is not None else pip_config_paths(env)
    layers.append(_pip_layer(pip_paths, env, settings))

    def first(attr: str, default):
        for layer in layers:
            value = getattr(layer, attr)
            if value is not None:
                return value
        return default

    settings.keyring_provider = first("keyring_provider", settings.keyring_provider)
    settings.native_auth = native_auth_enabled(env)
    settings.keyring_timeout = first("keyring_timeout", settings.keyring_timeout)
    settings.request_head_timeout = first("request_head_timeout", settings.request_head_timeout)
    settings.system_certs = first("system_certs", settings.system_certs)
    settings.ca_bundle = first("ca_bundle", settings.ca_bundle)
    settings.intercept = first("intercept", settings.intercept)
    settings.netrc_default = first("netrc_default", settings.netrc_default)
    settings.netrc_loopback = first("netrc_loopback", settings.netrc_loopback)
    settings.allow_insecure_host = _dedupe(h for layer in layers for h in layer.allow_insecure_host)
    settings.intercept_hosts = _dedupe(h for layer in layers for h in layer.intercept_hosts)
    settings.client_certs = [c for layer in layers for c in layer.client_certs]
    settings.indexes = name_imported_indexes(
        merge_indexes((i for layer in layers for i in layer.indexes), settings.notes))

    # The bundle `credproxy env` exports holds the proxy's own CA: trusting it upstream would
    # let the proxy vouch for itself, so an SSL_CERT_FILE pointing there is not upstream trust.
    if settings.ssl_cert_file and _same_file(settings.ssl_cert_file, paths.bundle_path(env)):
        settings.notes.append("SSL_CERT_FILE is credproxy's own client bundle; not used for upstream trust")
        settings.ssl_cert_file = None
    return settings


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)
