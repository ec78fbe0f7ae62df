"""Resolver.proxy_credentials: the company proxy's password from the chain (real netrc and
store sources on files in tmp), never the netrc default entry or a registry's cached one."""

from __future__ import annotations

import asyncio

from credproxy.config import Settings
from credproxy.credentials.model import Credentials
from credproxy.credentials.resolver import Resolver
from credproxy.credentials.sources.base import Answer

SECRET = "pr0xy-pa55"


def resolver_for(tmp_path, netrc_text: str = "", **env) -> Resolver:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    if netrc_text:
        (home / ".netrc").write_text(netrc_text)
        (home / ".netrc").chmod(0o600)
    full_env = {"HOME": str(home), "CREDPROXY_CREDENTIALS_DIR": str(tmp_path / "store"),
                "UV_CREDENTIALS_DIR": str(tmp_path / "uv-store"), **env}
    return Resolver(Settings(env=full_env))


def test_netrc_machine_entry_answers_for_the_proxy_host(tmp_path):
    r = resolver_for(tmp_path, f"machine proxy.corp login alice password {SECRET}\n")
    d = r.proxy_credentials("http://proxy.corp:3128/")
    assert d.action == "inject" and d.source == "netrc"
    assert d.credentials == Credentials.basic("alice", SECRET)
    assert SECRET not in d.reason and SECRET not in repr(d)


def test_the_netrc_default_entry_never_answers_for_a_proxy(tmp_path):
    r = resolver_for(tmp_path, f"default login alice password {SECRET}\n")
    d = r.proxy_credentials("http://proxy.corp:3128/")
    assert d.action == "send" and d.credentials is None
    assert "proxy.corp" in d.reason and SECRET not in d.reason


def test_a_registry_credential_in_the_session_cache_is_not_used_for_the_proxy(tmp_path):
    r = resolver_for(tmp_path)
    from credproxy.credentials.resolver import Decision

    r.record("http://proxy.corp:3128/", Decision("inject", Credentials.basic("bob", "x"), source="store"), 200)
    assert r.resolve("http://proxy.corp:3128/").action in ("leave", "send", "inject")
    assert r.proxy_credentials("http://proxy.corp:3128/").action == "send"


def test_store_entry_for_the_proxy_url(tmp_path):
    """The store holds https:// entries only (uv); one for https://proxy:port answers for the
    plain-http proxy at that host and port."""
    import subprocess
    import sys

    env = {"HOME": str(tmp_path / "home"), "CREDPROXY_CREDENTIALS_DIR": str(tmp_path / "store"),
           "UV_CREDENTIALS_DIR": str(tmp_path / "uv-store"), "PATH": "/usr/bin:/bin"}
    (tmp_path / "home").mkdir()
    done = subprocess.run([sys.executable, "-m", "credproxy.cli", "auth", "login", "https://proxy.corp:3128",
                           "--username", "alice", "--password", "-"], input=SECRET + "\n", env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    r = Resolver(Settings(env=env))
    d = asyncio.run(r.aproxy_credentials("http://proxy.corp:3128/"))
    assert d.action == "inject" and d.credentials == Credentials.basic("alice", SECRET)
    assert d.source == "store"


class _Keyring:
    name, fast = "keyring", False

    def __init__(self):
        self.calls = []

    def lookup(self, url, username, index):
        self.calls.append((url, username))
        if username == "alice":
            return Answer(self.name, Credentials.basic("alice", SECRET), detail="keyring item")
        return Answer(self.name, detail="no item")

    def knows_host(self, *a):
        return False


def test_keyring_is_asked_only_with_a_username_from_the_proxy_url(tmp_path):
    keyring = _Keyring()
    r = Resolver(Settings(env={"HOME": str(tmp_path)}), sources=[keyring])
    d = r.proxy_credentials("http://proxy.corp:3128/")
    assert d.action == "send" and keyring.calls == []
    assert "no username" in d.reason
    d = r.proxy_credentials("http://proxy.corp:3128/", username="alice")
    assert d.action == "inject" and d.source == "keyring"
    assert keyring.calls == [("http://proxy.corp:3128/", "alice")]
