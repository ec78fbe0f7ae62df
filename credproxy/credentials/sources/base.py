"""The interface every credential source implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..index import Index
from ..model import Credentials


@dataclass(frozen=True)
class Answer:
    """One source's answer for one URL.

    `source` is the label shown in logs and `explain` (`netrc`, `store`, `uv-store`,
    `native`, `keyring`, `hf-token`, `index-url`, `env:UV_INDEX_<NAME>`). `detail` says where
    the answer came from or why there is none; it never contains a secret. `skipped` means
    the source was not asked at all (disabled, not applicable)."""

    source: str
    credentials: Credentials | None = None
    detail: str = ""
    skipped: bool = False

    @property
    def found(self) -> bool:
        return self.credentials is not None


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
