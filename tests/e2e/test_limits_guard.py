"""A mitmproxy whose internals changed: a real `credproxy serve` says at start which request
limits are NOT active, and `credproxy doctor` reports it as a problem.

The change is made only inside the child processes: a `sitecustomize` on their PYTHONPATH
replaces `Http1Client.read_headers` (what the response-head limit wraps) with a plain
function, as a mitmproxy refactoring might."""

from __future__ import annotations

import subprocess

import pytest

from credproxy.proxy import limits
from tests.helpers.proxy import credproxy_cmd, hermetic_env, start_credproxy

pytestmark = pytest.mark.e2e

RESPONSE_HEAD = "response head size (502 over 64 KiB)"

SITECUSTOMIZE = """\
from mitmproxy.proxy.layers.http import _http1

_original = _http1.Http1Client.read_headers


def read_headers(self, event):  # a plain function now: the limit's wrapper must not be installed
    return _original(self, event)


_http1.Http1Client.read_headers = read_headers
"""


@pytest.fixture
def changed_env(tmp_path):
    shadow = tmp_path / "changed-mitmproxy"
    shadow.mkdir()
    (shadow / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = hermetic_env(tmp_path)
    env["PYTHONPATH"] = str(shadow)
    return env


def test_serve_names_the_limits_that_are_not_active_and_the_mitmproxy_version(tmp_path, changed_env):
    proxy = start_credproxy(tmp_path, env=changed_env)
    try:
        assert proxy.alive()
    finally:
        proxy.stop()
    log = proxy.stderr()
    assert f"these request limits are NOT active on mitmproxy {limits.mitmproxy_version()}: {RESPONSE_HEAD} " \
           "(Http1Client.read_headers: no longer a generator)" in log, log
    assert "pip install 'mitmproxy>=11.0.2,<13'" in log
    # only that one: the others are named nowhere as inactive
    assert "request head size" not in log.split("NOT active", 1)[1].split("Fix:", 1)[0]


def test_doctor_reports_inactive_limits_as_a_problem(tmp_path, changed_env):
    out = subprocess.run(credproxy_cmd("doctor"), env=changed_env, capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert out.returncode == 1
    assert f"✗ request limits NOT active on mitmproxy {limits.mitmproxy_version()}: {RESPONSE_HEAD}" in out.stdout, \
        out.stdout + out.stderr
    # and an unchanged mitmproxy: the check passes
    env = dict(changed_env)
    env.pop("PYTHONPATH")
    out = subprocess.run(credproxy_cmd("doctor"), env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert f"✓ request limits active on mitmproxy {limits.mitmproxy_version()}: request head size" in out.stdout, \
        out.stdout
