"""CREDPROXY_TEST_RESOLVE="pkgs.test=127.0.0.1,other.test=::1": resolve exactly those names to
those addresses inside the proxy process, for tests.

Only name lookup changes (the event loop's getaddrinfo), so `flow.request.host` stays the
name, host matching and SNI work as with real DNS. Redirecting the address in
`server_connect` instead would turn the host into the IP (testbed-notes.md).

It is a test hook, so it cannot send a registry's traffic anywhere but this machine: only
loopback addresses are accepted (anything else stops the proxy at start-up, naming why),
and while it is active a WARNING says so at start-up, visible without -v (issue 9,
finding 10)."""

from __future__ import annotations

import asyncio
import ipaddress
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
        address = address.strip().strip("[]")
        try:
            loopback = ipaddress.ip_address(address).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(
                f"{ENV_VAR}: {name.strip()}={address} is not a loopback address; this test hook only maps "
                f"names to 127.0.0.0/8 or ::1 (so it cannot send a registry's traffic elsewhere). "
                f"Unset {ENV_VAR} for normal use")
        mapping[name.strip().lower().rstrip(".")] = address
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
    logger.warning("%s is set (a test hook): %s resolved on this machine only; unset it for normal use",
                   ENV_VAR, ", ".join(f"{k}={v}" for k, v in mapping.items()))
