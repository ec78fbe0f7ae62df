"""The interface every credential source implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from urllib.parse import urlsplit, urlunsplit

from ..index import Index
from ..model import Credentials, Realm


@dataclass(frozen=True)
class Answer:
    """One source's answer for one URL.

    `source` is the label shown in logs and `explain` (`netrc`, `store`, `old-store`,
    `native`, `keyring`, `hf-token`, `index-url`, `env:UV_INDEX_<NAME>`, `token-command`,
    `git-credential`). `detail` says where
    the answer came from or why there is none; it never contains a secret. `skipped` means
    the source was not asked at all (disabled, not applicable). `preemptive` is false for an
    answer that may only be used after the upstream challenged (the netrc `default` entry).
    `prefix` is the URL prefix the answering entry names (a store entry's URL, an index root,
    a netrc machine's realm): the credential may be sent, and cached, under it only.
    `ttl` (seconds) is how long a found credential may be used before the source is asked
    again (a token command's token-lifetime); None = until the upstream rejects it."""

    source: str
    credentials: Credentials | None = None
    detail: str = ""
    skipped: bool = False
    preemptive: bool = True
    prefix: str | None = None
    ttl: float | None = None

    @property
    def found(self) -> bool:
        return self.credentials is not None


def realm_prefix(url: str) -> str:
    """`scheme://host[:port]/`: the prefix of an entry that names a host (netrc machine,
    a keyring entry for `host`)."""
    return f"{Realm.of(url)}/"


def url_prefix(url: str) -> str:
    """The URL without userinfo, query or fragment: the prefix of an entry that names a URL
    (a store service, a keyring service that is a URL)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.rpartition("@")[2].lower(), parts.path or "/", "", ""))


class Source(Protocol):
    #: label used in Answer.source
    name: str
    #: fast sources are read before the first request (pre-emptive); slow ones (keyring)
    #: only on a challenge, or once before the first request to a configured index
    fast: bool

    def lookup(self, url: str, username: str | None, index: Index | None) -> Answer:
        """Credentials for `url` (username must match when given). Never raises for bad
        input: a malformed file or a failing command is an Answer with a detail."""
        ...

    def knows_host(self, scheme: str, host: str, port: int) -> bool:
        """True when this source has an entry that may apply to the host, so the proxy
        intercepts its TLS. Slow sources (keyring) cannot enumerate and answer False."""
        ...

    # Optional, for fast sources that read a file (netrc, store): `needs_read() -> bool`,
    # whether the next lookup would read and parse it (a stat, no reading). The resolver
    # answers a source on the event loop only while it says False; a source without it
    # never reads a file.
