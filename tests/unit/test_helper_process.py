"""credentials/sources/process.py: the environment and the stderr echo of credential helpers
(token-command, git's helpers, the keyring command)."""

from __future__ import annotations

import sys

from credproxy.credentials.sources.process import echo_stderr, helper_environment, run_bounded

TOKEN = "pr0xy-t0ken-s3cret"


def test_the_proxy_pair_and_proxy_variables_that_carry_it_are_removed():
    env = helper_environment({
        "PATH": "/usr/bin", "CREDPROXY_PROXYAUTH": f"me:{TOKEN}",
        "HTTPS_PROXY": f"http://me:{TOKEN}@127.0.0.1:8899",
        "http_proxy": f"http://credproxy:{TOKEN}@[::1]:8899",
        "ALL_PROXY": "http://corp.example:3128",
    })
    assert env == {"PATH": "/usr/bin", "ALL_PROXY": "http://corp.example:3128"}


def test_what_credproxy_env_replaced_comes_back():
    env = helper_environment({
        "CREDPROXY_ENV_ACTIVE": "1", "HTTPS_PROXY": "http://127.0.0.1:8899",
        "CREDPROXY_PREVIOUS_HTTPS_PROXY": "http://corp.example:3128", "HTTP_PROXY": "http://127.0.0.1:8899",
    })
    assert env["HTTPS_PROXY"] == "http://corp.example:3128" and "HTTP_PROXY" not in env


def test_all_proxy_is_not_one_credproxy_env_sets():
    env = {"CREDPROXY_ENV_ACTIVE": "1", "ALL_PROXY": "socks5://corp.example:1080"}
    assert helper_environment(env) == env


def test_a_company_proxy_with_its_own_password_is_kept():
    env = {"HTTPS_PROXY": "http://bob:corp-pw@corp.example:3128", "NO_PROXY": "localhost"}
    assert helper_environment(env) == env


def test_the_runner_uses_it(monkeypatch):
    monkeypatch.setenv("CREDPROXY_PROXYAUTH", f"me:{TOKEN}")
    show = [sys.executable, "-c", "import os; print(os.environ.get('CREDPROXY_PROXYAUTH', 'absent'))"]
    assert run_bounded(show, env=None, timeout=10).stdout.strip() == b"absent"


def test_stderr_is_echoed_with_controls_escaped(capfd):
    echo_stderr("one\x1b[31m red\r\nbell\x07 \u202eevil")
    err = capfd.readouterr().err
    assert err == "one\\x1b[31m red\\x0d\nbell\\x07 \\u202eevil\n"
