"""A minimal embedded mitmproxy (Master + default addons + our upstream TLS addons, inserted
around TlsConfig as the proxy branch does) for the upstream-TLS addon tests.

    python tls_harness.py CONFIG.json

CONFIG: {"settings": {Settings fields; client_certs as [{"host","cert"}]},
         "intercept_hosts": ["host", ...],   # what wants_interception(host, port) says yes to
         "broken_hosts": ["host", ...],      # ... raises for
         "resolve": {"name": "127.0.0.1"},   # test names, resolved inside this process only
         "confdir": "/tmp/..."}
Prints `listening on PORT` once the listener is up; logs go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys


async def main(cfg: dict) -> None:
    from mitmproxy.addons import default_addons
    from mitmproxy.addons.tlsconfig import TlsConfig
    from mitmproxy.master import Master
    from mitmproxy.options import Options

    from credproxy.addons import upstream_tls
    from credproxy.config import ClientCertRule, Settings

    raw = dict(cfg["settings"])
    raw["client_certs"] = [ClientCertRule(host=r["host"], cert=r["cert"], origin=r.get("origin", "test.toml"))
                           for r in raw.get("client_certs", [])]
    settings = Settings(**raw)
    wanted = {h.lower() for h in cfg.get("intercept_hosts", [])}

    loop = asyncio.get_running_loop()
    resolve = cfg.get("resolve", {})
    real_getaddrinfo = loop.getaddrinfo

    async def getaddrinfo(host, *args, **kw):  # test names -> 127.0.0.1, host names kept
        if isinstance(host, str) and host.lower() in resolve:
            host = resolve[host.lower()]
        return await real_getaddrinfo(host, *args, **kw)

    loop.getaddrinfo = getaddrinfo

    opts = Options(listen_host="127.0.0.1", listen_port=0, confdir=cfg["confdir"])
    master = Master(opts)
    addons = default_addons()
    broken = {h.lower() for h in cfg.get("broken_hosts", [])}

    def wants_interception(host: str, port: int) -> bool:
        if host.lower() in broken:
            raise RuntimeError("a credential source failed")
        return host.lower() in wanted

    before, after = upstream_tls.addons(settings, wants_interception)
    i = next(i for i, a in enumerate(addons) if isinstance(a, TlsConfig))
    addons[i + 1:i + 1] = after
    addons[i:i] = before
    master.addons.add(*addons)
    master.options.update(**upstream_tls.mitmproxy_options(settings))
    master.options.update(connection_strategy="eager")

    class Ready:
        def running(self):
            server = next(iter(master.addons.get("proxyserver").servers))
            print(f"listening on {server.listen_addrs[0][1]}", flush=True)

    master.addons.add(Ready())
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, master.shutdown)
    await master.run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    with open(sys.argv[1]) as f:
        asyncio.run(main(json.load(f)))
