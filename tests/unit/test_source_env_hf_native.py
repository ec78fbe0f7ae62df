from __future__ import annotations

import keyring.backend
import keyring.errors
import pytest

from credproxy.credentials.index import Index
from credproxy.credentials.model import secret_forms
from credproxy.credentials.sources.hf import HuggingFaceSource
from credproxy.credentials.sources.native import NativeKeyringSource, native_services
from credproxy.credentials.sources.url_env import IndexCredentialsSource

# --- index URL / env --------------------------------------------------------------------

IX = Index.from_url("https://urluser:urlpw@pkgs.example.com/simple/", name="my-index")
PLAIN = Index.from_url("https://bob:bobpw@other.example/r/simple")
BARE = Index.from_url("https://bare.example/simple", name="bare")


@pytest.mark.parametrize(
    "env, url, username, expected, label",
    [
        ({}, "https://pkgs.example.com/x", None, ("urluser", "urlpw"), "index-url"),
        ({"UV_INDEX_MY_INDEX_USERNAME": "envu", "UV_INDEX_MY_INDEX_PASSWORD": "envp"},
         "https://pkgs.example.com/x", None, ("envu", "envp"), "env:UV_INDEX_MY_INDEX"),
        # exclusive: username only from env, URL password not merged
        ({"UV_INDEX_MY_INDEX_USERNAME": "envu"}, "https://pkgs.example.com/x", None, ("envu", None), "env:UV_INDEX_MY_INDEX"),
        # empty username = none, empty password = complete
        ({"UV_INDEX_MY_INDEX_USERNAME": "", "UV_INDEX_MY_INDEX_PASSWORD": ""},
         "https://pkgs.example.com/x", None, (None, ""), "env:UV_INDEX_MY_INDEX"),
        ({}, "https://pkgs.example.com/x", "urluser", ("urluser", "urlpw"), "index-url"),
        ({}, "https://pkgs.example.com/x", "someoneelse", None, "index-url"),
        ({}, "https://other.example/r/files/a.whl", None, ("bob", "bobpw"), "index-url"),
        ({}, "https://other.example/rr/files/a.whl", None, None, "index-url"),
        ({}, "https://bare.example/simple/x", None, None, "index-url"),
        ({"UV_INDEX_BARE_PASSWORD": "tok"}, "https://bare.example/simple/x", None, (None, "tok"), "env:UV_INDEX_BARE"),
    ],
)
def test_index_credentials(env, url, username, expected, label):
    src = IndexCredentialsSource([IX, PLAIN, BARE], env)
    ans = src.lookup(url, username, None)
    assert ans.source == label
    if expected is None:
        assert not ans.found
    else:
        assert (ans.credentials.username, ans.credentials.password) == expected
    for secret in ("urlpw", "envp", "bobpw", "tok"):
        assert secret not in ans.detail + repr(ans) + str(ans)


def test_index_knows_host():
    src = IndexCredentialsSource([IX, BARE], {})
    assert src.knows_host("https", "pkgs.example.com", 443)
    assert not src.knows_host("https", "bare.example", 443)
    assert not src.knows_host("http", "pkgs.example.com", 80)
    assert IndexCredentialsSource([BARE], {"UV_INDEX_BARE_USERNAME": "u"}).knows_host("https", "bare.example", 443)


# --- Hugging Face ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env, url, found",
    [
        ({"HF_TOKEN": "hf_x"}, "https://huggingface.co/api/models", True),
        ({"HF_TOKEN": "hf_x"}, "https://huggingface.co:443/x", True),
        ({"HF_TOKEN": "hf_x"}, "https://HuggingFace.co/x", True),
        ({"HF_TOKEN": "hf_x"}, "http://huggingface.co/x", False),
        ({"HF_TOKEN": "hf_x"}, "https://cdn.huggingface.co/x", False),
        ({"HF_TOKEN": "hf_x"}, "https://huggingface.co:8443/x", False),
        ({"HF_TOKEN": ""}, "https://huggingface.co/x", False),
        ({"HF_TOKEN": "hf_x", "UV_NO_HF_TOKEN": ""}, "https://huggingface.co/x", False),
        ({}, "https://huggingface.co/x", False),
    ],
)
def test_hf(env, url, found):
    src = HuggingFaceSource(env)
    ans = src.lookup(url, None, None)
    assert ans.found is found
    if found:
        assert ans.credentials.header_value() == "Bearer hf_x" and ans.source == "hf-token"
    assert "hf_x" not in ans.detail + repr(ans) + str(ans)
    assert src.knows_host("https", "huggingface.co", 443) is (bool(env.get("HF_TOKEN")) and "UV_NO_HF_TOKEN" not in env)


# --- native keyring ----------------------------------------------------------------------


class MemoryKeyring(keyring.backend.KeyringBackend):
    priority = 1

    def __init__(self, entries=None, fail_on=()):
        super().__init__()
        self.entries = dict(entries or {})
        self.fail_on = set(fail_on)
        self.asked: list[tuple[str, str]] = []

    def get_password(self, service, username):
        self.asked.append((service, username))
        if service in self.fail_on:
            raise keyring.errors.KeyringError("backend exploded with secret nat1ve-pw")
        return self.entries.get((service, username))

    def set_password(self, service, username, password):
        self.entries[(service, username)] = password

    def delete_password(self, service, username):
        self.entries.pop((service, username), None)


@pytest.mark.parametrize(
    "url, index_url, expected",
    [
        ("https://h.example/simple/a/", "https://h.example/simple/", ["uv:https://h.example/", "uv:h.example"]),
        ("https://h.example:8443/r/x", None, ["uv:https://h.example:8443/r/x", "uv:h.example:8443"]),
        ("http://127.0.0.1:8080/simple/", None,
         ["uv:http://127.0.0.1:8080/simple/", "uv:127.0.0.1:8080", "uv:http://127.0.0.1:8080"]),
    ],
)
def test_native_service_order(url, index_url, expected):
    ix = Index.from_url(index_url) if index_url else None
    assert native_services(url, ix) == expected
    kr = MemoryKeyring()
    ans = NativeKeyringSource(kr).lookup(url, "alice", ix)
    assert not ans.found and [s for s, _ in kr.asked] == expected


def test_native_found_at_host_level():
    kr = MemoryKeyring({("uv:h.example", "alice"): "nat1ve-pw"})
    src = NativeKeyringSource(kr)
    ans = src.lookup("https://h.example/simple/x", "alice", None)
    assert (ans.credentials.username, ans.credentials.password) == ("alice", "nat1ve-pw")
    assert ans.source == "native" and not src.fast
    assert "nat1ve-pw" not in ans.detail + repr(ans)
    assert not src.knows_host("https", "h.example", 443)


def test_native_needs_username():
    kr = MemoryKeyring({("uv:h.example", "alice"): "pw"})
    ans = NativeKeyringSource(kr).lookup("https://h.example/", None, None)
    assert ans.skipped and ans.detail == "skipped: no username known" and kr.asked == []


def test_native_backend_error_is_one_warning(caplog):
    kr = MemoryKeyring({("uv:h.example", "alice"): "nat1ve-pw"}, fail_on={"uv:https://h.example/"})
    src = NativeKeyringSource(kr)
    a1 = src.lookup("https://h.example/", "alice", None)
    src.lookup("https://h.example/", "alice", None)
    assert a1.found  # the host-level entry still answers
    assert len(src.warnings) == 1 and "uv:https://h.example/" in src.warnings[0]
    for form in secret_forms("nat1ve-pw", "alice"):
        assert form not in caplog.text + " ".join(src.warnings) + a1.detail
