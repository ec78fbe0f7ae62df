"""Scope: a credential is sent, and cached, only under the prefix its source entry names.

Issue 9 findings 4, 8 (cross-talk) and 11, with the real sources (store file, netrc file,
index env credentials) behind the real Resolver; no sockets. The e2e versions against a real
`credproxy serve` are in tests/security/test_scope.py.
"""

from __future__ import annotations

import base64

import pytest

from credproxy.config import Settings
from credproxy.credentials.index import Index
from credproxy.credentials.model import Credentials, covered_segments, covers, path_under, path_views
from credproxy.credentials.resolver import Resolver
from credproxy.credentials.sources.base import Answer
from credproxy.credentials.sources.hf import HuggingFaceSource
from credproxy.credentials.sources.keyring_subprocess import service_prefix
from credproxy.credentials.sources.native import NativeKeyringSource
from credproxy.credentials.sources.netrc import NetrcSource
from credproxy.credentials.sources.store import StoreSource
from credproxy.credentials.sources.url_env import IndexCredentialsSource
from credproxy.credentials.store import Store, StoreEntry


def basic_user_only(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:".encode()).decode()


def store_with(tmp_path, *entries: StoreEntry) -> StoreSource:
    path = tmp_path / "credentials.toml"
    store = Store(path)
    for entry in entries:
        store.add(entry)
    return StoreSource(path)


def password(decision) -> str | None:
    return decision.credentials.password if decision.action == "inject" else None


# --- finding 4: a path-scoped credential stays in its path ----------------------------------


def test_store_entry_for_team_a_is_never_sent_to_team_b_team_c_or_root(tmp_path):
    src = store_with(tmp_path,
                     StoreEntry.basic("https://h.test/team-a/", "a", "pw-a"),
                     StoreEntry.basic("https://h.test/team-b/", "b", "pw-b"))
    r = Resolver(Settings(), [src])
    d = r.resolve("https://h.test/team-a/simple/x/")
    assert (password(d), d.prefix) == ("pw-a", "https://h.test/team-a/")
    r.record("https://h.test/team-a/simple/x/", d, 200)
    # after the success, team-a's credential is cached for /team-a/ only
    assert password(r.resolve("https://h.test/team-a/other")) == "pw-a"
    assert password(r.resolve("https://h.test/team-b/x")) == "pw-b"  # not shadowed
    for url in ("https://h.test/team-c/x", "https://h.test/", "https://h.test/team-ab/x"):
        d = r.resolve(url)
        assert d.action == "send", url
        # and not on a challenge either
        assert r.challenge(url, d, 401) is None, url


def test_a_more_specific_source_entry_beats_a_broader_cached_one(tmp_path):
    src = store_with(tmp_path,
                     StoreEntry.basic("https://h.test/", "root", "pw-root"),
                     StoreEntry.basic("https://h.test/team-b/", "b", "pw-b"))
    r = Resolver(Settings(), [src])
    d = r.resolve("https://h.test/x")
    r.record("https://h.test/x", d, 200)
    assert r.resolve("https://h.test/y").cached
    got = r.resolve("https://h.test/team-b/z")
    assert (password(got), got.cached) == ("pw-b", False)


def test_a_more_specific_cached_entry_beats_a_broader_source_entry(tmp_path):
    # the keyring (slow) answered for the index root and is cached there; later a store entry
    # for the whole host appears: under the index root the cached, more specific one wins
    index = Index.from_url("https://h.test/team/simple/", username="k")
    kr = TokenKeyring()
    src = StoreSource(tmp_path / "credentials.toml")
    r = Resolver(Settings(indexes=[index]), [src, kr])
    d = r.resolve("https://h.test/team/simple/x/")
    assert (password(d), d.prefix) == ("tok1", "https://h.test/team")
    r.record("https://h.test/team/simple/x/", d, 200)
    Store(tmp_path / "credentials.toml").add(StoreEntry.basic("https://h.test/", "s", "pw-store"))
    got = r.resolve("https://h.test/team/simple/y/")
    assert (password(got), got.cached) == ("tok1", True)
    assert password(r.resolve("https://h.test/other")) == "pw-store"
    assert kr.calls == 1


def test_cache_scope_is_the_source_prefix_not_the_host(tmp_path):
    ix = Index.from_url("https://h.test/team/simple/", name="team")
    env = {"UV_INDEX_TEAM_USERNAME": "u", "UV_INDEX_TEAM_PASSWORD": "pw-index"}
    r = Resolver(Settings(indexes=[ix], env=env), [IndexCredentialsSource([ix], env)])
    d = r.resolve("https://h.test/team/simple/pkg/")
    assert (password(d), d.prefix) == ("pw-index", "https://h.test/team")
    r.record("https://h.test/team/simple/pkg/", d, 200)
    for url in ("https://h.test/other/x", "https://h.test/", "https://h.test/teamx/y"):
        d = r.resolve(url)
        assert d.action == "send" and r.challenge(url, d, 401) is None, url
    assert not r.knows_host("https", "h.test", 8443)


def test_record_never_caches_outside_the_prefix(tmp_path):
    src = store_with(tmp_path, StoreEntry.basic("https://h.test/team-a/", "a", "pw-a"))
    r = Resolver(Settings(), [src])
    d = r.resolve("https://h.test/team-a/x")
    r.record("https://h.test/elsewhere/y", d, 200)  # a decision recorded for another URL
    assert r.resolve("https://h.test/elsewhere/z").action == "send"
    assert len(r._cache) == 0


# --- finding 4, second part: eviction on the challenge path ----------------------------------


class TokenKeyring:
    """A slow source whose token changes: tok1, then tok2, ..."""

    name, fast = "keyring", False

    def __init__(self):
        self.tokens = ["tok1", "tok2", "tok3"]
        self.calls = 0

    def lookup(self, url, username, index):
        token = self.tokens[min(self.calls, len(self.tokens) - 1)]
        self.calls += 1
        return Answer(self.name, Credentials.basic(username or "u", token), detail="fake",
                      prefix=index.root_url if index else None)

    def knows_host(self, *a):
        return False


def test_a_cached_credential_rejected_on_the_challenge_path_is_evicted():
    """cached tok1 -> 401 -> re-send with tok2 -> 401 -> the next lookup does not return tok1
    from the cache. Fails if the eviction in _plan_challenge is
    replaced with `pass`."""
    ix = Index.from_url("https://h.test/simple/", username="u")
    kr = TokenKeyring()
    r = Resolver(Settings(indexes=[ix]), [kr])
    url = "https://h.test/simple/pkg/"
    first = r.resolve(url)
    assert password(first) == "tok1" and not first.cached
    r.record(url, first, 200)
    cached = r.resolve(url)
    assert (password(cached), cached.cached) == ("tok1", True)
    retry = r.challenge(url, cached, 401)  # tok1 rejected: evicted, keyring asked again
    assert password(retry) == "tok2"
    r.record(url, retry, 401)  # the re-send is rejected too: the addon records that once
    after = r.resolve(url)
    assert password(after) != "tok1", "the rejected cached credential came back from the cache"
    assert after.cached is False and password(after) == "tok2"  # the keyring's latest answer


# --- finding 8: one client's username does not change what anonymous clients get -------------


def test_username_only_header_does_not_change_the_anonymous_credential(tmp_path):
    src = store_with(tmp_path,
                     StoreEntry.basic("https://h.test/", "alice", "pw-alice"),
                     StoreEntry.basic("https://h.test/", "bob", "pw-bob"))
    # anonymous: two entries of equal length -> ambiguous -> nothing (uv's rule); named: found
    r = Resolver(Settings(), [src])
    named = r.resolve("https://h.test/x", basic_user_only("alice"))
    assert password(named) == "pw-alice" and named.username == "alice"
    r.record("https://h.test/x", named, 200)
    anon = r.resolve("https://h.test/y")
    assert anon.action == "send", "alice's credential leaked into the anonymous slot"
    assert r.challenge("https://h.test/y", anon, 401) is None
    # alice's own later requests still get it from the cache
    assert r.resolve("https://h.test/z", basic_user_only("alice")).cached


def test_username_only_header_does_not_replace_another_anonymous_credential(tmp_path):
    (tmp_path / ".netrc").write_text("machine h.test login carol password pw-carol\n")
    src = store_with(tmp_path, StoreEntry.basic("https://h.test/", "alice", "pw-alice"))
    r = Resolver(Settings(), [NetrcSource({}, home=str(tmp_path)), src])
    anon = r.resolve("https://h.test/a")
    r.record("https://h.test/a", anon, 200)
    named = r.resolve("https://h.test/b", basic_user_only("alice"))
    assert password(named) == "pw-alice"
    r.record("https://h.test/b", named, 200)
    assert password(r.resolve("https://h.test/c")) == "pw-carol"


# --- finding 11: path tricks ------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/team-a/..%2fteam-b/x", "/team-a/..%2Fteam-b/x", "/team-a/%2e%2e/team-b/x",
    "/team-a/%2E%2E%2Fteam-b/x", "/team-a/..%5cteam-b/x", "/team-a/..\\team-b/x",
    "/team-a/../team-b/x", "/team-a/./../team-b/x", "/team-a//../team-b/x", "/team-a/..;/team-b/x",
    "/team-a/x/../../team-b/x", "/team-a/..", "/team-a/.%2e/team-b",
])
def test_path_tricks_are_not_under_the_prefix(path, tmp_path):
    assert not path_under("/team-a/", path) and not path_under("/team-a", path, segments=True)
    assert not covers("https://h.test/team-a/", "https://h.test" + path)
    assert not Index.from_url("https://h.test/team-a/simple").matches("https://h.test" + path)
    src = store_with(tmp_path, StoreEntry.basic("https://h.test/team-a/", "a", "pw-a"))
    r = Resolver(Settings(), [src])
    # nothing fresh, and nothing from the cache either
    ok = r.resolve("https://h.test/team-a/simple/")
    r.record("https://h.test/team-a/simple/", ok, 200)
    d = r.resolve("https://h.test" + path)
    assert d.action == "send", path
    assert r.challenge("https://h.test" + path, d, 401) is None


@pytest.mark.parametrize("path", ["/team-a/x", "/team-a/x/../y", "/team-a/./y", "/team-a/y%2fz",
                                  "/team-a/%2e/y", "/team-a//y"])
def test_harmless_dots_and_encodings_inside_the_prefix_still_match(path):
    assert path_under("/team-a/", path)
    assert covers("https://h.test/team-a/", "https://h.test" + path)


def test_path_views():
    assert path_views("/a/b") == ("/a/b",)
    assert path_views("/a/..%2fb/x") == ("/a/..%2fb/x", "/b/x")
    assert path_views("/a//../b") == ("/a//../b", "/a/b", "/b")
    assert covered_segments("/a/x/../y") == ("a",)
    assert covered_segments("/a/b/c") == ("a", "b", "c")


def test_double_encoding_is_one_decoding_pass():
    # %252f is `%2f` after one decoding: not a separator for us, nor for a server that
    # decodes once (documented in docs/how-it-works.md)
    assert path_views("/a/..%252fb") == ("/a/..%252fb",)


# --- every source names its prefix ------------------------------------------------------------


def test_each_source_names_the_prefix_of_its_entry(tmp_path):
    ix = Index.from_url("https://u:pw@h.test/r/simple/", name="r")
    assert IndexCredentialsSource([ix], {}).lookup("https://h.test/r/simple/x/", None, ix).prefix == "https://h.test/r"
    hf = HuggingFaceSource({"HF_TOKEN": "t"}).lookup("https://huggingface.co/api/x", None, None)
    assert hf.prefix == "https://huggingface.co/"
    src = store_with(tmp_path, StoreEntry.basic("https://alice:x@H.test:8443/team/", "a", "pw"))
    assert src.lookup("https://h.test:8443/team/x?q=1", None, None).prefix == "https://h.test:8443/team/"
    (tmp_path / ".netrc").write_text("machine h.test login n password p\n")
    assert NetrcSource({}, home=str(tmp_path)).lookup("http://h.test:81/a/b", None, None).prefix == "http://h.test:81/"


def test_keyring_and_native_prefixes():
    ix = Index.from_url("https://h.test/r/simple/")
    assert service_prefix(ix.url, "https://h.test/r/simple/x/", ix) == "https://h.test/r"
    assert service_prefix("https://h.test/a/b?q", "https://h.test/a/b?q", None) == "https://h.test/a/b"
    assert service_prefix("h.test:8443", "https://h.test:8443/a", None) == "https://h.test:8443/"
    assert service_prefix("http://h.test:81", "http://h.test:81/a", None) == "http://h.test:81/"

    class Backend:
        def __init__(self, answers):
            self.answers = answers

        def get_password(self, service, username):
            return self.answers.get(service)

    native = NativeKeyringSource(Backend({"uv:https://h.test/r": "pw"}))
    assert native.lookup("https://h.test/r/simple/x/", "u", ix).prefix == "https://h.test/r"
    native = NativeKeyringSource(Backend({"uv:h.test": "pw"}))
    assert native.lookup("https://h.test/r/simple/x/", "u", ix).prefix == "https://h.test/"


def test_an_answer_for_another_url_is_not_used():
    """A memoised keyring answer (per realm when no index matches) that named another URL."""

    class Keyring:
        name, fast = "keyring", False

        def lookup(self, url, username, index):
            return Answer("keyring", Credentials.basic(username, "pw"), prefix="https://h.test/first/url")

        def knows_host(self, *a):
            return False

    r = Resolver(Settings(), [Keyring()])
    d = r.resolve("https://h.test/second", basic_user_only("u"))
    retry = r.challenge("https://h.test/second", d, 401)
    assert retry is None or retry.action != "inject"
    assert "does not cover this URL" in (retry.reason if retry else "")


# --- loopback and plain http ------------------------------------------------------------------


def test_plain_http_loopback_gets_credentials_only_for_named_ports(tmp_path):
    (tmp_path / ".netrc").write_text("machine localhost login l password pw-l\n"
                                     "machine 127.0.0.1 login i password pw-i\n"
                                     "default login d password pw-d\n")
    ix = Index.from_url("http://127.0.0.1:8080/simple/")
    settings = Settings(indexes=[ix], env={"HOME": str(tmp_path), "CREDPROXY_DATA_DIR": str(tmp_path / "d")})
    r = Resolver(settings)
    assert password(r.resolve("http://127.0.0.1:8080/simple/x/")) == "pw-i"
    for url in ("http://127.0.0.1:9999/x", "http://localhost:8080/x", "http://localhost:9999/x"):
        d = r.resolve(url)
        assert d.action == "leave" and "no index or credential source names this port" in d.reason, url
        assert r.challenge(url, d, 401) is None
    assert not r.knows_host("https", "localhost", 9999)
    e = r.explain("http://localhost:9999/x").render()
    assert "no index names this loopback port" in e and "decision: leave" in e
    assert "pw-" not in e
    wide = Resolver(Settings(indexes=[ix], env=settings.env, netrc_loopback="any-port"))
    assert password(wide.resolve("http://localhost:9999/x")) == "pw-l"
    # a store entry that names the port is enough
    Store(tmp_path / "d" / "credentials.toml").add(StoreEntry.basic("http://localhost:7000/", "s", "pw-s"))
    assert password(Resolver(settings).resolve("http://localhost:7000/x")) == "pw-s"


def test_netrc_default_is_not_sent_to_an_unconfigured_host(tmp_path):
    (tmp_path / ".netrc").write_text("default login d password pw-d\n")
    ix = Index.from_url("https://idx.test/simple/")
    env = {"HOME": str(tmp_path), "CREDPROXY_DATA_DIR": str(tmp_path / "d")}
    Store(tmp_path / "d" / "credentials.toml").add(StoreEntry.basic("https://other.test/team/", "s", "pw-s"))
    r = Resolver(Settings(indexes=[ix], env=env))
    assert password(r.challenge("https://idx.test/simple/x/", r.resolve("https://idx.test/simple/x/"), 401)) == "pw-d"
    # other.test is known (a store entry), so it is intercepted; its other paths get nothing
    d = r.resolve("https://other.test/elsewhere")
    assert d.action == "send" and r.challenge("https://other.test/elsewhere", d, 401) is None
    text = r.explain("https://other.test/elsewhere").render()
    assert "answers configured indexes only" in text and "on 401:   no source would answer" in text
    assert "pw-d" not in text
