"""Issue 9 finding 10: CREDPROXY_TEST_RESOLVE, a test hook, was honoured in normal use with
any target address, and its notice was logged at INFO (invisible by default). Through a
real `credproxy serve`: a non-loopback target stops start-up with an error naming why; a
loopback one works and says so with a WARNING at the default verbosity."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.conftest import credproxy_factory, echo_factory, proxied_env, tls_certs  # noqa: F401 (fixtures)
from tests.helpers.clients import curl
from tests.helpers.proxy import proxy_env

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("target", ["10.0.0.1", "192.0.2.7", "::ffff:8.8.8.8", "2001:db8::1", "evil.example"])
def test_a_non_loopback_target_is_a_start_up_error(tmp_path, target):
    env = proxy_env(tmp_path, resolve=(), extra={"CREDPROXY_TEST_RESOLVE": f"pkgs.test=127.0.0.1,pypi.org={target}",
                                                 "CREDPROXY_DATA_DIR": str(tmp_path / "data")})
    proc = subprocess.run([sys.executable, "-m", "credproxy.cli", "serve", "--port", "0"], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "credproxy listening" not in proc.stdout
    assert f"CREDPROXY_TEST_RESOLVE: pypi.org={target} is not a loopback address" in proc.stderr, proc.stderr
    assert "Unset CREDPROXY_TEST_RESOLVE" in proc.stderr


def test_a_loopback_target_works_and_warns_by_default(tmp_path, echo_factory, credproxy_factory, proxied_env):  # noqa: F811
    server = echo_factory(host="other.test")
    (tmp_path / "credproxy-config.toml").write_text('intercept-hosts = ["other.test"]\n')
    proxy = credproxy_factory()  # no -v; proxy_env maps the test names to 127.0.0.1
    out = curl("-o", "/dev/null", "-w", "%{http_code}", server.url_for(path="/x"), env=proxied_env(proxy))
    assert out.stdout == "200", out.stderr
    proxy.stop()
    [line] = [line for line in proxy.stderr().splitlines() if "CREDPROXY_TEST_RESOLVE" in line]
    assert "warning" in line.lower() and "other.test=127.0.0.1" in line and "unset it for normal use" in line, line
