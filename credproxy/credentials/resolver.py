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


class Resolver:
    """The credential chain (design.md order): client header > index URL/env credentials >
    hf-token > netrc > store > uv-store > native > keyring; session cache in front of the
    sources; single-flight memo for slow sources; negative results expire after 60 s.

    Contract used by the proxy (credproxy/addons/auth.py):

        d = await resolver.aresolve(url, client_authorization)      # before sending
        ... send with d.header if d.action == "inject"; answer 401 with d.reason if "fail"
        retry = await resolver.achallenge(url, d, status)            # status 401/403/404
        ... if retry is not None: re-send once with retry.header
        resolver.record(url, final_decision, final_status)           # cache on < 400
        resolver.knows_host(scheme, host, port)                      # intercept this host?

    The sync versions (`resolve`, `challenge`) may block on a keyring subprocess; the async
    ones never block the event loop."""

    def __init__(self, settings, sources=None, *, clock=None, negative_ttl: float = 60.0):
        raise NotImplementedError

    def resolve(self, url: str, client_authorization: str | None = None) -> Decision:
        raise NotImplementedError

    async def aresolve(self, url: str, client_authorization: str | None = None) -> Decision:
        raise NotImplementedError

    def challenge(self, url: str, sent: Decision, status: int) -> Decision | None:
        """After 401 (or 403/404 when `sent` carried no credentials and a source may exist):
        the credentials to re-send with once, or None (then the client gets the response)."""
        raise NotImplementedError

    async def achallenge(self, url: str, sent: Decision, status: int) -> Decision | None:
        raise NotImplementedError

    def record(self, url: str, decision: Decision, status: int) -> None:
        """Cache on success (status < 400); a rejected cached credential is evicted."""
        raise NotImplementedError

    def knows_host(self, scheme: str, host: str, port: int) -> bool:
        raise NotImplementedError

    def explain(self, url: str) -> Explanation:
        raise NotImplementedError
