"""Upstream TLS per host (CA, client certificate, insecure) and the passthrough decision.

Placeholder interface (the upstream-TLS issue fills it in); the proxy builds its master with:

    before, after = upstream_tls.addons(settings, wants_interception)
    options = upstream_tls.mitmproxy_options(settings)
"""

from __future__ import annotations

from typing import Callable


def mitmproxy_options(settings) -> dict:
    """Global mitmproxy options for upstream TLS (roots, client cert, ...)."""
    return {}


def addons(settings, wants_interception: Callable[[str, int], bool]) -> tuple[list, list]:
    """Addons to insert before TlsConfig, and after it (for per-connection patches)."""
    return [], []
