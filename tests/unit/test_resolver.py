"""The resolver's rules, with fake sources (the core is unit-tested without sockets)."""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
from urllib.parse import quote

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from credproxy.config import Settings
from credproxy.credentials.index import Index
from credproxy.credentials.model import Credentials, Realm, secret_forms
from credproxy.credentials.resolver import Decision, Resolver, SessionCache, default_sources
from credproxy.credentials.sources.base import Answer
from credproxy.credentials.sources.url_env import IndexCredentialsSource

SECRET = "s3cr3t-Pw/+="


def basic_header(user, pw=None):
    raw = f"{user}:{pw}" if pw is not None else f"{user}:"
    return "Basic " + base64.b64encode(raw.encode()).decode()


class FakeSource:
    """Answers by host; records every call. `fast=False` makes it a slow (keyring-like) one.
    Its answers name the realm as their prefix (an entry per host, like a netrc machine)."""

    def __init__(self, name, entries=None, *, fast=True, preemptive=True, delay=0.0, knows=True, raises=False):
        self.name = name
        self.fast = fast
        self.entries = dict(entries or {})  # host -> Credentials
        self.preemptive = preemptive
        self.delay = delay
        self.knows = knows
        self.raises = raises
        self.calls: list[tuple[str, str | None, str | None]] = []
        self._lock = threading.Lock()

    def lookup(self, url, username, index):
        with self._lock:
            self.calls.append((url, username, index.url if index else None))
        if self.delay:
            time.sleep(self.delay)
        if self.raises:
            raise RuntimeError(f"boom {SECRET}")
        creds = self.entries.get(Realm.of(url).host)
        if creds is None:
            return Answer(self.name, detail="no entry")
        if username is not None:
            if creds.username is not None and creds.username != username:
                return Answer(self.name, detail="other username")
            creds = Credentials.basic(username, creds.password)
        return Answer(self.name, creds, detail=f"fake {self.name}", preemptive=self.preemptive,
                      prefix=f"{Realm.of(url)}/")

    def knows_host(self, scheme, host, port):
        return self.fast and self.knows and host in self.entries


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def make(sources, indexes=(), env=None, **kw):
    settings = Settings(indexes=list(indexes), env=env or {})
    return Resolver(settings, sources, **kw)


ALICE = Credentials.basic("alice", SECRET)
BOB = Credentials.basic("bob", "bobpw")
CAROL = Credentials.basic("carol", "carolpw")


# --- chain order ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "have, expected",
    [
        ({"netrc": ALICE, "store": BOB, "uv-store": CAROL}, ("netrc", "alice")),
        ({"store": BOB, "uv-store": CAROL}, ("store", "bob")),
        ({"uv-store": CAROL}, ("uv-store", "carol")),
        ({}, None),
    ],
)
def test_first_fast_source_in_order_is_injected_preemptively(have, expected):
    sources = [FakeSource(n, {"h.test": c} if c else {}) for n, c in
               [(n, have.get(n)) for n in ("netrc", "store", "uv-store")]]
    r = make(sources)
    d = r.resolve("https://h.test/simple/x/")
    if expected is None:
        assert d.action == "send" and d.header is None
    else:
        assert (d.action, d.source, d.credentials.username, d.preemptive, d.cached) == ("inject", expected[0], expected[1], True, False)
        assert d.header.startswith("Basic ")
        # sources after the winner are not asked
        winner = [s.name for s in sources].index(expected[0])
        assert all(not s.calls for s in sources[winner + 1:])


def test_index_env_credentials_come_before_everything_and_are_seeded():
    ix = Index.from_url("https://pkgs.test/simple/", name="priv")
    env = {"UV_INDEX_PRIV_USERNAME": "envu", "UV_INDEX_PRIV_PASSWORD": SECRET}
    netrc = FakeSource("netrc", {"pkgs.test": BOB})
    r = make([IndexCredentialsSource([ix], env), netrc], [ix], env)
    # any URL below the root (here `/`) is authenticated on the first request (uv §3)
    for url in ("https://pkgs.test/simple/demo/", "https://pkgs.test/files/demo-1.0.whl"):
        d = r.resolve(url)
        assert (d.action, d.source, d.credentials.username, d.cached) == ("inject", "env:UV_INDEX_PRIV", "envu", True)
    assert netrc.calls == []


def test_longest_index_root_wins_and_longest_cache_prefix():
    a = Index.from_url("https://ay:one@h.test/simple")       # root /
    b = Index.from_url("https://bee:two@h.test/b/simple")    # root /b
    r = make([IndexCredentialsSource([a, b], {})], [a, b])
    d = r.resolve("https://h.test/b/simple/demo/")
    assert (d.credentials.username, d.index) == ("bee", b)   # uv would send ay:one here
    assert r.resolve("https://h.test/simple/demo/").credentials.username == "ay"
    assert r.resolve("https://h.test/bb/x").credentials.username == "ay"  # segment prefix only


# --- client credentials ----------------------------------------------------------------------


@pytest.mark.parametrize("header", [basic_header("me", "mine"), "Bearer tok", "token ghp_x", "Basic !!notb64"])
def test_client_credentials_are_left_alone_and_never_cached(header):
    src = FakeSource("netrc", {"h.test": ALICE})
    r = make([src])
    d = r.resolve("https://h.test/x", header)
    assert (d.action, d.source, d.header) == ("leave", "client", None)
    assert src.calls == []
    r.record("https://h.test/x", d, 200)
    assert r.challenge("https://h.test/x", d, 401) is None
    assert len(r._cache) == 0
    assert not r.knows_host("https", "other.test", 443)


def test_username_only_client_header_is_used_for_lookups():
    src = FakeSource("store", {"h.test": Credentials.basic(None, SECRET)})
    r = make([src])
    d = r.resolve("https://h.test/x", basic_header("alice"))
    assert (d.action, d.credentials.username, d.username) == ("inject", "alice", "alice")
    assert src.calls == [("https://h.test/x", "alice", None)]


def test_username_only_client_header_and_a_different_user_in_the_source():
    r = make([FakeSource("store", {"h.test": BOB})])
    d = r.resolve("https://h.test/x", basic_header("alice"))
    assert d.action == "send" and d.username == "alice"


# --- cache: record, evict, re-resolve --------------------------------------------------------


def test_success_is_cached_for_the_realm_and_a_401_evicts_and_reresolves_once():
    tokens = iter([Credentials.basic("u", "tok1"), Credentials.basic("u", "tok2")])
    src = FakeSource("store")
    src.entries["h.test"] = next(tokens)
    r = make([src])
    d1 = r.resolve("https://h.test/a/x")
    assert d1.source == "store" and not d1.cached and d1.prefix == "https://h.test/"
    r.record("https://h.test/a/x", d1, 200)
    # another path in the realm (the source named the realm): the cached credential
    d2 = r.resolve("https://h.test/other/y")
    assert d2.cached and d2.credentials.password == "tok1" and d2.prefix == "https://h.test/"
    # the token expired: 401 evicts it and asks the sources again, once
    src.entries["h.test"] = next(tokens)
    retry = r.challenge("https://h.test/other/y", d2, 401)
    assert retry is not None and retry.credentials.password == "tok2" and retry.preemptive is False
    assert "rejected" in retry.reason
    # never a second retry for the same request
    assert r.challenge("https://h.test/other/y", retry, 401) is None
    r.record("https://h.test/other/y", retry, 200)
    assert r.resolve("https://h.test/z").credentials.password == "tok2"


def test_cached_credentials_rejected_and_the_source_has_the_same_ones():
    src = FakeSource("store", {"h.test": ALICE})
    r = make([src])
    d = r.resolve("https://h.test/x")
    r.record("https://h.test/x", d, 200)
    cached = r.resolve("https://h.test/x")
    assert r.challenge("https://h.test/x", cached, 401) is None  # no loop on the same credential


def test_fresh_credentials_rejected_are_final():
    r = make([FakeSource("netrc", {"h.test": ALICE}), FakeSource("store", {"h.test": BOB})])
    d = r.resolve("https://h.test/x")
    assert r.challenge("https://h.test/x", d, 401) is None
    r.record("https://h.test/x", d, 401)
    assert len(r._cache) == 0


def test_failure_status_is_not_cached_and_401_evicts():
    r = make([FakeSource("store", {"h.test": ALICE})])
    d = r.resolve("https://h.test/x")
    r.record("https://h.test/x", d, 500)
    assert len(r._cache) == 0
    r.record("https://h.test/x", d, 302)  # a redirect counts as success (uv §13)
    assert len(r._cache) > 0
    r.record("https://h.test/x", r.resolve("https://h.test/x"), 401)
    assert len(r._cache) == 0


def test_cache_stays_in_its_realm():
    r = make([FakeSource("store", {"h.test": ALICE}, knows=False)])
    r.record("https://h.test/x", r.resolve("https://h.test/x"), 200)
    r.sources[0].entries.clear()
    assert r.resolve("https://h.test/y").cached
    for other in ("https://h.test:8443/y", "http://h.test/y", "https://g.test/y"):
        assert r.resolve(other).action in ("send", "leave"), other
    assert r.knows_host("https", "h.test", 443) and not r.knows_host("https", "h.test", 8443)


def test_rejection_under_one_index_keeps_the_sibling_index_entry():
    a = Index.from_url("https://h.test/a/simple")
    b = Index.from_url("https://h.test/b/simple")
    src = FakeSource("keyring", fast=False)
    r = make([src], [a, b])
    src.entries["h.test"] = ALICE
    da = r.resolve("https://h.test/a/simple/x/")
    r.record("https://h.test/a/simple/x/", da, 200)
    # b was never asked before: the realm entry does not answer pre-emptively for an index
    src.entries["h.test"] = BOB
    db = r.resolve("https://h.test/b/simple/x/")
    assert db.credentials.username == "bob" and not db.cached
    r.record("https://h.test/b/simple/x/", db, 200)
    assert r.resolve("https://h.test/a/simple/y/").credentials.username == "alice"
    assert r.resolve("https://h.test/b/simple/y/").credentials.username == "bob"


@hsettings(max_examples=200, deadline=None)
@given(
    prefixes=st.lists(st.lists(st.sampled_from(["a", "b", "simple", "x"]), max_size=3), min_size=1, max_size=6),
    path=st.lists(st.sampled_from(["a", "b", "simple", "x", "ab"]), max_size=4),
    trailing=st.booleans(),
)
def test_session_cache_longest_prefix_wins(prefixes, path, trailing):
    cache = SessionCache()
    for i, segs in enumerate(prefixes):
        cache.insert("https://h.test/" + "/".join(segs), Credentials.basic(f"u{i}", "p"), f"s{i}")
    url = "https://h.test/" + "/".join(path) + ("/" if trailing and path else "")
    found = cache.lookup(url)
    matching = [(len(s), i) for i, s in enumerate(prefixes) if path[: len(s)] == s]
    if not matching:
        assert found is None
        return
    best_len = max(n for n, _ in matching)
    last_at_best = max(i for n, i in matching if n == best_len)  # a later insert overwrites
    assert found is not None and found[0].credentials.username == f"u{last_at_best}"
    assert cache.lookup(url.replace("https://", "http://")) is None


# --- challenge rules -------------------------------------------------------------------------


def test_netrc_default_only_after_a_challenge():
    netrc = FakeSource("netrc", {"h.test": ALICE}, preemptive=False, knows=False)
    r = make([netrc])
    d = r.resolve("https://h.test/x")
    assert d.action == "send"
    retry = r.challenge("https://h.test/x", d, 401)
    assert (retry.action, retry.source, retry.preemptive) == ("inject", "netrc", False)
    # a 403/404 to a host nothing knows about does not hand out the default entry
    assert r.challenge("https://h.test/x", d, 404) is None
    assert r.challenge("https://h.test/x", d, 403) is None


@pytest.mark.parametrize(
    "status, sent_with_creds, known, retried",
    [
        (401, False, False, False),  # nothing to find
        (401, False, True, True),
        (403, False, True, True),
        (404, False, True, True),
        (403, True, True, False),   # a request that carried credentials: 403/404 are final
        (404, True, True, False),
        (400, False, True, False),
        (407, False, True, False),
        (500, False, True, False),
        (200, False, True, False),
    ],
)
def test_which_statuses_retry(status, sent_with_creds, known, retried):
    slow = FakeSource("keyring", {"h.test": ALICE} if known else {}, fast=False)
    ix = Index.from_url("https://h.test/simple")
    r = make([FakeSource("store", {"h.test": BOB} if sent_with_creds else {}), slow], [ix] if known else [])
    sent = Decision("inject", BOB, source="store", index=ix) if sent_with_creds else Decision("send", index=ix if known else None)
    retry = r.challenge("https://h.test/simple/x", sent, status)
    assert (retry is not None) is retried
    if retried:
        assert retry.preemptive is False and retry.header is not None


@pytest.mark.parametrize("now", ["removed", "never"])
def test_a_challenge_is_decided_by_this_resolvers_indexes_not_the_one_the_decision_carries(now):
    """A reload swapped in a new resolver while a bare request was upstream; its 401 is
    answered by the new one with the old Decision. The index that Decision carries (since
    removed, or set to `authenticate = never`) must not make a source answer: the netrc
    default entry and the keyring answer configured indexes only."""
    class DefaultEntry(FakeSource):  # netrc-default = "indexes": answers for an index only
        def lookup(self, url, username, index):
            return super().lookup(url, username, index) if index is not None else Answer(self.name, detail="no index")

    ix = Index.from_url("https://h.test/simple")
    default_entry = DefaultEntry("netrc", {"h.test": ALICE}, preemptive=False, knows=False)
    keyring = FakeSource("keyring", {"h.test": BOB}, fast=False)
    old = make([DefaultEntry("netrc", {"h.test": ALICE}, preemptive=False, knows=False)], [ix])
    sent = old.resolve("https://h.test/simple/x")
    assert (sent.action, sent.index) == ("send", ix)
    new = make([default_entry, keyring], [] if now == "removed" else [Index.from_url(ix.url, authenticate="never")])
    assert new.challenge("https://h.test/simple/x", sent, 401) is None
    assert new.challenge("https://h.test/simple/x", sent, 404) is None
    assert keyring.calls == []


def test_slow_sources_for_unconfigured_hosts_only_on_challenge_and_with_a_username():
    kr = FakeSource("keyring", {"h.test": ALICE}, fast=False)
    r = make([kr])
    d = r.resolve("https://h.test/x")
    assert d.action == "send" and kr.calls == []
    assert r.challenge("https://h.test/x", d, 401) is None and kr.calls == []  # no username: as uv
    d = r.resolve("https://h.test/x", basic_header("alice"))
    assert d.action == "send" and kr.calls == []
    retry = r.challenge("https://h.test/x", d, 401)
    assert retry.source == "keyring" and kr.calls == [("https://h.test/x", "alice", None)]


def test_configured_index_asks_keyring_preemptively_once_per_index_and_username():
    ix = Index.from_url("https://h.test/simple/")
    kr = FakeSource("keyring", {"h.test": ALICE}, fast=False)
    r = make([kr], [ix])
    for url in ("https://h.test/simple/a/", "https://h.test/simple/b/", "https://h.test/files/c.whl"):
        d = r.resolve(url)
        assert (d.action, d.source, d.preemptive) == ("inject", "keyring", True)
    assert kr.calls == [("https://h.test/simple/a/", None, "https://h.test/simple/")]  # creds mode
    r.resolve("https://h.test/simple/a/", basic_header("alice"))
    assert [c[1] for c in kr.calls] == [None, "alice"]


def test_index_username_is_used_for_keyring():
    ix = Index.from_url("https://h.test/simple/", username="VssSessionToken")
    kr = FakeSource("keyring", {"h.test": Credentials.basic(None, SECRET)}, fast=False)
    d = make([kr], [ix]).resolve("https://h.test/simple/a/")
    assert d.credentials.username == "VssSessionToken" and kr.calls[0][1] == "VssSessionToken"


def test_username_only_index_url_finds_password_later():
    ix = Index.from_url("https://alice@h.test/simple/")
    kr = FakeSource("keyring", {"h.test": Credentials.basic(None, SECRET)}, fast=False)
    d = make([IndexCredentialsSource([ix], {}), kr], [ix]).resolve("https://h.test/simple/a/")
    assert (d.source, d.credentials.username) == ("keyring", "alice")
    assert kr.calls[0][1] == "alice"


def test_negative_results_expire_after_ttl():
    clock = Clock()
    ix = Index.from_url("https://h.test/simple/")
    kr = FakeSource("keyring", {}, fast=False)
    r = make([kr], [ix], clock=clock)
    assert r.resolve("https://h.test/simple/a/").action == "send"
    clock.now += 59
    assert r.resolve("https://h.test/simple/a/").action == "send"
    assert len(kr.calls) == 1
    kr.entries["h.test"] = ALICE
    clock.now += 2
    assert r.resolve("https://h.test/simple/a/").source == "keyring"
    assert len(kr.calls) == 2
    clock.now += 3600  # found answers do not expire
    r.resolve("https://h.test/simple/a/")
    assert len(kr.calls) == 2


def test_send_reason_says_the_keyring_answered_nothing_and_until_when_that_is_remembered(monkeypatch):
    """-v: why no credential was sent (keyring answered nothing; negative cache until T)."""
    clock = Clock()
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)
    ix = Index.from_url("https://h.test/simple/")
    r = make([FakeSource("keyring", {}, fast=False)], [ix], clock=clock)
    first = r.resolve("https://h.test/simple/a/")
    assert first.action == "send" and "keyring answered nothing: no entry" in first.reason
    assert "remembered" not in first.reason  # this one was really asked
    clock.now += 20
    second = r.resolve("https://h.test/simple/a/")
    until = time.strftime("%H:%M:%S", time.localtime(1_700_000_000.0 + 40))
    assert f"keyring answered nothing: no entry (remembered; asked again after {until})" in second.reason
    clock.now += 41
    assert "remembered" not in r.resolve("https://h.test/simple/a/").reason


def test_a_challenge_nobody_answers_says_which_sources_had_nothing():
    kr = FakeSource("keyring", {}, fast=False)
    r = make([FakeSource("netrc", {}), kr])
    sent = r.resolve("https://other.test/f.whl")
    retry = r.challenge("https://other.test/f.whl", sent, 401)
    # an unconfigured host without a username: the keyring is not asked (as uv); nothing to say
    assert retry is None and kr.calls == []
    sent = r.resolve("https://other.test/f.whl", basic_header("bob"))  # the client sent a username only
    retry = r.challenge("https://other.test/f.whl", sent, 401)
    assert retry is not None and retry.action == "send" and retry.header is None
    assert retry.reason == "keyring answered nothing: no entry"


def test_negative_ttl_is_configurable():
    clock = Clock()
    ix = Index.from_url("https://h.test/simple/")
    kr = FakeSource("keyring", {}, fast=False)
    r = make([kr], [ix], clock=clock, negative_ttl=5)
    r.resolve("https://h.test/simple/a/")
    clock.now += 6
    r.resolve("https://h.test/simple/a/")
    assert len(kr.calls) == 2


class TtlSource(FakeSource):
    """Its answers, found or not, carry a ttl (the native store's NATIVE_TTL)."""

    def __init__(self, *args, ttl, **kwargs):
        super().__init__(*args, **kwargs)
        self.ttl = ttl

    def lookup(self, url, username, index):
        from dataclasses import replace

        return replace(super().lookup(url, username, index), ttl=self.ttl)


def test_a_miss_with_a_short_ttl_is_asked_again_after_it_not_after_negative_ttl():
    """The native store: a login made after a miss reaches the proxy after the answer's ttl
    (2 s), not the resolver's negative_ttl (60 s); a found answer lives as long as its ttl."""
    clock = Clock()
    ix = Index.from_url("https://alice@h.test/simple/")
    kr = TtlSource("native", {}, fast=False, ttl=2)
    r = make([kr], [ix], clock=clock, negative_ttl=60)
    assert r.resolve("https://h.test/simple/a/").action != "inject"
    clock.now += 1
    r.resolve("https://h.test/simple/a/")
    assert len(kr.calls) == 1  # still remembered
    kr.entries["h.test"] = ALICE  # the login
    clock.now += 1.5
    d = r.resolve("https://h.test/simple/a/")
    assert d.action == "inject" and len(kr.calls) == 2
    r.record("https://h.test/simple/a/", d, 200)
    del kr.entries["h.test"]  # the logout
    clock.now += 2.5
    assert r.resolve("https://h.test/simple/a/").action != "inject"


# --- policies and plain http -------------------------------------------------------------------


def test_authenticate_never_leaves_the_request_alone():
    ix = Index.from_url("https://u:pw@h.test/simple/", authenticate="never")
    src = FakeSource("netrc", {"h.test": ALICE})
    r = make([IndexCredentialsSource([ix], {}), src], [ix])
    d = r.resolve("https://h.test/simple/x/")
    assert (d.action, d.header) == ("leave", None) and "never" in d.reason
    assert src.calls == [] and len(r._cache) == 0
    assert r.challenge("https://h.test/simple/x/", d, 401) is None
    # the client's own credentials still go out (uv §4.1)
    assert r.resolve("https://h.test/simple/x/", basic_header("c", "d")).action == "leave"


def test_authenticate_always_fails_without_credentials_and_names_the_reason():
    ix = Index.from_url("https://h.test/simple/", name="corp", authenticate="always")
    r = make([FakeSource("netrc", {}), FakeSource("keyring", {}, fast=False)], [ix])
    d = r.resolve("https://h.test/simple/x/")
    assert d.action == "fail" and "authenticate = always" in d.reason and "https://h.test/simple/x/" in d.reason
    assert "netrc" in d.reason and "keyring" in d.reason


def test_authenticate_always_with_username_only_is_incomplete():
    ix = Index.from_url("https://alice@h.test/simple/", authenticate="always")
    d = make([IndexCredentialsSource([ix], {})], [ix]).resolve("https://h.test/simple/x/")
    assert d.action == "fail" and d.reason.startswith("Incomplete credentials")


def test_authenticate_always_found_is_injected():
    ix = Index.from_url("https://h.test/simple/", authenticate="always")
    d = make([FakeSource("keyring", {"h.test": ALICE}, fast=False)], [ix]).resolve("https://h.test/simple/x/")
    assert d.action == "inject" and d.source == "keyring"


@pytest.mark.parametrize(
    "url, index_url, injected",
    [
        ("http://h.test/x", None, False),
        ("http://h.test/simple/x", "https://h.test/simple", False),  # the https index does not name http
        ("http://h.test/simple/x", "http://h.test/simple", True),
        ("http://127.0.0.1:8080/x", None, True),
        ("http://[::1]:8080/x", None, True),
        ("http://localhost/x", None, True),
        ("https://h.test/x", None, True),
    ],
)
def test_plain_http_gets_credentials_only_for_loopback_or_a_named_index(url, index_url, injected):
    host = Realm.of(url).host
    src = FakeSource("netrc", {host: ALICE})
    r = make([src], [Index.from_url(index_url)] if index_url else [])
    d = r.resolve(url)
    assert (d.action == "inject") is injected
    if not injected:
        assert d.action == "leave" and "plain http" in d.reason and src.calls == []


# --- knows_host ------------------------------------------------------------------------------


def test_knows_host():
    ix = Index.from_url("https://pkgs.test/simple/")
    r = make([FakeSource("netrc", {"n.test": ALICE}), FakeSource("keyring", {"k.test": ALICE}, fast=False)], [ix])
    assert r.knows_host("https", "pkgs.test", 443)
    assert not r.knows_host("https", "pkgs.test", 8443)
    assert r.knows_host("https", "N.test", 443)
    assert not r.knows_host("https", "k.test", 443)  # slow sources cannot enumerate
    assert not r.knows_host("https", "c.test", 443)
    d = Decision("inject", ALICE, source="netrc")
    r.record("https://c.test/x", d, 200)
    assert r.knows_host("https", "c.test", 443)


def test_knows_host_hf():
    s = Settings(env={"HF_TOKEN": "hf_x", "HOME": "/nonexistent", "CREDPROXY_DATA_DIR": "/nonexistent"})
    assert Resolver(s).knows_host("https", "huggingface.co", 443)
    s = Settings(env={"HF_TOKEN": "hf_x", "UV_NO_HF_TOKEN": "1", "HOME": "/nonexistent", "CREDPROXY_DATA_DIR": "/nonexistent"})
    assert not Resolver(s).knows_host("https", "huggingface.co", 443)


# --- concurrency -----------------------------------------------------------------------------


def test_fifty_threads_one_slow_lookup():
    ix = Index.from_url("https://h.test/simple/")
    kr = FakeSource("keyring", {"h.test": ALICE}, fast=False, delay=0.3)
    r = make([kr], [ix])
    results: list[Decision] = []
    barrier = threading.Barrier(50)

    def worker():
        barrier.wait(timeout=10)
        results.append(r.resolve("https://h.test/simple/x/"))

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert len(results) == 50 and all(d.source == "keyring" for d in results)
    assert len(kr.calls) == 1


def test_fifty_tasks_one_slow_lookup_and_the_loop_keeps_running():
    ix = Index.from_url("https://h.test/simple/")
    kr = FakeSource("keyring", {"h.test": ALICE}, fast=False, delay=0.5)
    r = make([FakeSource("netrc", {}), kr], [ix])

    async def main():
        ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        t = asyncio.create_task(ticker())
        decisions = await asyncio.wait_for(
            asyncio.gather(*(r.aresolve("https://h.test/simple/x/") for _ in range(50))), 20)
        stop.set()
        await t
        return decisions, ticks

    decisions, ticks = asyncio.run(main())
    assert all(d.source == "keyring" for d in decisions) and len(kr.calls) == 1
    assert ticks >= 20  # the loop was never blocked for the 0.5 s the keyring took


def test_cancelled_waiter_does_not_break_the_others():
    ix = Index.from_url("https://h.test/simple/")
    kr = FakeSource("keyring", {"h.test": ALICE}, fast=False, delay=0.3)
    r = make([kr], [ix])

    async def main():
        first = asyncio.create_task(r.aresolve("https://h.test/simple/x/"))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(r.aresolve("https://h.test/simple/x/")) for _ in range(5)]
        first.cancel()
        return await asyncio.wait_for(asyncio.gather(*rest), 10)

    assert all(d.source == "keyring" for d in asyncio.run(main()))
    assert len(kr.calls) == 1


def test_cache_hit_stays_on_the_loop():
    ix = Index.from_url("https://u:pw@h.test/simple/")
    r = make([IndexCredentialsSource([ix], {})], [ix])
    coro = r.aresolve("https://h.test/simple/x/")
    with pytest.raises(StopIteration) as done:
        coro.send(None)  # finishes without ever suspending: no thread hop
    assert done.value.value.cached


def test_cache_hit_spares_the_slow_sources_and_asks_the_fast_ones_on_the_loop():
    # the fast sources are asked even on a cache hit (a more specific entry must win), inline;
    # the keyring is not asked again
    ix = Index.from_url("https://h.test/simple/")
    kr = FakeSource("keyring", {"h.test": ALICE}, fast=False)
    fast = [FakeSource(name, {}) for name in ("netrc", "store")]
    r = make([*fast, kr], [ix])
    d = r.resolve("https://h.test/simple/x/")
    r.record("https://h.test/simple/x/", d, 200)
    submitted = []
    real_submit = r._executor.submit
    r._executor.submit = lambda *a, **kw: submitted.append(a[0]) or real_submit(*a, **kw)
    again = asyncio.run(r.aresolve("https://h.test/simple/y/"))
    assert again.cached and again.source == "keyring" and len(kr.calls) == 1
    assert len(submitted) == 0 and all(len(s.calls) == 2 for s in fast)


def test_fast_lookups_take_one_worker_hop_not_one_per_source():
    sources = [FakeSource(name, {}) for name in ("index-url", "netrc", "store")]
    r = make(sources)
    submitted = []
    real_submit = r._executor.submit
    r._executor.submit = lambda *a, **kw: submitted.append(a[0]) or real_submit(*a, **kw)
    d = asyncio.run(r.aresolve("https://nobody.test/x"))
    assert d.action == "send" and all(len(s.calls) == 1 for s in sources)
    assert len(submitted) == 1


def test_async_challenge():
    kr = FakeSource("keyring", {"h.test": ALICE}, fast=False)
    r = make([kr])

    async def main():
        d = await r.aresolve("https://h.test/x", basic_header("alice"))
        return await r.achallenge("https://h.test/x", d, 401)

    retry = asyncio.run(main())
    assert retry.source == "keyring" and retry.preemptive is False


def test_wait_timeout_gives_up_on_a_stuck_source():
    ix = Index.from_url("https://h.test/simple/")
    kr = FakeSource("keyring", {"h.test": ALICE}, fast=False, delay=2.0)
    r = make([kr], [ix], wait_timeout=0.2)

    async def main():
        return await asyncio.wait_for(r.aresolve("https://h.test/simple/x/"), 5)

    start = time.monotonic()
    assert asyncio.run(main()).action == "send"
    assert time.monotonic() - start < 1.5


# --- failures and redaction ------------------------------------------------------------------


def assert_no_secret(text, secret=SECRET, username="alice"):
    for form in secret_forms(secret, username):
        assert form not in text, form


def test_a_raising_source_is_no_answer_and_leaks_nothing(caplog):
    caplog.set_level(logging.WARNING)
    r = make([FakeSource("store", raises=True), FakeSource("netrc", {"h.test": BOB})])
    d = r.resolve("https://h.test/x")
    assert d.source == "netrc"
    assert "store failed: RuntimeError" in caplog.text
    assert_no_secret(caplog.text)


def test_decision_and_explanation_never_show_the_secret():
    ix = Index.from_url(f"https://alice:{quote(SECRET, safe='')}@h.test/simple/", name="corp")
    netrc = FakeSource("netrc", {"h.test": ALICE})
    kr = FakeSource("keyring", {"h.test": ALICE}, fast=False)
    r = make([IndexCredentialsSource([ix], {}), netrc, kr], [ix])
    d = r.resolve("https://h.test/simple/x/")
    assert d.header == "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
    e = r.explain(f"https://alice:{quote(SECRET, safe='')}@h.test/simple/x/")
    e2 = r.explain("https://h.test/simple/x/")
    for text in (repr(d), str(d), repr(e), str(e), e.render(), repr(e2), e2.render(), d.reason, repr(ix)):
        assert_no_secret(text)
    assert "alice:****" in e2.render()


def test_explain_lists_every_source_in_order():
    netrc = FakeSource("netrc", {"h.test": ALICE}, preemptive=False)
    store = FakeSource("store", {})
    kr = FakeSource("keyring", {"h.test": ALICE}, fast=False)
    r = make([netrc, store, kr])
    e = r.explain("https://h.test/x")
    assert [a.source for a in e.answers] == ["netrc", "store", "keyring"]
    assert e.answers[0].found and not e.answers[0].preemptive
    assert not e.answers[1].found and not e.answers[1].skipped
    assert e.answers[2].skipped and "no username" in e.answers[2].detail
    assert e.decision.action == "send" and e.on_challenge.source == "netrc"
    text = e.render()
    assert "answered (only after a challenge)" in text and "no entry" in text and "skipped" in text
    assert "on 401:   retry once with alice:**** from netrc" in text
    e = r.explain("https://h.test/x", username="alice")
    assert e.answers[2].found and not e.answers[2].preemptive and kr.calls
    assert "keyring                  answered (only after a challenge) [alice:****]" in e.render()


# --- default_sources -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "provider, env, names",
    [
        ("disabled", {}, ["index-url", "hf-token", "netrc", "store"]),
        ("subprocess", {}, ["index-url", "hf-token", "netrc", "store", "keyring"]),
        ("native", {}, ["index-url", "hf-token", "netrc", "store", "native"]),
        ("disabled", {"UV_NO_HF_TOKEN": "1"}, ["index-url", "netrc", "store"]),
    ],
)
def test_default_sources(tmp_path, provider, env, names):
    env = {"HOME": str(tmp_path), "CREDPROXY_DATA_DIR": str(tmp_path / "data"), **env}
    sources = default_sources(Settings(keyring_provider=provider, env=env))
    assert [s.name for s in sources] == names
    stores = [s for s in sources if s.name == "store"]
    assert str(stores[0].path) == str(tmp_path / ".local/share/uv/credentials/credentials.toml")


def test_default_chain_end_to_end_with_netrc_and_store(tmp_path):
    from credproxy.credentials.store import Store, StoreEntry

    (tmp_path / ".netrc").write_text(f"machine n.test login alice password {SECRET}\ndefault login d password dpw\n")
    data = tmp_path / "data"
    Store(tmp_path / ".local/share/uv/credentials/credentials.toml").add(StoreEntry.basic("https://s.test/", "bob", "bobpw"))
    r = Resolver(Settings(env={"HOME": str(tmp_path), "CREDPROXY_DATA_DIR": str(data)}))
    assert r.resolve("https://n.test/x").source == "netrc"
    assert r.resolve("https://s.test/x").source == "store"
    d = r.resolve("https://o.test/x")
    assert d.action == "send"
    # the default entry answers configured indexes only (netrc-default = "indexes")
    assert r.challenge("https://o.test/x", d, 401) is None
    assert r.knows_host("https", "n.test", 443) and r.knows_host("https", "s.test", 443)
    assert not r.knows_host("https", "o.test", 443)
    wide = Resolver(Settings(env={"HOME": str(tmp_path), "CREDPROXY_DATA_DIR": str(data)}, netrc_default="any-host"))
    assert wide.challenge("https://o.test/x", wide.resolve("https://o.test/x"), 401).credentials.username == "d"


@pytest.mark.parametrize("url", [f"https://alice:{SECRET}@h.test/x", "ftp://h.test/x", "h.test/x", "https:///x"])
def test_unparseable_url_is_an_error_without_the_secret(url):
    r = make([FakeSource("netrc", {})])
    for call in (r.resolve, r.explain, lambda u: asyncio.run(r.aresolve(u))):
        with pytest.raises(ValueError) as err:
            call(url)
        assert_no_secret(str(err.value))
        assert "invalid URL" in str(err.value)


def test_explain_says_the_keyring_is_disabled(tmp_path):
    env = {"HOME": str(tmp_path), "CREDPROXY_DATA_DIR": str(tmp_path / "data")}
    e = Resolver(Settings(env=env)).explain("https://h.test/x")
    assert e.answers[-1].source == "keyring" and e.answers[-1].skipped
    assert "keyring                  skipped because keyring-provider = disabled" in e.render()


def test_hanging_slow_sources_do_not_stall_fast_lookups():
    indexes = [Index.from_url(f"https://h{i}.test/simple/") for i in range(6)]
    kr = FakeSource("keyring", {}, fast=False, delay=1.5)
    netrc = FakeSource("netrc", {"n.test": ALICE})
    r = make([netrc, kr], indexes, max_workers=2)

    async def main():
        stuck = [asyncio.create_task(r.aresolve(f"https://h{i}.test/simple/x/")) for i in range(6)]
        await asyncio.sleep(0.1)
        start = time.monotonic()
        d = await asyncio.wait_for(r.aresolve("https://n.test/x"), 10)
        took = time.monotonic() - start
        await asyncio.wait_for(asyncio.gather(*stuck), 20)
        return d, took

    d, took = asyncio.run(main())
    assert d.source == "netrc" and took < 1.0


def test_a_resolver_closed_by_a_reload_finishes_the_lookups_under_way_then_stops_its_threads():
    """close(cancel_pending=False) while a request waits on a slow source (a token-command
    that finds nothing): the fast source after it is still asked, and the worker threads stop
    once that request is done. Before, the closed pool refused the next lookup
    (RuntimeError), and the proxy answered 502."""
    ix = Index.from_url("https://h.test/simple", username="alice")
    slow = FakeSource("token-command", {}, fast=False, delay=0.3)
    netrc = FakeSource("netrc", {"h.test": ALICE})
    r = make([slow, netrc], [ix])

    async def main():
        task = asyncio.ensure_future(r.aresolve("https://h.test/simple/x"))
        for _ in range(1000):  # at most 10 s
            if slow.calls:
                break
            await asyncio.sleep(0.01)
        r.close(cancel_pending=False)
        assert not r._slow_executor._shutdown  # still working for the request under way
        return await task

    d = asyncio.run(main())
    assert (d.action, d.source) == ("inject", "netrc")
    assert r._executor._shutdown and r._slow_executor._shutdown


# --- no file parsed on the event loop (a stale file source goes to the worker) ---------------


def _netrc_resolver(tmp_path, parsed_in: list[str]):
    """A resolver over a real netrc source that records the thread of every parse."""
    from credproxy.credentials.sources.netrc import NetrcSource

    class Recording(NetrcSource):
        def _load_now(self):
            parsed_in.append(threading.current_thread().name)
            super()._load_now()

    netrc = tmp_path / ".netrc"
    netrc.write_text("machine h.test login alice password first-pw\n")
    return make([Recording({"NETRC": str(netrc)})]), netrc


def test_a_cache_hit_asks_a_fresh_file_source_on_the_loop(tmp_path):
    parsed_in: list[str] = []
    r, _netrc = _netrc_resolver(tmp_path, parsed_in)
    first = r.resolve("https://h.test/a")
    r.record("https://h.test/a", first, 200)
    assert len(parsed_in) == 1
    coro = r.aresolve("https://h.test/b")
    with pytest.raises(StopIteration) as done:
        coro.send(None)  # finishes without suspending: the netrc was asked inline, not re-read
    assert done.value.value.cached and done.value.value.credentials.password == "first-pw"
    assert len(parsed_in) == 1


def test_a_cache_hit_sends_a_rewritten_file_source_to_the_worker(tmp_path):
    """The first request after the netrc changed (before the watcher's reload) must not parse
    it on the event loop: the stale source is asked in a worker, and its new entry wins."""
    parsed_in: list[str] = []
    r, netrc = _netrc_resolver(tmp_path, parsed_in)
    first = r.resolve("https://h.test/a")
    r.record("https://h.test/a", first, 200)
    netrc.write_text("machine h.test login alice password second-password\n")

    async def request():
        return threading.current_thread().name, await r.aresolve("https://h.test/b")

    loop_thread, d = asyncio.run(request())
    assert d.action == "inject" and d.credentials.password == "second-password"
    assert len(parsed_in) == 2 and parsed_in[-1] != loop_thread
    assert parsed_in[-1].startswith("credproxy-lookup")


def test_a_source_that_cannot_tell_is_asked_off_the_loop():
    class Unsure(FakeSource):
        def needs_read(self):
            raise OSError("stat failed")

    threads = []
    src = Unsure("netrc", {"h.test": ALICE})
    real_lookup = src.lookup
    src.lookup = lambda *a: threads.append(threading.current_thread().name) or real_lookup(*a)
    r = make([src])
    r.record("https://h.test/a", r.resolve("https://h.test/a"), 200)
    assert r.needs_read()
    d = asyncio.run(r.aresolve("https://h.test/b"))
    assert d.action == "inject" and threads[-1].startswith("credproxy-lookup")
