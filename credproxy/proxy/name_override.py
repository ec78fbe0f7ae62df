"""CREDPROXY_TEST_RESOLVE="pkgs.test=127.0.0.1,other.test=::1": resolve exactly those names to
those addresses inside the proxy process, for tests.

Only name lookup changes (the event loop's getaddrinfo), so `flow.request.host` stays the
name, host matching and SNI work as with real DNS. Redirecting the address in
`server_connect` instead would turn the host into the IP (testbed-notes.md)."""

from __future__ import annotations

import asyncio
import logging

ENV_VAR = "CREDPROXY_TEST_RESOLVE"
logger = logging.getLogger("credproxy.proxy")


def parse(value: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, address = item.partition("=")
        if not sep or not name.strip() or not address.strip():
            raise ValueError(f"{ENV_VAR}: expected name=address, got {item!r}")
        mapping[name.strip().lower().rstrip(".")] = address.strip().strip("[]")
    return mapping


def install(loop: asyncio.AbstractEventLoop, mapping: dict[str, str]) -> None:
    if not mapping:
        return
    original = loop.getaddrinfo

    async def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, bytes):
            key = host.decode("ascii", "replace")
        else:
            key = host
        if isinstance(key, str) and key.lower().rstrip(".") in mapping:
            host = mapping[key.lower().rstrip(".")]
        return await original(host, port, *args, **kwargs)

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
    logger.info("test name resolution active: %s", ", ".join(f"{k}={v}" for k, v in mapping.items()))
