"""Which hosts the proxy terminates TLS for, and why (design.md, "The flow of one request",
step 1). One policy for the passthrough addon (every CONNECT) and for `explain`, so what
explain says is what the proxy does. Imports nothing from mitmproxy."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from . import tlsrules

logger = logging.getLogger("credproxy.interception")


@dataclass(frozen=True)
class Decision:
    intercept: bool
    reason: str


class InterceptionPolicy:
    """`knows_host(host, port)`: does an index or a fast credential source name the host
    (Resolver.knows_host)? It may raise: a broken source then means "intercept", never a
    silent passthrough that would drop the credential. `needs_read()`: whether `knows_host`
    would read a file now (a credential file changed since it was read), so the proxy asks
    it off the event loop (Resolver.needs_read)."""

    def __init__(self, settings, plan: tlsrules.TlsPlan, knows_host: Callable[[str, int], bool],
                 needs_read: Callable[[], bool] | None = None):
        self.intercept_all = getattr(settings, "intercept", "auto") == "all"
        self.listed = tlsrules.parse_host_patterns(getattr(settings, "intercept_hosts", []) or [],
                                                   "intercept-hosts")
        self.plan = plan
        self.knows_host = knows_host
        self._needs_read = needs_read

    def needs_read(self) -> bool:
        """False when nothing but lists and in-memory lookups decide (intercept = all, or no
        `needs_read` given); a check that fails counts as "would read"."""
        if self.intercept_all or self._needs_read is None:
            return False
        try:
            return bool(self._needs_read())
        except Exception:  # noqa: BLE001 - decide off the loop, where the error is handled
            return True

    def decide(self, host: str, port: int) -> Decision:
        host = host.lower()
        if self.intercept_all:
            return Decision(True, "intercept = all (--intercept-all)")
        if self.plan.customises(host, port):
            return Decision(True, "a TLS policy applies to it (allow-insecure-host or a client certificate)")
        if any(p.matches(host, port) for p in self.listed):
            return Decision(True, "listed in intercept-hosts")
        try:
            known = self.knows_host(host, port)
        except Exception as e:  # noqa: BLE001
            # the type only: a source's message could quote a credential
            logger.warning("deciding interception for %s:%s failed (%s); intercepting", host, port,
                           type(e).__name__)
            return Decision(True, f"deciding failed ({type(e).__name__}); intercepted to be safe")
        if known:
            return Decision(True, "an index or a credential source names this host")
        return Decision(False, "nothing names this host; its TLS is relayed untouched")
