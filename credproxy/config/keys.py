"""The config file's keys as tables: one declaration per key (as uv's uv-settings crate declares
each option once), which the validation (file.py, and env.py and overrides.py for the keys they
share), the "did you mean" suggestions, the error messages and the docs check
(tests/unit/test_config_keys.py against docs/configuration.md) are all driven from.

A declaration says: the key's name, its kind (what it accepts, what an error says was expected,
how the docs name its type), the Settings/Layer field it sets, the environment variable that
sets it too, and whether it is secret. A secret key's value is never shown in a message (its
type is: `got a string`); this table is the one place that says which keys are secret.

Order matters and is part of the behaviour: it is the order of the `known:` list in an
unknown-key error, and the order in which one file's problems are listed."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from ..credentials.index import Index, valid_index_name
from .model import (AUTH_POLICIES, INTERCEPT_POLICIES, KEYRING_PROVIDERS, NETRC_DEFAULT_SCOPES,
                    NETRC_LOOPBACK_SCOPES, ClientCertRule, Settings)
from .values import (BOOL_FALSE, BOOL_TRUE, Problems, known_key, one_of, parse_boolish, positive_seconds, quote,
                     safe_url, url_problem, valid_host_pattern)


class _Invalid:
    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()  # what a kind returns for a value it refused (after saying why)
_MISSING: Any = object()


@dataclass(frozen=True)
class Spot:
    """Where a value sits (`index[2].url`) in which file, and where its problems go. `secret`
    comes from the key's declaration: a secret value is reported by its type only."""

    p: Problems
    key: str
    path: Path
    secret: bool = False
    n: int = 0  # the table's number in its array (`index[n]`), for checks across tables
    seen: dict | None = None  # shared by the tables of one array (index names in use)

    def bad(self, expected: str, value: Any = ...) -> Any:
        self.p.add(self.key, expected, value, show_value=not self.secret)
        return INVALID

    def at(self, suffix: str, **kw) -> "Spot":
        return replace(self, key=self.key + suffix, **kw)

    @property
    def origin(self) -> str:
        return f"config:{self.path}"


def path_value(value: str, base: Path) -> str:
    """`~` expanded; a relative path is relative to the config file's directory."""
    path = Path(os.path.expanduser(value))
    return str(path if path.is_absolute() else base / path)


# --- kinds: what a key accepts -------------------------------------------------------------
# Each kind: `parse(spot, value)` -> the value for the Layer, or INVALID after spot.bad(...);
# `expected` (the error's words); `doc_type` (docs/configuration.md's type column). Kinds a
# variable can set also have `env_expected` and `parse_env(text)` -> value or INVALID.
# `from_flag(spot, value)`: a command-line flag's value (click has typed it), for the Layer.


@dataclass(frozen=True)
class Choice:
    values: tuple[str, ...]

    @property
    def expected(self) -> str:
        return one_of(self.values)

    env_expected = expected

    @property
    def doc_type(self) -> str:
        return r" \| ".join(f'`"{v}"`' for v in self.values)

    def parse(self, spot: Spot, value: Any) -> Any:
        return value if value in self.values else spot.bad(self.expected, value)

    def parse_env(self, text: str) -> Any:
        return text if text in self.values else INVALID

    from_flag = parse


@dataclass(frozen=True)
class Seconds:
    expected: str = "a positive number of seconds"
    env_expected: str = "a positive number of seconds"
    doc_type: str = "positive number (seconds)"

    def parse(self, spot: Spot, value: Any) -> Any:
        return float(value) if positive_seconds(value) else spot.bad(self.expected, value)

    def parse_env(self, text: str) -> Any:
        try:
            seconds = float(text)
        except ValueError:
            return INVALID
        return seconds if positive_seconds(seconds) else INVALID

    from_flag = parse


@dataclass(frozen=True)
class Boolean:
    expected: str = "a boolean (true or false)"
    env_expected: str = f"a boolean ({', '.join(BOOL_TRUE)} or {', '.join(BOOL_FALSE)})"  # clap's spellings
    doc_type: str = "boolean"

    def parse(self, spot: Spot, value: Any) -> Any:
        return value if isinstance(value, bool) else spot.bad(self.expected, value)

    def parse_env(self, text: str) -> Any:
        b = parse_boolish(text)
        return INVALID if b is None else b

    def from_flag(self, spot: Spot, value: Any) -> Any:
        return bool(value)


@dataclass(frozen=True)
class Text:
    """A string `check` accepts."""

    expected: str
    doc_type: str
    check: Callable[[str], bool] = bool

    def parse(self, spot: Spot, value: Any) -> Any:
        return value if isinstance(value, str) and self.check(value) else spot.bad(self.expected, value)

    def from_flag(self, spot: Spot, value: Any) -> Any:
        return str(value)


@dataclass(frozen=True)
class FilePath(Text):
    """A non-empty path, `~` expanded, relative to the config file's directory."""

    doc_type: str = "string (path)"

    def parse(self, spot: Spot, value: Any) -> Any:
        value = super().parse(spot, value)
        return value if value is INVALID else path_value(value, spot.path.parent)


@dataclass(frozen=True)
class StringList:
    """An array of strings `check` accepts; each bad item is its own problem (`key[i]`). Set
    from the environment as one space-separated variable."""

    expected: str
    doc_type: str
    check: Callable[[str], bool]

    def parse(self, spot: Spot, value: Any) -> Any:
        if not isinstance(value, list):
            return spot.bad(self.expected, value)
        out = []
        for i, item in enumerate(value, 1):
            if not isinstance(item, str):
                spot.at(f"[{i}]").bad("a string", item)
            elif not self.check(item):
                spot.at(f"[{i}]").bad(self.expected, item)
            else:
                out.append(item)
        return out

    def parse_env(self, text: str) -> Any:
        return text.split()

    def from_flag(self, spot: Spot, value: Any) -> Any:
        return list(value)


@dataclass(frozen=True)
class Url:
    """An http(s) URL with a host, shown with its userinfo masked; `no_userinfo` refuses one
    that carries credentials (they belong in a credential source)."""

    doc_type: str
    no_userinfo: bool = False
    expected: str = "an http:// or https:// URL"

    def parse(self, spot: Spot, value: Any) -> Any:
        if not isinstance(value, str):
            return spot.bad(self.expected, value)
        if (why := url_problem(value)) is not None:
            return spot.bad(why, safe_url(value))
        if self.no_userinfo and "@" in urlsplit(value).netloc:
            return spot.bad("a URL without credentials (use UV_INDEX_<NAME>_USERNAME/_PASSWORD or "
                            "`credproxy auth login`)", safe_url(value))
        return value


@dataclass(frozen=True)
class ProxyUrl:
    expected: str = ('an http:// or https:// proxy URL, a PAC file (pac+https://…, pac+http://…, '
                     'pac+file:///…), or "none"')
    doc_type: str = ("string: `http://[user:password@]host:port`, `https://…`, a PAC file `pac+https://…`, "
                     "`pac+http://…`, `pac+file:///…`, or `\"none\"`")

    def parse(self, spot: Spot, value: Any) -> Any:
        if isinstance(value, str):
            v = value.strip().lower()
            if (v in ("none", "direct") or v.startswith(("pac+http://", "pac+https://", "pac+file://"))
                    or url_problem(value if "://" in value else "http://" + value) is None):
                return (value, f"upstream-proxy in {spot.path}")
        return spot.bad(self.expected, safe_url(value) if isinstance(value, str) else value)

    def from_flag(self, spot: Spot, value: Any) -> Any:
        none = str(value).strip().lower() in ("none", "direct")
        return (str(value), "--no-upstream-proxy" if none else "--upstream-proxy")


@dataclass(frozen=True)
class Argv:
    expected: str = ("a non-empty array of strings (the program and its arguments; no shell), "
                     "e.g. [\"aws\", \"codeartifact\", \"get-authorization-token\", ...]")
    doc_type: str = "non-empty array of strings"

    def parse(self, spot: Spot, value: Any) -> Any:
        if (isinstance(value, list) and value and all(isinstance(a, str) for a in value) and value[0]):
            return tuple(value)
        return spot.bad(self.expected, value)


@dataclass(frozen=True)
class IndexName(Text):
    """An index name, unique among the file's indexes (UV_INDEX_<NAME>_* must mean one)."""

    def parse(self, spot: Spot, value: Any) -> Any:
        if not (isinstance(value, str) and value.isascii() and valid_index_name(value)):
            return spot.bad(self.expected, value)
        if value in spot.seen:
            return spot.bad(f"a name not used by another index (index[{spot.seen[value]}] has it)", value)
        spot.seen[value] = spot.n
        return value


@dataclass(frozen=True)
class Tables:
    """An array of tables (`[[index]]`) with their own keys; `build` makes one item of a table
    whose values are all valid (only the keys the table has are passed)."""

    keys: tuple["Key", ...]
    build: Callable[[Spot, dict[str, Any]], Any]
    doc_type: str = "array of tables"

    def parse(self, spot: Spot, value: Any) -> Any:
        if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
            return spot.bad(f"an array of tables ([[{spot.key}]])", value)
        seen: dict = {}
        out = []
        for n, table in enumerate(value, 1):
            item = spot.at(f"[{n}]", n=n, seen=seen)
            values = parse_table(item, table, self.keys, prefix=".")
            if values is not None:
                out.append(self.build(item, values))
        return out

    def from_flag(self, spot: Spot, value: Any) -> Any:
        return list(value)  # already built (ClientCertRule)


# --- declarations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    name: str  # as written in the file
    kind: Any
    attr: str  # the Layer/Settings field (top level) or the built item's field (tables)
    env: str | None = None  # the variable that sets it too (env.py), as the same kind parses it
    env_alias: str | None = None  # a deprecated variable for the same (env wins over it; a warning)
    secret: bool = False  # its value is never shown in a message
    required: bool | str = False  # in a table: must be set (a str: what the error then expects)
    together_with: str | None = None  # in a table: only valid when this other key is set
    doc_default: str | None = None  # the docs' default where no Settings field gives it

    @property
    def doc_type(self) -> str:
        return self.kind.doc_type

    @property
    def default(self) -> Any:
        """The default as Settings declares it (None where the key has no Settings field)."""
        for f in fields(Settings):
            if f.name == self.attr:
                return f.default_factory() if callable(f.default_factory) else f.default
        return None


def parse_table(spot: Spot, data: Any, keys: tuple[Key, ...], prefix: str = "") -> dict[str, Any] | None:
    """Validate one table against its declarations: unknown keys (with a suggestion), then each
    key in declaration order. The valid values by name, or None when any key was refused."""
    names = [k.name for k in keys]
    ok = True
    for name in data:
        if name not in names:
            spot.p.add(f"{spot.key}{prefix}{quote(name)}", known_key(name, names))
            ok = False
    values: dict[str, Any] = {}
    for key in keys:
        at = spot.at(prefix + key.name if prefix else key.name, secret=key.secret)
        value = data.get(key.name, _MISSING)
        if value is _MISSING:
            if key.required:
                at.bad(key.kind.expected if key.required is True else key.required)
                ok = False
            continue
        value = key.kind.parse(at, value)
        if value is not INVALID and key.together_with is not None and key.together_with not in data:
            value = at.bad(f"to be set together with {key.together_with}", data[key.name])
        if value is INVALID:
            ok = False
        else:
            values[key.name] = value
    return values if ok else None


def _build_index(spot: Spot, values: dict[str, Any]) -> Index:
    return Index.from_url(values["url"], origin=spot.origin,
                          **{k.attr: values[k.name] for k in INDEX_KEYS if k.name in values and k.name != "url"})


def _build_client_cert(spot: Spot, values: dict[str, Any]) -> ClientCertRule:
    return ClientCertRule(values["host"], values["cert"], spot.origin)


HOST_PATTERNS = "(`host`, `*.suffix`, `host:port`)"

INDEX_KEYS: tuple[Key, ...] = (
    Key("name", IndexName("a name of ASCII letters, digits, `.`, `_` or `-`",
                          "string of ASCII letters, digits, `.`, `_`, `-`"), "name"),
    Key("url", Url("string, `http://` or `https://`"), "url",
        required="an http:// or https:// URL (the key is required)"),
    Key("authenticate", Choice(AUTH_POLICIES), "authenticate", doc_default='"auto"'),
    Key("username", Text("a non-empty string", "non-empty string"), "username", secret=True),
    Key("publish-url", Url("string, `http(s)://`, no credentials", no_userinfo=True), "publish_url"),
    Key("token-command", Argv(), "token_command", secret=True),
    Key("token-lifetime", Seconds(doc_type="positive number (seconds), with `token-command`"), "token_lifetime",
        together_with="token-command", doc_default="600"),
)

CLIENT_CERT_KEYS: tuple[Key, ...] = (
    Key("host", Text(f"a host pattern {HOST_PATTERNS}",
                     "`host`, `*.suffix`, `host:port`, `[v6]`, `[v6]:port`, or `*`", valid_host_pattern), "host",
        required=True),
    Key("cert", FilePath("a non-empty string (path to a PEM file with certificate and key)"), "cert", required=True),
)

TOP_KEYS: tuple[Key, ...] = (
    Key("keyring-provider", Choice(KEYRING_PROVIDERS), "keyring_provider", env="CREDPROXY_KEYRING_PROVIDER"),
    Key("keyring-timeout", Seconds(), "keyring_timeout", env="CREDPROXY_KEYRING_TIMEOUT"),
    Key("request-head-timeout", Seconds(), "request_head_timeout", env="CREDPROXY_REQUEST_HEAD_TIMEOUT"),
    Key("allow-insecure-host", StringList("an array of host names (`host`, `host:port`, `https://host`)",
                                          "array of strings", lambda s: bool(s.strip()) and "@" not in s),
        "allow_insecure_host", env="UV_INSECURE_HOST"),
    Key("system-certs", Boolean(), "system_certs", env="UV_SYSTEM_CERTS", env_alias="UV_NATIVE_TLS"),
    Key("ca-bundle", FilePath("a non-empty string (path to a PEM file)"), "ca_bundle"),
    Key("intercept", Choice(INTERCEPT_POLICIES), "intercept"),
    Key("intercept-hosts", StringList(f"an array of host patterns {HOST_PATTERNS}", "array of host patterns",
                                      valid_host_pattern), "intercept_hosts"),
    Key("index", Tables(INDEX_KEYS, _build_index), "indexes"),
    Key("client-cert", Tables(CLIENT_CERT_KEYS, _build_client_cert), "client_certs"),
    Key("netrc-default", Choice(NETRC_DEFAULT_SCOPES), "netrc_default"),
    Key("netrc-loopback", Choice(NETRC_LOOPBACK_SCOPES), "netrc_loopback"),
    Key("project", FilePath("a non-empty string (a project directory whose uv settings to import)"), "project"),
    Key("upstream-proxy", ProxyUrl(), "upstream_proxy"),
    Key("upstream-proxy-connect-timeout", Seconds(), "upstream_proxy_connect_timeout",
        env="CREDPROXY_UPSTREAM_PROXY_CONNECT_TIMEOUT"),
    Key("git-credential-hosts", StringList(f"an array of host patterns {HOST_PATTERNS}", "array of host patterns",
                                           valid_host_pattern), "git_credential_hosts"),
)

# every table of the file, by the name its docs section carries (`` ### `[[index]]` ``)
TABLES: dict[str, tuple[Key, ...]] = {"": TOP_KEYS, "index": INDEX_KEYS, "client-cert": CLIENT_CERT_KEYS}


def key_for(attr: str) -> Key | None:
    """The top-level declaration that sets a Settings field (flags name options by field)."""
    return next((k for k in TOP_KEYS if k.attr == attr), None)
