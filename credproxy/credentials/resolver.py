"""The chain of sources, the session cache and the single-flight memo.

Answers one question for the proxy and for `credproxy explain`: what to do about the
credentials of a request to URL. Thread-safe; the async entry points run anything that may
block (a keyring subprocess, the OS keyring) in a worker thread so mitmproxy's event loop
never waits on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .index import Index
from .model import Credentials
from .sources.base import Answer

Action = Literal["leave", "inject", "send", "fail"]


@dataclass(frozen=True)
class Decision:
    """What to do with one request.

    - `leave`: forward exactly as the client sent it (client credentials, policy never).
    - `inject`: set `Authorization` from `credentials` (found in `source`).
    - `send`: forward without credentials; a challenge may follow (`Resolver.challenge`).
    - `fail`: do not forward; answer the client with `reason` (e.g. `authenticate = always`
      and nothing found).

    `source` is the label for the request log: `client`, `index-url`, `env:UV_INDEX_<NAME>`,
    `netrc`, `store`, `uv-store`, `native`, `keyring`, `hf-token`, or `none`. `cached` is
    true when the credentials came from the session cache (then a 401 evicts them).
    `preemptive` is false for a retry after a challenge. Nothing here prints a secret."""

    action: Action
    credentials: Credentials | None = field(default=None, repr=False)
    source: str = "none"
    reason: str = ""
    index: Index | None = None
    cached: bool = False
    preemptive: bool = True

    @property
    def header(self) -> str | None:
        return self.credentials.header_value() if self.action == "inject" and self.credentials else None


@dataclass(frozen=True)
class Explanation:
    """`credproxy explain URL`: each source asked in order, and the decision."""

    url: str
    index: Index | None
    answers: list[Answer]
    decision: Decision
