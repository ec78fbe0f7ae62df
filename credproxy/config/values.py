"""Small shared pieces: value parsers and checks, how a value is quoted in a message (never a
secret), the per-file problem collector, and the TOML reader."""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from ..credentials.model import MASK, Realm, redact_url, without_userinfo
from .model import ConfigError

BOOL_TRUE = ("y", "yes", "t", "true", "on", "1")
BOOL_FALSE = ("n", "no", "f", "false", "off", "0")


def native_auth_enabled(env) -> bool:
    """uv's switch for its native credential store: `UV_PREVIEW_FEATURES` naming
    `native-auth` (comma-separated), or `UV_PREVIEW` on (every preview feature)."""
    features = {f.strip().lower() for f in (env.get("UV_PREVIEW_FEATURES") or "").split(",")}
    if "native-auth" in features:
        return True
    preview = env.get("UV_PREVIEW")
    return bool(preview) and parse_boolish(preview) is True


def parse_boolish(value: str) -> bool | None:
    """clap's BoolishValueParser, which uv uses for UV_SYSTEM_CERTS & co. None = invalid."""
    v = value.strip().lower()
    if v in BOOL_TRUE:
        return True
    if v in BOOL_FALSE:
        return False
    return None


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


def shown_value(value: Any) -> str:
    """A value as a message may show it: anything that may hold userinfo (`@`) or is a URL
    goes through safe_url (userinfo and known token parameters masked)."""
    text = str(value)
    return safe_url(text) if "@" in text or "://" in text else text


def quote(value: Any) -> str:
    """A value in a message, in double quotes, masked (shown_value): every value a
    ConfigError, warning or note names goes through here."""
    return '"' + shown_value(value).replace('"', '\\"') + '"'


def known_key(key: Any, known: Iterable[str]) -> str:
    """What an unknown key should have been: `a known key: did you mean "x"? (known: ...)`,
    the suggestion from difflib (after `_` -> `-` and lower-casing, as people mistype TOML
    keys), the list always."""
    known = list(known)
    text = str(key).lower().replace("_", "-")
    close = [k for k in known if k == text] or difflib.get_close_matches(text, known, n=1, cutoff=0.6)
    hint = f": did you mean {quote(close[0])}?" if close else ""
    return f"a known key{hint} (known: {', '.join(known)})"


def one_of(values: Iterable[str]) -> str:
    return "one of " + ", ".join(quote(v) for v in values)


_TOML_TYPES = {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
               list: "an array", dict: "a table"}


def type_name(value: Any) -> str:
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


def url_key(url: str) -> tuple:
    """Two index URLs are the same index when realm and path (minus a final `/`) agree."""
    return (Realm.of(url), (urlsplit(url).path or "/").rstrip("/"))


_HOST_PATTERN = re.compile(r"^(\*\.)?[A-Za-z0-9_.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$|^\*$")


def valid_host_pattern(pattern: str) -> bool:
    """`host`, `*.suffix`, `host:port`, `[v6]`, `[v6]:port` or `*`."""
    return bool(_HOST_PATTERN.match(pattern))


class Problems:
    """Collects every mistake in one file so the user fixes them in one go."""

    def __init__(self, where: str):
        self.where = where
        self.items: list[str] = []

    def add(self, key: str, expected: str, value: Any = ..., *, show_value: bool = True) -> None:
        text = f"{key}: expected {expected}"
        if value is not ...:
            if isinstance(value, str) and show_value:
                text += f", got {quote(value)}"
            else:
                text += f", got {type_name(value)}"
        self.items.append(text)

    def raise_if_any(self) -> None:
        if not self.items:
            return
        if len(self.items) == 1:
            raise ConfigError(f"{self.where}: {self.items[0]}")
        raise ConfigError(f"{self.where}: {len(self.items)} problems:\n" + "\n".join("  " + i for i in self.items))


def read_toml(path: Path) -> dict:
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



def positive_seconds(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)



def env_value(env: Mapping[str, str], name: str) -> str | None:
    """uv (clap) treats an empty variable as unset."""
    value = env.get(name)
    return value if value else None



def home_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~"))

