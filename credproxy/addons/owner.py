"""Only the proxy's owner may use it: every client must present the proxy token.

Loopback is not a boundary (other local users reach 127.0.0.1 too), so the proxy admits a
client only with `Proxy-Authorization: Basic base64(USER:TOKEN)`: `credproxy:TOKEN` from the
owner's token file, a one-off pair for `credproxy run`, or the `--proxyauth` pair
(proxy/token.py). Modelled on mitmproxy's addons/proxyauth.py, which it replaces.

Hooks and why:
- `http_connect`: a CONNECT must carry the pair. A good one marks the client connection as
  authenticated (a weak map, as proxyauth does): every request inside that tunnel, HTTP/1
  keep-alive, HTTP/2 streams, WebSocket upgrades, rides on the connection that was admitted.
  A bad or missing one is answered 407 here, before mitmproxy connects upstream, sees a
  ClientHello or mints a certificate.
- `requestheaders`: a plain-HTTP (absolute-form) request outside an admitted tunnel is checked
  the same way, every time (like proxyauth, nothing is remembered for plain HTTP). Our own
  re-sends (`is_replay`) come from inside the proxy and pass.
- `tls_clienthello`: TLS spoken to the proxy itself (an https:// proxy URL, or a client that
  skips CONNECT) has no CONNECT to authenticate; it is dropped before any certificate is made.

The proxy master adds this addon ahead of every other one with flow hooks. A refused flow
carries its 407 response, which the later addons (upstream TLS, auth, audit) treat as
answered: no credential lookup, no cache change, no upstream connection. An accepted request
loses its Proxy-Authorization header here, so nothing after this addon (the upstream, logs,
saved flows) sees the token. Comparison is constant-time (hmac.compare_digest).
"""

from __future__ import annotations

import logging
import weakref
from typing import Callable

from mitmproxy import connection, http

from ..proxy.token import ProxyCredential, TokenError

logger = logging.getLogger("credproxy.owner")

REALM = "credproxy"
METADATA_KEY = "credproxy"  # the auth addon's key: the request log reads source/reason there
PROXY_AUTHORIZATION = "proxy-authorization"

_HOW = ('Point your clients at it with: eval "$(credproxy env)"  (it exports HTTPS_PROXY with the '
        "proxy token), or run one command through it: credproxy run -- CMD. After the token "
        'was rotated, run eval "$(credproxy env)" again in each shell.')
_HOW_PAIR = ("This proxy was started with its own USER:TOKEN (--proxyauth-file or CREDPROXY_PROXYAUTH): "
             "give clients HTTPS_PROXY=http://USER:TOKEN@HOST:PORT, e.g. with: "
             'eval "$(credproxy env --proxyauth-file FILE)".')


class OwnerOnly:
    """`credential()` returns the pair clients must send now (it may change: rotation); it may
    raise TokenError, and then everyone is refused."""

    def __init__(self, credential: Callable[[], ProxyCredential], *, configured_pair: bool = False):
        self.credential = credential
        self.configured_pair = configured_pair
        self.authenticated: weakref.WeakKeyDictionary[connection.Client, bool] = weakref.WeakKeyDictionary()
        self._broken_logged = False

    # --- hooks -----------------------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.client_conn in self.authenticated:
            flow.request.headers.pop(PROXY_AUTHORIZATION, None)
            return
        if self._admit(flow):
            self.authenticated[flow.client_conn] = True

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.is_replay or flow.client_conn in self.authenticated:
            return
        self._admit(flow)

    def tls_clienthello(self, data) -> None:
        client = data.context.client
        if client in self.authenticated:
            return
        # No admitted CONNECT on this connection: TLS to the proxy itself. Pass it to nowhere
        # (no server address), which closes it without minting a certificate.
        logger.info("refused TLS spoken directly to the proxy by %s (use an http:// proxy URL with the "
                    "proxy token)", _peer(client))
        data.ignore_connection = True

    # --- internals -------------------------------------------------------------------------

    def _admit(self, flow: http.HTTPFlow) -> bool:
        values = flow.request.headers.get_all(PROXY_AUTHORIZATION)
        try:
            expected = self.credential()
        except TokenError as e:
            if not self._broken_logged:
                logger.error("refusing every client: %s", e)
                self._broken_logged = True
            self._refuse(flow, "the proxy's token file is unusable; its owner must fix it (see the proxy's log)",
                         "proxy token file unusable")
            return False
        self._broken_logged = False
        if len(values) == 1 and expected.matches(values[0]):
            flow.request.headers.pop(PROXY_AUTHORIZATION, None)
            return True
        if not values:
            self._refuse(flow, "no proxy credentials were sent", "no proxy token")
        else:
            self._refuse(flow, "the proxy credentials sent are not this proxy's", "wrong proxy token")
        return False

    def _refuse(self, flow: http.HTTPFlow, why: str, short: str) -> None:
        how = _HOW_PAIR if self.configured_pair else _HOW
        body = f"credproxy: proxy authentication required: {why}.\nThis proxy serves only the user who runs it. {how}\n"
        flow.response = http.Response.make(
            407, body.encode(),
            {"Proxy-Authenticate": f'Basic realm="{REALM}"', "Content-Type": "text/plain; charset=utf-8",
             "Connection": "close"})
        flow.metadata[METADATA_KEY] = {
            "source": "none", "preemptive": False, "retried": False, "action": "refuse",
            "reason": f"refused with 407: {short}", "cached": False,
        }


def _peer(client: connection.Client) -> str:
    try:
        host, port = client.peername[:2]
        return f"{host}:{port}"
    except (TypeError, ValueError):
        return "a client"
