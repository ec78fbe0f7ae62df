"""A tiny stand-in for the Resolver contract (credproxy/credentials/resolver.py), for the
addon's unit tests only: fixed answers per host, and a log of what the addon asked."""

from __future__ import annotations

from urllib.parse import urlsplit

from credproxy.credentials.model import Credentials, parse_authorization
from credproxy.credentials.resolver import Decision


class FakeResolver:
    def __init__(self, by_host: dict[str, Decision] | None = None, challenge: dict[str, Decision] | None = None):
        self.by_host = by_host or {}
        self.challenge_answers = challenge or {}
        self.asked: list[tuple[str, str | None]] = []
        self.challenged: list[tuple[str, int]] = []
        self.recorded: list[tuple[str, str, int]] = []

    async def aresolve(self, url: str, client_authorization: str | None = None) -> Decision:
        self.asked.append((url, client_authorization))
        client = parse_authorization(client_authorization)
        if client is not None and client.is_complete:
            return Decision("leave", source="client")
        return self.by_host.get(urlsplit(url).hostname or "", Decision("send"))

    async def achallenge(self, url: str, sent: Decision, status: int) -> Decision | None:
        self.challenged.append((url, status))
        return self.challenge_answers.get(urlsplit(url).hostname or "")

    def record(self, url: str, decision: Decision, status: int) -> None:
        self.recorded.append((url, decision.action, status))

    def knows_host(self, scheme: str, host: str, port: int) -> bool:
        return host in self.by_host


def inject(username: str, password: str, source: str = "netrc", cached: bool = False) -> Decision:
    return Decision("inject", Credentials.basic(username, password), source=source, cached=cached)
