"""credproxy.hints: the advice every message takes, table-driven."""

from __future__ import annotations

import urllib.request

import pytest

from credproxy.credentials.index import Index
from credproxy.credentials.model import Credentials
from credproxy.credentials.resolver import Decision
from credproxy.hints import entry_url, no_proxy_match, rejected_message, replace_command


def decision(source: str, creds: Credentials, prefix: str | None = None, index: Index | None = None) -> Decision:
    return Decision("inject", creds, source=source, prefix=prefix, index=index)


ALICE = Credentials.basic("alice", "pw-hint-1")


@pytest.mark.parametrize("d, url, command", [
    (decision("store", ALICE, prefix="https://h/team/"), "https://h/team/simple/x/",
     "credproxy auth login https://h/team/ --username alice --password -"),
    (decision("store", ALICE, index=Index.from_url("https://h:8443/r/simple/")), "https://h:8443/r/simple/x/",
     "credproxy auth login https://h:8443/r --username alice --password -"),  # as login stores it
    (decision("old-store", ALICE, prefix="https://h/team/"), "https://h/team/simple/x/",
     "credproxy auth login https://h/team/ --username alice --password -"),  # the login also moves it
    (decision("store", ALICE), "https://h:8443/simple/x/",
     "credproxy auth login https://h:8443/ --username alice --password -"),
    (decision("store", Credentials.basic("__token__", "t")), "https://h/", "credproxy auth login https://h/ --token -"),
    (decision("store", Credentials.bearer("t")), "https://h/", "credproxy auth login https://h/ --token -"),
    (decision("store", Credentials.basic("o'brien", "pw")), "https://h/",
     "credproxy auth login https://h/ --username 'o'\"'\"'brien' --password -"),
    (decision("netrc", ALICE), "https://h/x/", "edit the password of 'machine h' in your netrc file ($NETRC or ~/.netrc)"),
    (decision("env:UV_INDEX_CORP", ALICE), "https://h/x/",
     "export a working UV_INDEX_CORP_PASSWORD (and UV_INDEX_CORP_USERNAME), then restart the proxy "
     "(environment credentials are read at start)"),
    (decision("keyring", ALICE, prefix="https://h/"), "https://h/x/", "keyring set https://h/ alice"),
    (decision("native", ALICE, prefix="https://h/"), "https://h/x/",
     "UV_PREVIEW_FEATURES=native-auth uv auth login https://h/ --username alice --password -"),
])
def test_replace_command_names_the_entry_and_the_username(d, url, command):
    assert replace_command(d, url) == command


def test_rejected_message_never_shows_the_secret_or_a_username_that_is_the_credential():
    text = rejected_message("https://h/simple/x/", decision("store", ALICE), 401)
    assert "pw-hint-1" not in text and "(username alice)" in text
    token_as_user = decision("netrc", Credentials.basic("ghp_tokenvalue123", ""))
    text = rejected_message("https://h/x/", token_as_user, 403)
    assert "ghp_tokenvalue123" not in text and "refused" in text


def test_entry_url_never_carries_userinfo():
    assert entry_url(decision("store", ALICE, prefix="https://u:p@h/x/"), "https://h/x/y") == "https://h/x/"


@pytest.mark.parametrize("url, no_proxy, entry", [
    ("https://127.0.0.1:8443/simple/", "localhost,127.0.0.1", "127.0.0.1"),
    ("https://127.0.0.1:8443/simple/", "localhost,::1", None),
    ("https://127.0.0.1:8443/simple/", "127.0.0.0/8", "127.0.0.0/8"),
    ("https://pkgs.corp.example/", ".corp.example", ".corp.example"),
    ("https://pkgs.corp.example/", "corp.example", "corp.example"),
    ("https://pkgs.corp.example/", "*", "*"),
    ("https://pkgs.corp.example/", "other.example", None),
    ("https://h:8443/", "h:8443", "h:8443"),
    ("https://[::1]:8443/", "::1", "::1"),
    ("https://localhost:3141/", "", None),
])
def test_no_proxy_match_agrees_with_the_clients(url, no_proxy, entry):
    assert no_proxy_match(url, no_proxy) == entry
    # pip/requests fall back to urllib: whenever urllib bypasses, so do we
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname
    if urllib.request.proxy_bypass_environment(host, {"no": no_proxy}):
        assert entry is not None
