"""~/.netrc, matched on host only, as uv does (uv §8), within two limits uv does not have
(design.md, "Security rules"; docs/configuration.md):

- the `default` entry answers only for a configured index (`netrc-default = "indexes"`,
  the default), or for any host (`"any-host"`, uv's behaviour);
- a machine entry for a loopback name (`localhost`, `127.0.0.1`, `::1`) applies only to the
  ports an index names (`netrc-loopback = "index-ports"`, the default), or to every port
  (`"any-port"`): any local user can listen on a loopback port and answer 401.

A machine entry's credential may be sent within the request's realm (netrc has no path); the
`default` entry's within the index root it answered for (`any-host`: the realm).

Parse and read errors never raise: they become a warning (the file and line, never the
parse message itself, which may quote a token from the file) that is appended to
`NetrcSource.warnings`, logged once with logging.warning, and put in every Answer.detail.

The file is read again when it changes (path, mtime, size or inode), so a token replaced in
the netrc while the proxy runs is used after the upstream rejects the old one (issue 12).
`needs_read()` says, with a stat and no reading, whether the next lookup would parse it. A
file's content is parsed once for every source that reads it (a reload's new source and the
replaced one still answering requests): see `_parse`."""

from __future__ import annotations

import hashlib
import io
import locale
import logging
import netrc as _netrc
import os
import stat
import threading
import weakref
from dataclasses import dataclass
from typing import Iterable, Mapping
from urllib.parse import urlsplit

from ..index import Index
from ..model import Credentials, Realm, is_loopback, shown_name
from .base import Answer, realm_prefix

log = logging.getLogger(__name__)


class NetrcSource:
    name = "netrc"
    fast = True

    def __init__(self, env: Mapping[str, str], home: str | None = None, *, indexes: Iterable[Index] = (),
                 default_scope: str = "indexes", loopback_scope: str = "index-ports"):
        self._env = env
        self._index_realms = {ix.realm for ix in indexes}
        self.default_scope = default_scope  # "indexes" | "any-host" (config: netrc-default)
        self.loopback_scope = loopback_scope  # "index-ports" | "any-port" (config: netrc-loopback)
        self._home = home if home is not None else env.get("HOME")
        self._loaded = False
        self._stamp: tuple | None = None
        self._path: str | None = None
        self._missing_detail = ""
        self._hosts: dict[str, tuple[str, str, str]] = {}
        self._shared: _Parse | None = None  # keeps the shared parse of its file alive (_parse)
        self._default: tuple[str, str, str] | None = None
        self._error: str | None = None
        self.warnings: list[str] = []
        self._lock = threading.Lock()  # the resolver may ask from several threads at once

    # --- loading ---------------------------------------------------------------------------

    def _candidates(self) -> tuple[str | None, str]:
        """(path to read or None, why none was found)."""
        env_path = self._env.get("NETRC")
        home_path = os.path.join(self._home, ".netrc") if self._home else None
        if env_path:
            expanded = env_path
            if (env_path == "~" or env_path.startswith("~/")) and self._home:
                expanded = self._home + env_path[1:]
            elif env_path.startswith("~"):
                expanded = os.path.expanduser(env_path)
            if os.path.exists(expanded):
                return expanded, ""
            netrc_note = f"$NETRC={env_path} missing"
        else:
            netrc_note = "$NETRC unset"
        if home_path and os.path.exists(home_path):
            return home_path, ""
        home_note = f"{home_path} missing" if home_path else "no home directory"
        return None, f"no netrc file ({netrc_note}, {home_note})"

    def _load(self) -> None:
        stamp = self._current_stamp()
        if self._loaded and stamp == self._stamp:
            return
        with self._lock:
            if not self._loaded or stamp != self._stamp:
                self._load_now()
                self._stamp = stamp
                self._loaded = True

    def needs_read(self) -> bool:
        """Whether the next lookup would read and parse the file (never loaded, or its stamp
        changed): a few `stat` calls, no reading. The resolver asks on the event loop only
        a source that says False."""
        return not self._loaded or self._current_stamp() != self._stamp

    def _current_stamp(self) -> tuple:
        path, _ = self._candidates()
        if path is None:
            return (None,)
        try:
            st = os.stat(path)
        except OSError:
            return (path,)
        return (path, st.st_mtime_ns, st.st_size, st.st_ino)

    def _load_now(self) -> None:
        self._hosts, self._default, self._error, self._shared = {}, None, None, None
        path, why = self._candidates()
        self._path, self._missing_detail = path, why
        if path is None:
            return
        try:
            self._shared = _parse(path)
            hosts, self._default = self._shared.hosts, self._shared.default
        except _netrc.NetrcParseError as e:
            self._fail(f"cannot parse netrc file {path} (line {e.lineno}); netrc ignored")
            return
        except (OSError, UnicodeDecodeError, _NotReadable) as e:
            if isinstance(e, _NotReadable):
                reason = str(e)
            else:  # the type only for the rest: a decoding error's text quotes the file's bytes
                reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
            self._fail(f"cannot read netrc file {path}: {reason}; netrc ignored")
            return
        self._hosts = hosts

    def _fail(self, message: str) -> None:
        self._error = message
        self.warnings.append(message)
        log.warning("%s", message)

    @property
    def path(self) -> str | None:
        self._load()
        return self._path

    # --- lookups ---------------------------------------------------------------------------

    def lookup(self, url: str, username: str | None, index: Index | None) -> Answer:
        self._load()
        if self._error:
            return Answer(self.name, detail=self._error)
        if self._path is None:
            return Answer(self.name, detail=self._missing_detail)
        host = _host_key(urlsplit(url).hostname or "")
        entry = self._hosts.get(host)
        if entry is not None:
            what, preemptive, prefix = f"machine {host}", True, realm_prefix(url)
            realm = Realm.of(url)
            if not self._loopback_port_allowed(realm):
                return Answer(self.name, detail=(
                    f"{what} in {self._path} is not used for {realm}: no index names this loopback port "
                    f"(another local user may listen there); add an [[index]] for {realm}, or set "
                    f'netrc-loopback = "any-port" to use it for every port'))
        elif self._default is not None:
            entry, what, preemptive = self._default, "default entry", False
            if self.default_scope == "any-host":
                prefix = realm_prefix(url)
            elif index is not None:
                prefix = index.root_url
            else:
                return Answer(self.name, detail=(
                    f"{what} in {self._path} is not used for {Realm.of(url)}: it answers configured indexes "
                    f"only; add an [[index]] for this URL, a machine entry for {host}, or set "
                    f'netrc-default = "any-host"'))
        else:
            return Answer(self.name, detail=f"no entry for {host} in {self._path}")
        login, _account, password = entry
        login = login or None
        if username is not None and login != username:
            return Answer(self.name, detail=f"{what} in {self._path} has login {shown_name(login)!r}, not {shown_name(username)!r}")
        return Answer(
            self.name,
            Credentials.basic(login, password or ""),
            detail=f"{what} in {self._path}",
            preemptive=preemptive,
            prefix=prefix,
        )

    def knows_host(self, scheme: str, host: str, port: int) -> bool:
        self._load()
        if _host_key(host) not in self._hosts:
            return False
        return self._loopback_port_allowed(Realm(scheme.lower(), host.lower().strip("[]"), port))

    def _loopback_port_allowed(self, realm: Realm) -> bool:
        """A machine entry for a loopback host applies to this (scheme, host, port)?"""
        if self.loopback_scope == "any-port" or not is_loopback(realm.host):
            return True
        return realm in self._index_realms


#: A netrc file larger than this is not read (a generated one with 20,000 machines is 3 MB).
SIZE_LIMIT = 64 << 20


class _NotReadable(Exception):
    pass


@dataclass(eq=False)
class _Parse:
    digest: bytes
    hosts: dict[str, tuple[str, str, str]]
    default: tuple[str, str, str] | None


#: The parse of each netrc file, by path, while some source uses it. After a rewrite, a reload
#: builds a new source while requests may still ask the replaced one: the file is parsed once
#: (the second waits for the first and takes its result), not once each. Weak: a parse goes
#: when the last source holding it does (a file deleted or replaced by another leaves no
#: passwords behind in memory). Entries are only read.
_parsed: "weakref.WeakValueDictionary[str, _Parse]" = weakref.WeakValueDictionary()
_path_locks: dict[str, threading.Lock] = {}  # one per netrc path: files parse independently
_locks_lock = threading.Lock()


def _parse(path: str) -> _Parse:
    """The parse of the netrc file at `path`; raises what netrc.netrc raises (NetrcParseError,
    OSError, UnicodeDecodeError), and _NotReadable. Only a regular file is read (a FIFO named by
    $NETRC would block the read for good), at most SIZE_LIMIT bytes."""
    with _locks_lock:
        lock = _path_locks.setdefault(path, threading.Lock())
    with lock:
        with open(path, "rb", opener=_nonblocking) as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise _NotReadable("not a regular file")
            data = f.read(SIZE_LIMIT + 1)
        if len(data) > SIZE_LIMIT:
            raise _NotReadable(f"larger than {SIZE_LIMIT >> 20} MiB")
        digest = hashlib.blake2b(data, digest_size=16).digest()
        known = _parsed.get(path)
        if known is not None and known.digest == digest:
            return known
        hosts = dict(_parse_bytes(path, data).hosts)
        default = hosts.pop("default", None)
        parsed = _Parse(digest, hosts, default)
        _parsed[path] = parsed
        return parsed


def _nonblocking(path: str, flags: int) -> int:
    """Open without waiting for a writer (a FIFO); the file is checked to be regular next."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def _parse_bytes(path: str, data: bytes) -> _netrc.netrc:
    """netrc.netrc(path), from the bytes already read: what it does (UTF-8, else the locale's
    encoding; universal newlines; no permission check for a named file), but parsing an
    in-memory text. netrc.netrc reads its file one character at a time, and each of those
    reads lets that thread take the GIL straight back: in a worker thread, a 3 MB file then
    kept the event loop from running for the whole parse (a second), where an in-memory
    parse yields it every few milliseconds. Falls back to netrc.netrc if the standard
    library's parser ever changes shape."""
    parse = getattr(_netrc.netrc, "_parse", None)
    if parse is None:
        return _netrc.netrc(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode(locale.getencoding())
    parsed = _netrc.netrc.__new__(_netrc.netrc)
    parsed.hosts, parsed.macros = {}, {}
    try:
        parse(parsed, path, io.StringIO(text, newline=None), False)
    except TypeError:  # another signature
        return _netrc.netrc(path)
    return parsed


def _host_key(host: str) -> str:
    """The host as uv compares it with a machine name: lower-cased, IPv6 in brackets."""
    host = host.lower()
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
