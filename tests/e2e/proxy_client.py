"""A stdlib HTTP client that goes through the proxy as pip or curl would (CONNECT for https,
absolute-form for http), trusting the given CA files. Cheap enough for a thousand requests.

`proxy` is a tests.helpers.proxy.Proxy (its owner's Proxy-Authorization is sent on the CONNECT
or with the absolute-form request, as clients do with a proxy URL that carries userinfo), or a
bare port: a client without the proxy token, as another user would be."""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def client_context(*cafiles: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for cafile in cafiles:
        context.load_verify_locations(cafile)
    return context


def _port_and_auth(proxy) -> tuple[int, dict[str, str]]:
    if isinstance(proxy, int):
        return proxy, {}
    return proxy.port, proxy.auth_headers()


def open_connection(proxy, url: str, context: ssl.SSLContext | None, timeout: float
                    ) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
    """(connection, request target, headers the request itself must carry)."""
    proxy_port, auth = _port_and_auth(proxy)
    parts = urlsplit(url)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", proxy_port, timeout=timeout, context=context)
        conn.set_tunnel(parts.hostname or "", parts.port or 443, headers=auth)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return conn, target, {}
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=timeout)
    return conn, url, auth


def get(proxy, url: str, context: ssl.SSLContext | None = None, *, timeout: float = 15.0,
        headers: dict[str, str] | None = None, method: str = "GET") -> Reply:
    conn, target, auth = open_connection(proxy, url, context, timeout)
    try:
        conn.request(method, target, headers={"Connection": "close", **auth, **(headers or {})})
        response = conn.getresponse()
        body = response.read()
        return Reply(response.status, body, {k.lower(): v for k, v in response.getheaders()})
    finally:
        conn.close()
