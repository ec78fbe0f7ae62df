"""A username that is the secret (GitHub's `TOKEN:x-oauth-basic`, a URL's `TOKEN@host`) is
masked wherever credproxy names a user: the request log, `--remember`'s log line, `explain`.

The leak scans elsewhere plant a password; this plants the token as the username, against a
real `credproxy serve -v --remember`: a client sends `ghp_…:x-oauth-basic`, the upstream accepts
it, credproxy remembers it, and a netrc entry of the same shape answers `explain`. The token
reaches the upstream (it is the credential) and never the log or the output."""

from __future__ import annotations

import base64
import subprocess

import pytest

from tests.helpers.proxy_client import client_context
from tests.helpers.proxy_client import get as _get
from tests.helpers.proxy import credproxy_cmd, proxy_env, start_credproxy

from .test_registry_sources_scope import echo_factory, tls_certs  # noqa: F401

pytestmark = pytest.mark.e2e

TOKEN = "ghp_T0kenAsUsername0123456789abcdefXYZ"
PASSWORD = "x-oauth-basic"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_token_username_is_masked_in_the_log_remember_and_explain(tmp_path, tls_certs, echo_factory):  # noqa: F811
    index = echo_factory(host="pkgs.test", credentials=(TOKEN, PASSWORD))
    root = index.url_for("pkgs.test", "/org/simple/")
    (tmp_path / "credproxy-config.toml").write_text(f'[[index]]\nname = "gh"\nurl = "{root}"\n')
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem)
    proxy = start_credproxy(tmp_path, "-v", "--remember", env=env)
    context = client_context(str(proxy.ca_cert), str(tls_certs.ca_pem))
    try:
        first = _get(proxy, index.url_for("pkgs.test", "/org/simple/pkg/"), context,
                     headers={"Authorization": _basic(TOKEN, PASSWORD)})
        assert first.status == 200
        again = _get(proxy, index.url_for("pkgs.test", "/org/simple/pkg/"), context)  # remembered, injected
        assert again.status == 200
    finally:
        proxy.stop()
    assert [r.authorization for r in index.requests] == [_basic(TOKEN, PASSWORD)] * 2  # it is the credential
    log = proxy.stderr()
    assert "remembered " in log and "for **** in" in log, log
    explained = subprocess.run(credproxy_cmd("explain", index.url_for("pkgs.test", "/org/simple/pkg/")),
                               env=env, capture_output=True, text=True, timeout=60)
    assert explained.returncode == 0, explained.stderr
    assert "****:****" in explained.stdout, explained.stdout  # the answer is shown, masked
    for label, text in (("proxy log", log), ("explain", explained.stdout + explained.stderr)):
        assert TOKEN not in text and TOKEN[:12] not in text, f"{label} shows the token username:\n{text}"
        assert base64.b64encode(f"{TOKEN}:{PASSWORD}".encode()).decode() not in text


def test_auth_login_and_logout_do_not_echo_a_token_username(tmp_path):
    """`credproxy auth login URL --username TOKEN --password x-oauth-basic` (GitHub's form for git
    over HTTPS) says what it stored without the token; so does logout."""
    from tests.helpers.proxy import proxy_env
    env = proxy_env(tmp_path)
    url = "https://git.example.test/org/repo.git"
    login = subprocess.run(credproxy_cmd("auth", "login", url, "--username", TOKEN, "--password", "-"),
                           env=env, input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert login.returncode == 0, login.stderr
    assert "Stored credentials for ****@" in login.stderr, login.stderr
    logout = subprocess.run(credproxy_cmd("auth", "logout", url, "--username", TOKEN),
                            env=env, capture_output=True, text=True, timeout=60)
    assert logout.returncode == 0, logout.stderr
    assert "Removed credentials for ****@" in logout.stderr, logout.stderr
    for text in (login.stdout + login.stderr, logout.stdout + logout.stderr):
        assert TOKEN not in text and TOKEN[:12] not in text, text
