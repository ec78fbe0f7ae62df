"""The plaintext credential store: a uv-compatible `credentials.toml` (uv §9).

```toml
[[credential]]
service = "https://example.com/"
username = "alice"
scheme = "basic"          # "basic" (default) | "bearer"
password = "s3cret"       # basic only; bearer entries carry `token` and no username
```

Real uv reads what we write and we read what uv writes. Writes take an exclusive `fcntl`
lock on the sibling `credentials.toml.lock` (uv's lock file), re-read the file under the lock,
then replace it atomically (temp file in the same directory, fsync, os.replace), so
concurrent `credproxy auth login` processes lose no entry and a killed writer leaves the old
or the new file, never half of one. The directory is 0700 and the file 0600.

A file that does not parse is reported (StoreError naming the file and line) and never
overwritten. No message, exception or repr here contains a password or token.

Imports nothing from the rest of credproxy beyond the core (credproxy.paths is not used so the
core stays independent; legacy_store_path mirrors its data dir).
"""

from __future__ import annotations

import errno
import functools
import fcntl
import os
import re
import tempfile
import time
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping
from urllib.parse import urlsplit, urlunsplit

from .model import MASK, Credentials, Realm, looks_like_token, path_under, url_path

FILE_NAME = "credentials.toml"
LOCK_SUFFIX = ".lock"
#: how long a reader waits for a writer's lock before reading anyway (writes are atomic, so
#: reading without the lock still sees a whole file)
READ_LOCK_TIMEOUT = 1.0
#: how long a writer waits for the lock (held by another credproxy or uv) before giving up
WRITE_LOCK_TIMEOUT = 30.0


class StoreError(Exception):
    """A store that cannot be read or written, or an ambiguous lookup. Never holds a secret."""


# --- locations ------------------------------------------------------------------------------


def default_store_path(env: Mapping[str, str] | None = None) -> Path:
    """The one store in use, shared with uv: `$CREDPROXY_CREDENTIALS_DIR` (the override), else
    uv's own (`$UV_CREDENTIALS_DIR`, else uv's default directory), so `uv auth login` and
    `credproxy auth login` write the file both read."""
    env = os.environ if env is None else env
    if env.get("CREDPROXY_CREDENTIALS_DIR"):
        return Path(env["CREDPROXY_CREDENTIALS_DIR"]) / FILE_NAME
    return uv_store_path(env)


def legacy_store_path(env: Mapping[str, str] | None = None) -> Path:
    """Where credproxy kept its own store before it shared uv's: `$CREDPROXY_DATA_DIR`, else
    the platform user data dir (credproxy.paths.data_dir()). Still read; its entries move to
    the store in use on the next `auth login`/`logout`."""
    env = os.environ if env is None else env
    if env.get("CREDPROXY_DATA_DIR"):
        return Path(env["CREDPROXY_DATA_DIR"]) / FILE_NAME
    import platformdirs  # only needed for the default location

    return Path(platformdirs.user_data_dir("credproxy", appauthor=False)) / FILE_NAME


@dataclass
class Moved:
    """What move_legacy_entries did: `added` entries went into the target; `kept` are old
    entries whose URL and username the target already has with another secret. Those stay in
    the old file (the target's entry is the one used) for the user to look at: dropping them
    would lose a password nobody may have written down."""

    added: int = 0
    kept: list["StoreEntry"] = field(default_factory=list)


def move_legacy_entries(legacy: "Store", target: "Store") -> Moved:
    """Move the entries of the old store into `target` (entries already in `target` win),
    then remove the old file, or leave in it only the entries that differ from the target's
    (Moved.kept). Nothing is removed unless the target was written; a legacy file that does
    not parse raises StoreError (kept)."""
    if os.path.abspath(legacy.path) == os.path.abspath(target.path) or not legacy.path.exists():
        return Moved()
    old = legacy.read()
    moved = Moved()

    def change(entries: list[StoreEntry]) -> list[StoreEntry]:
        have = {e.key: e for e in entries}
        new = [e for e in old if e.key not in have]
        moved.added = len(new)
        moved.kept = [e for e in old if e.key in have and (e.scheme, e.secret) != (have[e.key].scheme, have[e.key].secret)]
        return entries + new

    target.modify(change, write_if_unchanged=False)
    if moved.kept:
        keys = {e.key for e in moved.kept}
        legacy.modify(lambda entries: [e for e in entries if e.key in keys])
    else:
        _unlink_quietly(str(legacy.path))
    return moved


def uv_store_path(env: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """Where uv keeps its plaintext store (uv §9): `$UV_CREDENTIALS_DIR`, else
    `<uv data dir>/credentials/credentials.toml`."""
    env = os.environ if env is None else env
    platform = platform or _platform()
    if env.get("UV_CREDENTIALS_DIR"):
        return Path(env["UV_CREDENTIALS_DIR"]) / FILE_NAME
    home = env.get("HOME") or os.path.expanduser("~")
    if platform == "windows":
        appdata = env.get("APPDATA") or os.path.join(home, "AppData", "Roaming")
        return Path(appdata) / "uv" / "data" / "credentials" / FILE_NAME
    if platform == "macos":
        legacy = Path(home) / "Library" / "Application Support" / "uv"
        if legacy.is_dir():
            return legacy / "credentials" / FILE_NAME
    xdg = env.get("XDG_DATA_HOME")
    # XDG says a relative XDG_DATA_HOME is invalid and ignored
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path(home) / ".local" / "share"
    return base / "uv" / "credentials" / FILE_NAME


def _platform() -> str:
    import sys

    if sys.platform.startswith("win"):
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    return "unix"


# --- entries --------------------------------------------------------------------------------


def normalize_service(url: str) -> str:
    """The service URL as uv keys it (the `url` crate's serialisation): scheme and host lower
    case, default port dropped, an empty path becomes `/`. Raises StoreError if not absolute."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if not scheme or not parts.netloc or not parts.hostname:
        raise StoreError(f"service is not an absolute URL: {_display_service(url)}")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        raise StoreError(f"invalid port in service URL: {_display_service(url)}") from None
    netloc = host if port is None or port == _default_port(scheme) else f"{host}:{port}"
    if at:
        netloc = f"{userinfo}@{netloc}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def _default_port(scheme: str) -> int | None:
    return {"http": 80, "https": 443}.get(scheme)


def _display_service(url: str) -> str:
    """A service URL for messages: any userinfo in it is masked (uv 0.13.9 may write one)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit((parts.scheme, f"{MASK}@{parts.netloc.rpartition('@')[2]}", parts.path, parts.query, ""))


@dataclass(frozen=True)
class StoreEntry:
    """One `[[credential]]` table. Basic entries have a username (password optional);
    bearer entries have a token and no username."""

    service: str
    username: str | None
    scheme: str = "basic"
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    @classmethod
    def basic(cls, service: str, username: str, password: str | None) -> "StoreEntry":
        return cls(normalize_service(service), username, "basic", password, None)

    @classmethod
    def bearer(cls, service: str, token: str) -> "StoreEntry":
        return cls(normalize_service(service), None, "bearer", None, token)

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.service, self.username)

    @property
    def secret(self) -> str | None:
        return self.token if self.scheme == "bearer" else self.password

    @property
    def credentials(self) -> Credentials:
        if self.scheme == "bearer":
            return Credentials.bearer(self.token or "")
        return Credentials.basic(self.username, self.password)

    @property
    def display(self) -> str:
        """`alice@https://h/` as uv prints it (no `user@` for `__token__` or bearer); a
        token-shaped username (GitHub's `TOKEN:x-oauth-basic`) shows as `****@`."""
        service = _display_service(self.service)
        if self.username and self.username != "__token__":
            shown = MASK if looks_like_token(self.username) else self.username
            return f"{shown}@{service}"
        return service

    def __repr__(self) -> str:
        secret = MASK if self.secret is not None else None
        return (
            f"StoreEntry(service={_display_service(self.service)!r}, username={self.username!r}, "
            f"scheme={self.scheme!r}, secret={secret!r})"
        )

    __str__ = __repr__


# --- TOML ------------------------------------------------------------------------------------

_LINE_RE = re.compile(r"\s*\(at line (\d+), column \d+\)\s*$")


def parse(text: str, path: str | os.PathLike = FILE_NAME) -> list[StoreEntry]:
    """Entries of a credentials.toml text, validated as uv validates them (any invalid entry
    fails the whole file, like uv). Unknown keys are ignored, as in uv 0.13.9."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib's messages name keys and single characters, never whole values
        message = str(e)
        m = _LINE_RE.search(message)
        where = f" (line {m.group(1)})" if m else ""
        reason = _LINE_RE.sub("", message)
        raise StoreError(f"cannot parse credentials file {path}{where}: {reason}") from None
    tables = data.get("credential", [])
    if not isinstance(tables, list):
        raise StoreError(f"invalid credentials file {path}: `credential` must be an array of tables ([[credential]])")
    entries = []
    for number, table in enumerate(tables, 1):
        entries.append(_entry(table, f"{path}: [[credential]] #{number}"))
    return entries


def _entry(table: object, where: str) -> StoreEntry:
    if not isinstance(table, dict):
        raise StoreError(f"invalid credentials file {where}: not a table")
    for key in ("service", "username", "scheme", "password", "token"):
        if key in table and not isinstance(table[key], str):
            raise StoreError(f"invalid credentials file {where}: `{key}` must be a string")
    if "service" not in table:
        raise StoreError(f"invalid credentials file {where}: `service` is required")
    service = normalize_service_for_file(table["service"], where)
    scheme = table.get("scheme", "basic")
    username, password, token = table.get("username"), table.get("password"), table.get("token")
    if scheme == "basic":
        if username is None:
            raise StoreError(f"invalid credentials file {where}: `username` is required with `scheme = basic`")
        if token is not None:
            raise StoreError(f"invalid credentials file {where}: `token` cannot be provided with `scheme = basic`")
        return StoreEntry(service, username or None, "basic", password, None)
    if scheme == "bearer":
        if token is None:
            raise StoreError(f"invalid credentials file {where}: `token` is required with `scheme = bearer`")
        if username is not None or password is not None:
            raise StoreError(
                f"invalid credentials file {where}: `username`/`password` cannot be provided with `scheme = bearer`"
            )
        return StoreEntry(service, None, "bearer", None, token)
    raise StoreError(f"invalid credentials file {where}: unknown scheme {scheme!r} (expected basic or bearer)")


def normalize_service_for_file(service: str, where: str) -> str:
    try:
        return normalize_service(service)
    except StoreError as e:
        raise StoreError(f"invalid credentials file {where}: {e}") from None


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f\x7f]')


def _toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""

    def escape(m: re.Match[str]) -> str:
        ch = m.group()
        return _ESCAPES.get(ch) or f"\\u{ord(ch):04X}"

    return '"' + _NEEDS_ESCAPE.sub(escape, value) + '"'


def dumps(entries: list[StoreEntry]) -> str:
    """The file text, in the layout uv writes (service, username, scheme, password|token)."""
    blocks = []
    for e in entries:
        lines = ["[[credential]]", f"service = {_toml_string(e.service)}"]
        if e.scheme == "bearer":
            lines.append('scheme = "bearer"')
            lines.append(f"token = {_toml_string(e.token or '')}")
        else:
            lines.append(f"username = {_toml_string(e.username or '')}")
            lines.append('scheme = "basic"')
            if e.password is not None:
                lines.append(f"password = {_toml_string(e.password)}")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


# --- the store --------------------------------------------------------------------------------


class Store:
    """One credentials.toml. Reads never create anything (uv's store is read-only for us);
    writes create the directory (0700) and file (0600)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + LOCK_SUFFIX)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # --- reading ---------------------------------------------------------------------------

    def read(self) -> list[StoreEntry]:
        """All entries; [] when the file does not exist. StoreError if it is unreadable."""
        with self._shared_lock():
            return self._read_unlocked()

    def _read_unlocked(self) -> list[StoreEntry]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise StoreError(f"cannot read credentials file {self.path}: {e.strerror or type(e).__name__}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise StoreError(f"cannot parse credentials file {self.path}: not valid UTF-8") from None
        return parse(text, self.path)

    def lookup(self, url: str, username: str | None = None) -> StoreEntry | None:
        return find(self.read(), url, username)

    def get(self, service: str, username: str | None) -> StoreEntry | None:
        """The entry stored under exactly (service, username)."""
        key = (normalize_service(service), username)
        return next((e for e in self.read() if e.key == key), None)

    # --- writing ---------------------------------------------------------------------------

    def add(self, entry: StoreEntry) -> None:
        """Store `entry`, replacing the one with the same (service, username)."""

        def change(entries: list[StoreEntry]) -> list[StoreEntry]:
            kept = [e for e in entries if e.key != entry.key]
            return kept + [entry]

        self.modify(change)

    def remove(self, service: str, username: str | None) -> bool:
        """Remove exactly (service, username); False when there was no such entry."""
        key = (normalize_service(service), username)
        removed = False

        def change(entries: list[StoreEntry]) -> list[StoreEntry]:
            nonlocal removed
            kept = [e for e in entries if e.key != key]
            removed = len(kept) != len(entries)
            return kept

        self.modify(change, write_if_unchanged=False)
        return removed

    def modify(self, change: Callable[[list[StoreEntry]], list[StoreEntry]], write_if_unchanged: bool = True) -> None:
        """Read under the exclusive lock, apply `change`, write atomically. A file that does not
        parse raises StoreError before anything is written."""
        self._ensure_dir()
        with self._exclusive_lock():
            self._remove_stale_temp_files()
            before = self._read_unlocked()
            after = change(list(before))
            if after == before and not write_if_unchanged:
                return
            self._write_atomic(dumps(after))

    def _ensure_dir(self) -> None:
        directory = self.path.parent
        if directory.is_dir():
            return
        try:
            directory.mkdir(parents=True, mode=0o700)
        except FileExistsError:
            pass
        except OSError as e:
            raise StoreError(f"cannot create credentials directory {directory}: {e.strerror}") from None
        else:
            os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask

    def _temp_prefix(self) -> str:
        return f".{self.path.name}."

    def _remove_stale_temp_files(self) -> None:
        """Temp files of writers that were killed mid-write. Only called under the exclusive
        lock, when no other credproxy writer can be using one."""
        try:
            names = os.listdir(self.path.parent)
        except OSError:
            return
        for name in names:
            if name.startswith(self._temp_prefix()) and name.endswith(".tmp"):
                _unlink_quietly(str(self.path.parent / name))

    def _write_atomic(self, text: str) -> None:
        directory = self.path.parent
        try:
            fd, tmp = tempfile.mkstemp(prefix=self._temp_prefix(), suffix=".tmp", dir=directory)  # 0600
        except OSError as e:
            raise StoreError(f"cannot write credentials file {self.path}: {e.strerror}") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            _unlink_quietly(tmp)
            raise StoreError(f"cannot write credentials file {self.path}: {e.strerror}") from None
        except BaseException:
            _unlink_quietly(tmp)
            raise
        _fsync_dir(directory)

    # --- locks -----------------------------------------------------------------------------

    @contextmanager
    def _exclusive_lock(self) -> Iterator[None]:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StoreError(f"cannot open lock file {self.lock_path}: {e.strerror}") from None
        try:
            deadline = time.monotonic() + WRITE_LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES):
                        raise StoreError(f"cannot lock {self.lock_path}: {e.strerror}") from None
                    if time.monotonic() > deadline:
                        raise StoreError(
                            f"timed out after {WRITE_LOCK_TIMEOUT:.0f}s waiting for the lock on {self.lock_path} "
                            "(another credproxy or uv process holds it)"
                        ) from None
                    time.sleep(0.005)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    @contextmanager
    def _shared_lock(self) -> Iterator[None]:
        """Wait (bounded) for a writer holding the lock file, if it exists; never create it."""
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except OSError:
            yield
            return
        try:
            deadline = time.monotonic() + READ_LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                        break  # read anyway: replacements are atomic
                    time.sleep(0.01)
            yield
        finally:
            os.close(fd)


def find(entries: list[StoreEntry], url: str, username: str | None = None) -> StoreEntry | None:
    """uv's store lookup (§9): an exact (service, username) match, else the entry in the same
    realm whose service path is the longest path-segment prefix of the URL's path (with the
    given username, if any). Two such entries of equal length -> StoreError. The URL's path
    must be under the service path as sent and as a server may normalise it
    (model.path_under): `/team-a/..%2fteam-b/x` matches no `/team-a/` entry."""
    try:
        target = normalize_service(url)
    except StoreError:
        return None
    realm, path = _realm_and_path(target)
    for e in entries:
        if _without_userinfo(e.service) == _without_userinfo(target) and e.username == username:
            # equal as sent; a dot segment or an encoded `/` in it may still lead elsewhere
            if path_under(_realm_and_path(e.service)[1], path):
                return e
    best: list[StoreEntry] = []
    best_len = -1
    for e in entries:
        if username is not None and e.username != username:
            continue
        service_realm, service_path = _realm_and_path(e.service)
        if service_realm != realm:
            continue
        if not path_under(service_path, path):
            continue
        length = len(service_path.encode())
        if length > best_len:
            best, best_len = [e], length
        elif length == best_len:
            best.append(e)
    if not best:
        return None
    if len(best) > 1:
        names = ", ".join(sorted(repr(e.username or "(bearer)") for e in best))
        raise StoreError(
            f"Multiple credentials found for URL '{_display_service(_without_query(url))}' "
            f"(usernames {names}), specify which username to use"
        )
    return best[0]


@functools.lru_cache(maxsize=4096)
def _realm_and_path(service: str) -> tuple[Realm, str]:
    """Parsed once per service string: the proxy looks up on every request."""
    return Realm.of(service), url_path(service)


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, ""))


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
