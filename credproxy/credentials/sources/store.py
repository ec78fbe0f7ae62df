"""The plaintext credential store as a source: the one shared with uv (`store`), and
credproxy's old location (`old-store`, read-only until the next `auth login` moves it).
The file is re-read when its mtime, size or inode changes, so an `auth login` while the
proxy runs takes effect on the next request (and proxy/reload.py drops what was cached);
`needs_read()` says, with a stat and no reading, whether the next lookup would parse it.
A store that cannot be read, or an ambiguous match, is a skipped Answer with the message,
never an exception."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from ..index import Index
from ..model import Realm, shown_name
from ..store import Store, StoreEntry, StoreError, default_store_path, find, legacy_store_path
from .base import Answer, url_prefix

log = logging.getLogger(__name__)


class StoreSource:
    fast = True

    def __init__(self, path: str | os.PathLike, name: str = "store"):
        self.name = name
        self.path = Path(path)
        self._store = Store(self.path)
        self._lock = threading.Lock()  # the resolver may ask from several threads at once
        self._stamp: tuple[int, int, int] | None = None
        self._entries: list[StoreEntry] = []
        self._error: str | None = None
        self.warnings: list[str] = []

    def __repr__(self) -> str:
        return f"StoreSource({str(self.path)!r}, name={self.name!r})"

    # --- loading ---------------------------------------------------------------------------

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def needs_read(self) -> bool:
        """Whether the next lookup would read and parse the file (its stamp changed since the
        last read): a `stat`, no reading. The resolver asks on the event loop only a source
        that says False."""
        return self._stat() != self._stamp

    def _refresh(self) -> tuple[list[StoreEntry], str | None, bool]:
        """(entries, error, exists), re-reading the file when it changed."""
        with self._lock:
            stamp = self._stat()
            if stamp is None:
                self._stamp, self._entries, self._error = None, [], None
                return [], None, False
            if stamp != self._stamp:
                try:
                    self._entries, self._error = self._store.read(), None
                except StoreError as e:
                    self._entries, self._error = [], f"{e}; {self.name} ignored"
                    self.warnings.append(self._error)
                    log.warning("%s", self._error)
                # stat again after reading: a write racing the read shows up next time
                self._stamp = stamp
            return self._entries, self._error, True

    # --- Source protocol -------------------------------------------------------------------

    def lookup(self, url: str, username: str | None, index: Index | None) -> Answer:
        entries, error, exists = self._refresh()
        if error:
            return Answer(self.name, detail=error, skipped=True)
        if not exists:
            return Answer(self.name, detail=f"no credentials file {self.path}")
        try:
            entry = find(entries, url, username)
        except StoreError as e:
            return Answer(self.name, detail=f"{e} (in {self.path})", skipped=True)
        if entry is None:
            who = f" for username {shown_name(username)!r}" if username is not None else ""
            return Answer(self.name, detail=f"no entry{who} matching {_origin_path(url)} in {self.path}")
        return Answer(self.name, entry.credentials, detail=f"entry {entry.display} in {self.path}",
                      prefix=url_prefix(entry.service))

    def knows_host(self, scheme: str, host: str, port: int) -> bool:
        entries, _error, _exists = self._refresh()
        realm = Realm(scheme.lower(), host.lower().strip("[]"), port)
        return any(Realm.of(e.service) == realm for e in entries)


def store_sources(env: Mapping[str, str] | None = None) -> list[StoreSource]:
    """The store shared with uv (design.md), then credproxy's old location when it holds a
    file (its entries move to the shared store on the next `auth login`/`logout`)."""
    env = os.environ if env is None else env
    store, legacy = default_store_path(env), legacy_store_path(env)
    sources = [StoreSource(store, name="store")]
    if os.path.abspath(legacy) != os.path.abspath(store) and legacy.exists():
        sources.append(StoreSource(legacy, name="old-store"))
    return sources


def _origin_path(url: str) -> str:
    """The URL without userinfo, query or fragment: enough to say what was looked up."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path or '/'}"
