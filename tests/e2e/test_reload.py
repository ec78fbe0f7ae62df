"""A running `credproxy serve` sees changes (issue 10 point 6), with no restart:

- `credproxy auth logout` -> within 2 s requests go without the removed credential (it was
  in the session cache: before, the proxy kept sending it for as long as it ran);
- `credproxy auth login` with a new password -> used within 2 s;
- a netrc edit -> seen within 2 s;
- SIGHUP after a config edit the watcher cannot see -> the new index is used;
- a config edit that does not load -> one warning, the proxy keeps the previous settings;
- credentials from environment variables are named (never their values) at start-up.

Real proxy, real curl, a real HTTPS server on 127.0.0.1 that records every Authorization.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from credproxy.credentials.model import secret_forms
from tests.helpers.clients import curl
from tests.helpers.proxy import credproxy_cmd, proxy_env
from tests.helpers.timing import until as _until

pytestmark = pytest.mark.e2e

SEEN_WITHIN = 2.0
PW1, PW2 = "first-pw-Zq8", "second-pw-Yx3"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def env(tmp_path, tls_certs):
    return proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem)


def auth(env, *args, stdin=""):
    r = subprocess.run(credproxy_cmd("auth", *args), env=env, input=stdin, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r


def get(proxied, url) -> str:
    r = curl("-o", "/dev/null", "-w", "%{http_code}", url, env=proxied)
    assert r.returncode == 0, r.stderr
    return r.stdout


def until(check, what: str, within: float = SEEN_WITHIN, proxy=None) -> float:
    """tests/helpers/timing.py's until, with this file's limit; on failure, the proxy's log
    (with -v: each request, and when it reloaded) is printed for the report."""
    try:
        return _until(check, what, within)
    except BaseException:
        if proxy is not None:
            print(f"--- proxy log, {time.strftime('%H:%M:%S')} ---\n{proxy.stderr()}")
        raise


def assert_no_secrets(proxy, *secrets):
    text = proxy.stderr() + proxy.stdout()
    for secret in secrets:
        for form in secret_forms(secret):
            assert form not in text, "a secret leaked into the proxy's output"


def logged_in(env, echo_factory, credproxy_factory, proxied_env):
    """An upstream that wants alice:PW1, alice logged in with `credproxy auth login`, and a
    running `credproxy serve -v`: (echo, service, proxy, the client environment)."""
    echo = echo_factory(host="other.test", credentials=("alice", PW1))
    service = f"https://other.test:{echo.port}/"
    auth(env, "login", service, "-u", "alice", "--password", "-", stdin=PW1 + "\n")
    proxy = credproxy_factory("-v", env=env)
    return echo, service, proxy, proxied_env(proxy)


def test_logout_is_seen_within_2s(env, echo_factory, credproxy_factory, proxied_env):
    echo, service, proxy, proxied = logged_in(env, echo_factory, credproxy_factory, proxied_env)
    url = echo.url_for(path="/simple/pkg/")
    assert get(proxied, url) == "200"
    assert get(proxied, url) == "200"  # the credential is now in the session cache
    assert echo.requests[-1].authorization == basic("alice", PW1)

    auth(env, "logout", service, "-u", "alice")
    echo.reset()
    took = until(lambda: get(proxied, url) == "401" and echo.requests[-1].authorization is None,
                 "a request without the removed credential", proxy=proxy)
    # and from then on, never again
    for _ in range(3):
        assert get(proxied, url) == "401"
    assert all(r.authorization is None for r in echo.requests[-3:])
    print(f"logout seen after {took:.2f} s")
    assert_no_secrets(proxy, PW1)


def test_a_request_answered_after_a_logout_does_not_bring_the_credential_back(
        env, echo_factory, credproxy_factory, proxied_env):
    """The race behind a CI failure: a request left with the stored credential, `auth logout`
    made the proxy reload while it was upstream, and its 200 was then recorded in the *new*
    session cache. Every later request carried the removed credential, until the next reload."""
    echo, service, proxy, proxied = logged_in(env, echo_factory, credproxy_factory, proxied_env)
    url = echo.url_for(path="/simple/pkg/")
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(get, proxied, echo.url_for(path="/held/logout/simple/pkg/"))
        until(lambda: any(r.path.startswith("/held/") for r in echo.requests), "the request upstream",
              within=15.0, proxy=proxy)
        auth(env, "logout", service, "-u", "alice")
        until(lambda: "reloaded settings and credentials" in proxy.stderr(), "the reload", proxy=proxy)
        echo.release("logout")
        assert held.result(timeout=30) == "200"  # it went with the credential it started with
    echo.reset()
    for _ in range(3):
        assert get(proxied, url) == "401"
    assert [r.authorization for r in echo.requests] == [None, None, None], proxy.stderr()
    assert_no_secrets(proxy, PW1)


def test_new_password_is_used_within_2s(env, echo_factory, credproxy_factory, proxied_env):
    echo = echo_factory(host="other.test", credentials=("alice", PW1))
    service = f"https://other.test:{echo.port}/"
    auth(env, "login", service, "-u", "alice", "--password", "-", stdin=PW1 + "\n")
    proxy = credproxy_factory(env=env)
    proxied = proxied_env(proxy)
    url = echo.url_for(path="/simple/pkg/")
    assert get(proxied, url) == "200"

    echo.credentials = ("alice", PW2)  # the password was changed upstream
    assert get(proxied, url) == "401"
    auth(env, "login", service, "-u", "alice", "--password", "-", stdin=PW2 + "\n")
    took = until(lambda: get(proxied, url) == "200", "the new password")
    assert echo.requests[-1].authorization == basic("alice", PW2)
    print(f"new password used after {took:.2f} s")
    assert_no_secrets(proxy, PW1, PW2)


def test_netrc_edit_is_seen_within_2s(env, echo_factory, credproxy_factory, proxied_env):
    echo = echo_factory(host="other.test", credentials=("nora", PW1))
    netrc = Path(env["HOME"]) / ".netrc"
    netrc.write_text(f"machine other.test login nora password {PW1}\n")
    netrc.chmod(0o600)
    proxy = credproxy_factory(env=env)
    proxied = proxied_env(proxy)
    url = echo.url_for(path="/simple/pkg/")
    assert get(proxied, url) == "200"
    assert get(proxied, url) == "200"

    echo.credentials = ("nora", PW2)
    netrc.write_text(f"machine other.test login nora password {PW2}\n")
    took = until(lambda: get(proxied, url) == "200", "the edited netrc entry")
    assert echo.requests[-1].authorization == basic("nora", PW2)
    print(f"netrc edit seen after {took:.2f} s")

    netrc.write_text("")  # the entry removed: its cached credential goes too
    until(lambda: get(proxied, url) == "401" and echo.requests[-1].authorization is None,
          "a request without the removed netrc entry")
    assert_no_secrets(proxy, PW1, PW2)


def _rewrite_unseen(path: Path, text: str) -> None:
    """Replace a file's content in place with text of the same length and put its mtime
    back: no stat-based watcher can see this edit, only a SIGHUP reload."""
    before = os.stat(path)
    assert len(text.encode()) == before.st_size
    with open(path, "r+b") as f:
        f.write(text.encode())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_mtime_ns, after.st_size, after.st_ino) == (before.st_mtime_ns, before.st_size, before.st_ino)


def test_sighup_after_config_edit_uses_the_new_index(tmp_path, tls_certs, echo_factory, credproxy_factory, proxied_env):
    old_echo = echo_factory(host="other.test", credentials=("ivan", PW1))
    new_echo = echo_factory(host="other.test", credentials=("ivan", PW1))  # another realm: its port
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem,
                    extra={"UV_INDEX_PRIVATE_USERNAME": "ivan", "UV_INDEX_PRIVATE_PASSWORD": PW1})
    config = Path(env["CREDPROXY_CONFIG"])
    old = f'[[index]]\nname = "private"\nurl = "https://other.test:{old_echo.port}/simple/"\n'
    new = old.replace(str(old_echo.port), str(new_echo.port))
    config.write_text(old)
    proxy = credproxy_factory("-v", env=env)
    proxied = proxied_env(proxy)
    new_url = new_echo.url_for(path="/simple/pkg/")
    assert get(proxied, old_echo.url_for(path="/simple/pkg/")) == "200"
    assert get(proxied, new_url) == "401"  # no index there yet

    _rewrite_unseen(config, new)
    time.sleep(1.0)  # the watcher had its chance and (rightly) saw nothing
    assert get(proxied, new_url) == "401"
    os.kill(proxy.pid, signal.SIGHUP)
    took = until(lambda: get(proxied, new_url) == "200", "the new index after SIGHUP")
    assert new_echo.requests[-1].authorization == basic("ivan", PW1)
    assert proxy.alive()
    print(f"SIGHUP reload seen after {took:.2f} s")

    # the start-up log names the environment credentials, never their values
    stderr = proxy.stderr()
    assert "credentials from environment variables are fixed until a restart: " \
           "UV_INDEX_PRIVATE_PASSWORD, UV_INDEX_PRIVATE_USERNAME" in stderr
    assert "reloaded settings and credentials (SIGHUP) in " in stderr
    assert_no_secrets(proxy, PW1)


def test_broken_config_edit_keeps_previous_settings(tmp_path, tls_certs, echo_factory, credproxy_factory, proxied_env):
    echo = echo_factory(host="other.test", credentials=("ivan", PW1))
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem,
                    extra={"UV_INDEX_PRIVATE_USERNAME": "ivan", "UV_INDEX_PRIVATE_PASSWORD": PW1})
    config = Path(env["CREDPROXY_CONFIG"])
    config.write_text(f'[[index]]\nname = "private"\nurl = "https://other.test:{echo.port}/simple/"\n')
    proxy = credproxy_factory(env=env)
    proxied = proxied_env(proxy)
    url = echo.url_for(path="/simple/pkg/")
    assert get(proxied, url) == "200"

    config.write_text(config.read_text() + "[[index\n")  # saved half-way through an edit
    until(lambda: "but the settings do not load" in proxy.stderr(), "a warning about the broken config")
    assert str(config) in proxy.stderr()
    assert get(proxied, url) == "200" and proxy.alive()
    assert_no_secrets(proxy, PW1)
