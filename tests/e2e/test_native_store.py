"""uv's native store (issue 12 point 6): `UV_PREVIEW_FEATURES=native-auth` turns it on, as in
uv; `credproxy auth login/logout` then write to and remove from the OS keyring under uv's
service names, and the proxy reads them.

The OS keyring here is keyrings.alt's PlaintextKeyring (a file under the test's own
XDG_DATA_HOME), chosen with PYTHON_KEYRING_BACKEND: this covers a backend the user chose
explicitly (credproxy honours it; uv cannot read it) and the proxy's username-only retry.
Real uv against a real Secret Service (gnome-keyring), both ways, is
test_native_keyring_uv.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.clients import installed, pip_install, run
from tests.helpers.proxy import credproxy_cmd, proxy_env

from .conftest import INDEX_PASSWORD, INDEX_USERNAME
from .observe_setup import leaks

pytestmark = pytest.mark.e2e

BACKEND = "keyrings.alt.file.PlaintextKeyring"
NATIVE = {"UV_PREVIEW_FEATURES": "native-auth", "PYTHON_KEYRING_BACKEND": BACKEND}


def _env(tmp_path, **extra):
    return proxy_env(tmp_path, extra={**NATIVE, "CREDPROXY_DATA_DIR": str(tmp_path / "cli-data"), **extra})


def _keyring_get(tmp_path, service: str, user: str) -> str | None:
    code = ("import keyring, sys; v = keyring.get_password(sys.argv[1], sys.argv[2]); "
            "print('NONE' if v is None else 'FOUND:' + str(len(v)))")
    out = run([sys.executable, "-c", code, service, user], env=_env(tmp_path), timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _scan(label: str, text: str) -> None:
    found = leaks(text, INDEX_PASSWORD, INDEX_USERNAME)
    assert found == [], f"{label} contains {found}"


def test_login_writes_uv_service_names_the_proxy_reads_them_logout_removes(
        tmp_path, private_index, credproxy_factory, proxied_env):
    root = f"https://pkgs.test:{private_index.port}/simple/"
    (tmp_path / "credproxy-config.toml").write_text(f'[[index]]\nname = "corp"\nurl = "{root}"\nusername = "{INDEX_USERNAME}"\n')
    login = subprocess.run(credproxy_cmd("auth", "login", root, "--username", INDEX_USERNAME, "--password", "-"),
                           env=_env(tmp_path), input=INDEX_PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert login.returncode == 0, login.stderr
    # uv's login target for https is the host: service `uv:<host>:<port>`, account = username
    assert _keyring_get(tmp_path, f"uv:pkgs.test:{private_index.port}", INDEX_USERNAME) == f"FOUND:{len(INDEX_PASSWORD)}"
    assert not (tmp_path / "credproxy-credentials" / "credentials.toml").exists(), "not the file store"

    proxy = credproxy_factory("-v", extra_env=NATIVE)
    env = proxied_env(proxy)
    got = pip_install(tmp_path / "t1", "--index-url", private_index.url, "private-pkg", env=env)
    assert got.returncode == 0, got.stderr
    assert installed(tmp_path / "t1") == {"private-pkg": "1.0", "private-dep": "1.0"}
    explained = run(credproxy_cmd("explain", private_index.url), env=_env(tmp_path), timeout=60)
    assert "decision: inject from native" in explained.stdout, explained.stdout + explained.stderr
    proxy.stop()
    assert "source=native" in proxy.stderr()

    logout = run(credproxy_cmd("auth", "logout", root, "--username", INDEX_USERNAME), env=_env(tmp_path), timeout=60)
    assert logout.returncode == 0, logout.stderr
    assert _keyring_get(tmp_path, f"uv:pkgs.test:{private_index.port}", INDEX_USERNAME) == "NONE"
    again = run(credproxy_cmd("auth", "logout", root, "--username", INDEX_USERNAME), env=_env(tmp_path), timeout=60)
    assert again.returncode != 0 and "No matching entry found" in again.stderr

    proxy2 = credproxy_factory(extra_env=NATIVE)
    refused = pip_install(tmp_path / "t2", "--index-url", private_index.url, "private-pkg", env=proxied_env(proxy2))
    assert refused.returncode != 0
    proxy2.stop()
    for label, text in (("login", login.stdout + login.stderr), ("logout", logout.stdout + logout.stderr),
                        ("proxy log", proxy.stderr() + proxy2.stderr()), ("explain", explained.stdout + explained.stderr),
                        ("pip", got.stdout + got.stderr)):
        _scan(label, text)


def test_username_only_is_completed_from_the_native_store_after_a_401(
        tmp_path, private_index, credproxy_factory, proxied_env):
    """uv's username-only retry: a client sends a username and no password to a host no index
    names; after the 401 the keyring is asked for that user, and the request is re-sent."""
    (tmp_path / "credproxy-config.toml").write_text('intercept-hosts = ["pkgs.test"]\n')
    login = subprocess.run(credproxy_cmd("auth", "login", private_index.url, "--username", INDEX_USERNAME,
                                         "--password", "-"),
                           env=_env(tmp_path), input=INDEX_PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert login.returncode == 0, login.stderr
    proxy = credproxy_factory("-v", extra_env=NATIVE)
    env = proxied_env(proxy)
    got = run(["curl", "-q", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30",
               "-u", f"{INDEX_USERNAME}:", private_index.url + "private-pkg/"], env=env, timeout=40)
    assert got.stdout == "200", got.stdout + got.stderr
    # the first request went with the username only (refused: pypiserver says 403), the
    # re-send with the password from the native store
    assert [(r.status, r.auth) for r in private_index.requests()] == [(403, True), (200, True)]
    proxy.stop()
    log = proxy.stderr()
    assert "source=native auth=retry" in log, log
    _scan("proxy log", log)
