"""A reload never parses a credential file on mitmproxy's event loop (proxy/reload.py,
credentials/resolver.py): people keep generated netrc files with thousands of machines, and
while one parses on the loop every connection of every client waits.

Real `credproxy serve`, a 20,000-machine netrc (about 3 MB) in its home, two request streams
on keep-alive connections to HTTPS servers on 127.0.0.1 whose host is not in that netrc:
- one to a host nothing names (its TLS relayed untouched: only the event loop serves it);
- one to a host whose credential is in the store (`credproxy auth login`), which comes after
  the netrc in the chain: on a session-cache hit each request asks the fast sources again,
  the netrc among them, and after a rewrite that source would parse its file.
The netrc is rewritten three times (the watcher reloads each time; the intercepted stream's
next request finds its netrc source stale, and waits for it to read the file, in a worker).
The relayed stream must never wait anywhere near as long as a parse takes; the parse time is
measured in this test (here, and as the stored stream's slowest request), so the bound is
relative.
"""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path

import pytest

from credproxy.credentials.model import secret_forms
from tests.helpers.proxy import credproxy_cmd, proxy_env
from tests.helpers.proxy_client import client_context
from tests.helpers.timing import LatencyStream, big_netrc, netrc_parse_seconds, replace_file

pytestmark = pytest.mark.e2e

PW = "store-pw-Kq7"
REWRITES = 3


def test_rewriting_a_huge_netrc_does_not_stall_other_connections(tmp_path, tls_certs, echo_factory,
                                                                  credproxy_factory):
    relayed = echo_factory(host="other.test")  # nothing names it: passthrough
    stored = echo_factory(host="other.test", credentials=("ivan", PW))  # another port: another realm
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem)
    login = subprocess.run(credproxy_cmd("auth", "login", f"https://other.test:{stored.port}/", "-u", "ivan",
                                         "--password", "-"), env=env, input=PW + "\n", capture_output=True,
                           text=True, timeout=60)
    assert login.returncode == 0, login.stderr
    netrc = Path(env["HOME"]) / ".netrc"
    replace_file(netrc, big_netrc())
    parse = netrc_parse_seconds(netrc)
    # made now: generating 3 MB of text would hold this process's GIL (its client threads)
    rewrites = [big_netrc(seed=seed) for seed in range(1, REWRITES + 1)]
    proxy = credproxy_factory("-v", env=env, timeout=60)

    streams = [
        LatencyStream(proxy, relayed.url_for(path="/relayed"), client_context(str(tls_certs.ca_pem))),
        LatencyStream(proxy, stored.url_for(path="/simple/pkg/"), client_context(str(proxy.ca_cert))),
    ]
    for stream in streams:
        stream.start()
    try:
        time.sleep(1.0)  # both flowing before the first rewrite
        for seed, text in enumerate(rewrites, 1):
            replace_file(netrc, text)
            deadline = time.monotonic() + 30 + 10 * parse
            while proxy.stderr().count("reloaded settings and credentials") < seed:
                assert time.monotonic() < deadline, f"rewrite {seed} was not reloaded:\n{proxy.stderr()[-2000:]}"
                time.sleep(0.1)
            time.sleep(0.5)  # requests keep flowing after the swap
    finally:
        for stream in streams:
            stream.stop()

    relayed_stream, stored_stream = streams
    assert not relayed_stream.errors and not stored_stream.errors, (relayed_stream.errors, stored_stream.errors)
    assert len(relayed_stream.samples) > 50 and len(stored_stream.samples) > 10
    assert stored.requests[-1].authorization == "Basic " + base64.b64encode(f"ivan:{PW}".encode()).decode()
    worst = relayed_stream.worst()
    # how long a parse takes inside the proxy, under this run's load: the stored stream's
    # slowest request waited for its netrc source to read the rewritten file (in a worker);
    # and the same parse timed in this process before the run
    parse_in_proxy = stored_stream.worst()
    unit = max(parse, parse_in_proxy)
    print(f"netrc parse {parse:.3f} s here, {parse_in_proxy:.3f} s in the proxy; relayed stream: "
          f"{len(relayed_stream.samples)} requests, worst {worst * 1000:.0f} ms, p99 {relayed_stream.p99() * 1000:.0f} ms")
    # on the loop, each reload (and a stale source asked inline) held every connection for a
    # whole parse; off it, the relayed stream waits for the GIL at most, not for the parse
    assert worst < unit / 2, f"a relayed request waited {worst:.2f} s; a parse takes {unit:.2f} s"
    text = proxy.stderr() + proxy.stdout()
    assert not any(form in text for form in secret_forms(PW)), "the stored password leaked into the log"
