"""The state file `credproxy status` reads (credproxy/status.py says why a file).

Hooks and why:
- `running`: the listeners are up; their address and the start time are known, so the
  first state file is written here.
- `response` / `error`: one client request is finished, with the auth addon's metadata
  (source, action, cached) and the final status, after a re-send; the counters change here.
  The auth addon's own re-sent copies are skipped (they are reported on the client's flow),
  and so are requests the owner check refused with 407: a stranger leaves no trace here.
- `done`: a clean exit removes the file, so a stopped proxy is not shown as running.

Writes are atomic and at most once a second (a timer flushes the last change)."""

from __future__ import annotations

import asyncio
import logging
import os
import time

from mitmproxy import ctx, http

from .. import status as status_file
from ..credentials.model import Realm
from .auth import METADATA_KEY, RETRY_MARK

logger = logging.getLogger("credproxy.status")

WRITE_INTERVAL = 1.0


class StatusFile:
    def __init__(self, settings, egress=None):
        self.settings = settings
        self.env = getattr(settings, "env", None) or os.environ
        self.state = status_file.ProxyStatus(pid=os.getpid(), listen="", started=time.time(),
                                             upstream_proxy=_route_shown(settings, egress))
        self.egress = egress
        self._bad_version = 0
        self._last_write = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._failed = False

    def use_egress(self, settings, egress) -> None:
        """After a reload: the route now in use (written with the next update)."""
        self.settings, self.egress = settings, egress
        self.state.upstream_proxy = _route_shown(settings, egress)

    def running(self) -> None:
        servers = list(ctx.master.addons.get("proxyserver").servers)
        addrs = [a for s in servers for a in (s.listen_addrs or [])]
        if addrs:
            host, port = addrs[0][0], addrs[0][1]
            host = f"[{host}]" if ":" in host else host
            self.state.listen = f"http://{host}:{port}"
        self._flush()

    def response(self, flow: http.HTTPFlow) -> None:
        self._note(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._note(flow)

    def done(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        status_file.remove(self.state.pid, self.env)

    def _note(self, flow: http.HTTPFlow) -> None:
        pac = getattr(self.egress, "pac", None)
        if pac is not None and pac.bad.version != self._bad_version:
            self._schedule()  # a PAC proxy was marked bad (or good again)
        if flow.request.method.upper() == "CONNECT" or RETRY_MARK in flow.metadata:
            return
        meta = flow.metadata.get(METADATA_KEY) or {}
        if meta.get("action") == "refuse":
            return  # a client without the proxy token (addons/owner.py): not the owner's traffic
        realm = str(Realm.of(f"{flow.request.scheme}://{_host(flow.request.host)}:{flow.request.port}/"))
        self.state.note(realm, source=str(meta.get("source") or "none"), injected=meta.get("action") == "inject",
                        status=flow.response.status_code if flow.response else None,
                        cached=bool(meta.get("cached")))
        self._schedule()

    def _schedule(self) -> None:
        wait = WRITE_INTERVAL - (time.monotonic() - self._last_write)
        if wait <= 0:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(wait, self._flush)

    def _flush(self) -> None:
        self._timer = None
        self._last_write = time.monotonic()
        pac = getattr(self.egress, "pac", None)
        if pac is not None:
            self._bad_version = pac.bad.version
            self.state.bad_proxies = {getattr(p, "display", str(p)): {"until": until, "why": why}
                                      for p, until, why in pac.bad.items()}
        try:
            status_file.write(self.state, self.env)
            self._failed = False
        except OSError as e:
            if not self._failed:  # once, not on every request
                logger.warning("cannot write the status file in %s: %s; `credproxy status` will not see this "
                               "proxy", status_file.status_dir(self.env), e.strerror or e)
            self._failed = True


def _route_shown(settings, egress) -> str | None:
    """The route actually in use (credproxy/egress.py: flag, config or HTTPS_PROXY & co),
    redacted; without an egress plan, the configured value."""
    shown = None
    if egress is not None and (egress.proxies or egress.disabled):
        shown = "; ".join(line.replace("upstream proxy for ", "for ").removeprefix("upstream proxy: ")
                          for line in egress.summary())
    return shown or status_file.upstream_proxy_shown(settings)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
