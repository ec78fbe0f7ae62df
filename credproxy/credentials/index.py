"""Configured indexes and matching a request URL to one of them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Literal

from .model import Credentials, Realm, path_under, redact_url, split_userinfo, strip_simple, url_path

AuthPolicy = Literal["auto", "always", "never"]
_VALID_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def env_name(name: str) -> str:
    """uv's normalisation for `UV_INDEX_<NAME>_USERNAME`: ASCII upper-case, every
    non-alphanumeric character becomes `_` (`my-index` -> `MY_INDEX`)."""
    return "".join(c.upper() if c.isascii() and c.isalnum() else "_" for c in name)


def valid_index_name(name: str) -> bool:
    return bool(_VALID_NAME.match(name))


@dataclass(frozen=True)
class Index:
    """An index as configured. `url` has its userinfo removed; the userinfo (percent-decoded)
    is kept in `url_credentials`."""

    url: str
    name: str | None = None
    authenticate: AuthPolicy = "auto"
    username: str | None = None  # the username for keyring lookups
    publish_url: str | None = None
    url_credentials: Credentials | None = field(default=None, repr=False)
    origin: str = "config"  # where it was defined: a file path, "pip.conf", "--index-url", ...
    # `token-command`: argv (no shell) whose stdout is the password for `username`; its answer
    # is used for `token_lifetime` seconds, and the command is run again after a rejection
    token_command: tuple[str, ...] | None = None
    token_lifetime: float | None = None

    def __repr__(self) -> str:
        """No secret: the URLs redacted (a token query parameter masked), the token command by
        its program only (its arguments may carry one)."""
        program = f", token_command={self.token_command[0]!r} ..." if self.token_command else ""
        publish = f", publish_url={redact_url(self.publish_url)!r}" if self.publish_url else ""
        return (f"Index(url={redact_url(self.url)!r}, name={self.name!r}, authenticate={self.authenticate!r}"
                f"{publish}{program}, origin={self.origin!r})")

    @classmethod
    def from_url(cls, url: str, **kw) -> "Index":
        clean, creds = split_userinfo(url)
        return cls(url=clean, url_credentials=creds, **kw)

    @property
    def root_url(self) -> str:
        return strip_simple(self.url)

    @property
    def realm(self) -> Realm:
        return Realm.of(self.url)

    @property
    def root_path(self) -> str:
        return url_path(self.root_url)

    def matches(self, url: str) -> bool:
        """Same realm, and the root's path is a segment prefix of the request path, as sent
        and as a server may normalise it (model.path_under: `/root/..%2fother` is not
        under `/root`)."""
        return Realm.of(url) == self.realm and path_under(self.root_path, url_path(url))

    def matches_publish(self, url: str) -> bool:
        """`url` is this index's publish URL (same realm and path; a trailing slash does not
        matter). Exact, not a prefix: a publish URL at a host's root must not make every
        download from that host an upload."""
        if not self.publish_url:
            return False
        return (Realm.of(url) == Realm.of(self.publish_url)
                and _no_slash(url_path(url)) == _no_slash(url_path(self.publish_url)))

    @property
    def display(self) -> str:
        return f"{self.name} ({self.url})" if self.name else self.url


def _no_slash(path: str) -> str:
    return path.rstrip("/") or "/"


def match_index(indexes: Iterable[Index], url: str) -> Index | None:
    """The matching index with the longest root path (uv picks arbitrarily; we are
    deterministic). Earlier definitions win ties. An index's publish URL matches too: the
    index's credentials cover its uploads."""
    best: Index | None = None
    best_length = -1
    for index in indexes:
        if index.matches(url):
            length = len(index.root_path)
        elif index.matches_publish(url):
            length = len(url_path(index.publish_url or ""))
        else:
            continue
        if length > best_length:
            best, best_length = index, length
    return best
