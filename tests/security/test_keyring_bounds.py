"""Issue 9 finding 5 (second and third bullets): a `keyring` command is bounded.

A real `credproxy serve` asks a real `keyring` executable (tests/helpers/keyring_script.py)
for the index's password while a real curl request waits:

- a keyring that prints 300 MB: the proxy keeps at most 64 KiB of it, its memory stays
  small, and the request gets an answer (without a credential);
- a keyring that answers at once but leaves a grandchild behind (setsid, holding its stdout
  and stderr open): the request is not delayed, and the grandchild is gone afterwards;
- a keyring that hangs: killed after keyring-timeout, its pid gone afterwards."""

from __future__ import annotations

import os
import time

import pytest

from credproxy.credentials.model import secret_forms
from tests.e2e.conftest import credproxy_factory, echo_factory, proxied_env, tls_certs  # noqa: F401 (fixtures)
from tests.helpers.clients import curl
from tests.helpers.keyring_script import read_grandchild_pids, read_pids, write_keyring_script
from tests.helpers.timing import wait_gone

pytestmark = pytest.mark.e2e

USER, SECRET = "alice", "kr-S3cret/+%="


@pytest.fixture
def keyring_world(tmp_path, echo_factory, credproxy_factory, proxied_env):  # noqa: F811
    """start(answer, timeout=10, sleep=0) -> (proxy, client env, upstream, keyring log): an index on
    pkgs.test that needs alice's password, which only the keyring knows; `answer` is what
    `keyring get <index url> alice` does."""
    upstream = echo_factory(host="pkgs.test", credentials=(USER, SECRET))
    index_url = upstream.url_for(path="/simple/")
    bin_dir, log = tmp_path / "bin", tmp_path / "keyring-calls.jsonl"

    def start(answer, timeout: float = 10, sleep: float = 0):
        write_keyring_script(bin_dir, {(index_url, USER): answer}, log=log, sleep=sleep)
        (tmp_path / "credproxy-config.toml").write_text(
            f'keyring-provider = "subprocess"\nkeyring-timeout = {timeout}\n\n'
            f'[[index]]\nname = "kr"\nurl = "{index_url}"\nusername = "{USER}"\n')
        proxy = credproxy_factory(extra_env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
        return proxy, proxied_env(proxy), upstream, log

    return start


def _get(env, url: str, timeout: float = 60) -> tuple[int, float]:
    started = time.monotonic()
    out = curl("-o", "/dev/null", "-w", "%{http_code}", url, env=env, timeout=timeout)
    return int(out.stdout or 0), time.monotonic() - started


def test_300_mb_of_keyring_output_keeps_the_proxy_small(keyring_world):
    proxy, env, upstream, log = keyring_world({"stdout_bytes": 300 * 1024 * 1024})
    before = proxy.rss_peak_kb()
    status, _ = _get(env, upstream.url_for(path="/simple/pkg/"))
    assert status == 401  # answered, without a credential
    peak = proxy.rss_peak_kb()
    print(f"proxy peak RSS {peak // 1024} MiB")  # pytest -s, for the report
    assert read_pids(log), "the keyring was never asked"
    assert peak < 200 * 1024, f"proxy peak RSS {peak // 1024} MiB after 300 MB of keyring output"
    assert peak - before < 64 * 1024, f"peak RSS grew by {(peak - before) // 1024} MiB"
    assert wait_gone(read_pids(log)) == [], "the keyring command was left running"
    proxy.stop()
    stderr = proxy.stderr()
    assert "printed more than 64 KiB on stdout, killed (no credentials)" in stderr, stderr


def test_setsid_grandchild_does_not_delay_the_request(keyring_world):
    proxy, env, upstream, log = keyring_world({"stdout": SECRET + "\n", "setsid_grandchild": 120})
    status, elapsed = _get(env, upstream.url_for(path="/simple/pkg/"))
    assert status == 200, proxy.stderr()  # the keyring's answer was used
    assert elapsed < 5, f"the request took {elapsed:.1f}s: it waited for the keyring's grandchild"
    [grandchild] = read_grandchild_pids(log)
    assert wait_gone([grandchild]) == [], "the setsid grandchild is still running"
    proxy.stop()
    for form in secret_forms(SECRET, USER):
        assert form not in proxy.stderr() + proxy.stdout()


def test_hanging_keyring_is_killed_by_pid(keyring_world):
    proxy, env, upstream, log = keyring_world(SECRET, timeout=1, sleep=3600)
    status, elapsed = _get(env, upstream.url_for(path="/simple/pkg/"))
    assert status == 401 and elapsed < 10, (status, elapsed)  # answered, without a credential
    pids = read_pids(log)
    assert pids and wait_gone(pids) == [], "the timed-out keyring command is still running"
    proxy.stop()
    assert "no answer within 1s, killed (no credentials)" in proxy.stderr()
