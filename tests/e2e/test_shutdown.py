"""Stopping `credproxy serve` while a credential helper hangs (SIGTERM, `credproxy service
stop`, Ctrl-C): the proxy exits at once and leaves no helper running. Before, Python joined
the lookup threads at exit, so the proxy waited out the helper's `keyring-timeout`.

Real proxy, real curl, a fake `keyring` command that waits on a gate the test never opens.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers.clients import curl
from tests.helpers.keyring_script import GATE_LIMIT, read_calls, read_pids, write_keyring_script
from tests.helpers.proxy import proxy_env
from tests.helpers.timing import wait_gone

pytestmark = pytest.mark.e2e

SECRET = "kr-secret-Hq4"
#: how long the proxy may take to stop with a helper under way (mitmproxy's own shutdown and
#: the reaper's kill, on a loaded machine): well under what the helper would hang
STOPS_WITHIN = 5.0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_proxy_stops_a_hanging_keyring_command_at_once(
        tmp_path, tls_certs, echo_factory, credproxy_factory, proxied_env, sig):
    echo = echo_factory(host="other.test", credentials=("rita", SECRET))
    bin_dir, log = tmp_path / "keyring-bin", tmp_path / "keyring-calls.jsonl"
    write_keyring_script(bin_dir, {}, log=log, gate=tmp_path / "never")  # hangs GATE_LIMIT s
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem, extra={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    Path(env["CREDPROXY_CONFIG"]).write_text(
        'keyring-provider = "subprocess"\nkeyring-timeout = 60\n'
        f'[[index]]\nname = "private"\nurl = "https://other.test:{echo.port}/"\nusername = "rita"\n')
    proxy = credproxy_factory("-v", env=env)
    proxied = proxied_env(proxy)

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                              echo.url_for(path="/simple/pkg/"), env=proxied)
        deadline = time.monotonic() + 15
        while not read_pids(log) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert read_pids(log), "the keyring command never started"
        started = time.monotonic()
        took = None
        proxy.proc.send_signal(sig)
        try:
            proxy.proc.wait(timeout=GATE_LIMIT + 10)
            took = time.monotonic() - started
        finally:
            left = wait_gone(read_pids(log), timeout=5)
        pending.result(timeout=30)  # the client's request ends one way or another
    print(f"stopped {took:.2f} s after {signal.Signals(sig).name}")
    assert took < STOPS_WITHIN, f"the proxy took {took:.1f} s to stop: it waited for the keyring command"
    assert left == [], "the keyring command outlived the proxy"
    assert "stopped 1 credential helper program(s) still running" in proxy.stderr()
    assert len(read_calls(log)) == 1, "a keyring command was started after the stop"
    assert SECRET not in proxy.stderr() + proxy.stdout(), proxy.stderr()
