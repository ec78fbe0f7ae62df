from __future__ import annotations

import logging
import os
import stat
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credproxy.credentials.model import secret_forms
from credproxy.credentials.sources.store import StoreSource, store_sources
from credproxy.credentials.store import (
    Store,
    StoreEntry,
    StoreError,
    default_store_path,
    legacy_store_path,
    move_legacy_entries,
    dumps,
    find,
    parse,
    uv_store_path,
)


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "creds" / "credentials.toml")


def assert_no_secret(text: str, secret: str, username: str | None = None) -> None:
    for form in secret_forms(secret, username):
        assert form not in text, f"secret form {form!r} leaked"


# --- locations ---------------------------------------------------------------------------------


def test_default_store_path_precedence():
    """One store with uv: the override, else uv's own; credproxy's data dir is only the old
    location (legacy_store_path)."""
    assert str(default_store_path({"CREDPROXY_CREDENTIALS_DIR": "/c", "UV_CREDENTIALS_DIR": "/u"})) == "/c/credentials.toml"
    assert str(default_store_path({"CREDPROXY_DATA_DIR": "/d", "UV_CREDENTIALS_DIR": "/u"})) == "/u/credentials.toml"
    assert str(default_store_path({"HOME": "/h", "CREDPROXY_DATA_DIR": "/d"})) == "/h/.local/share/uv/credentials/credentials.toml"
    assert str(legacy_store_path({"CREDPROXY_DATA_DIR": "/d"})) == "/d/credentials.toml"
    fallback = legacy_store_path({})
    assert fallback.name == "credentials.toml" and "credproxy" in str(fallback)


@pytest.mark.parametrize(
    "env, platform, expected",
    [
        ({"UV_CREDENTIALS_DIR": "/u", "HOME": "/h"}, "unix", "/u/credentials.toml"),
        ({"UV_CREDENTIALS_DIR": "", "HOME": "/h"}, "unix", "/h/.local/share/uv/credentials/credentials.toml"),
        ({"XDG_DATA_HOME": "/x", "HOME": "/h"}, "unix", "/x/uv/credentials/credentials.toml"),
        ({"XDG_DATA_HOME": "rel", "HOME": "/h"}, "unix", "/h/.local/share/uv/credentials/credentials.toml"),
        ({"APPDATA": "/a", "HOME": "/h"}, "windows", "/a/uv/data/credentials/credentials.toml"),
        ({"HOME": "/nonexistent-home"}, "macos", "/nonexistent-home/.local/share/uv/credentials/credentials.toml"),
    ],
)
def test_uv_store_path(env, platform, expected):
    assert str(uv_store_path(env, platform=platform)).replace("\\", "/") == expected


def test_uv_store_path_macos_legacy_dir(tmp_path):
    legacy = tmp_path / "Library" / "Application Support" / "uv"
    legacy.mkdir(parents=True)
    assert uv_store_path({"HOME": str(tmp_path)}, platform="macos") == legacy / "credentials" / "credentials.toml"


# --- format ------------------------------------------------------------------------------------


def test_reads_uv_written_file(store):
    store.path.parent.mkdir()
    # exactly what `uv auth login` 0.13.9 wrote (literal string for a value with `"` and `\`)
    store.path.write_text(
        '[[credential]]\nservice = "https://example.com/"\nusername = "alice"\nscheme = "basic"\n'
        "password = 's3\"c\\ret'\n\n"
        '[[credential]]\nservice = "https://api.example.com/"\nscheme = "bearer"\ntoken = "abc"\nfoo = "ignored"\n'
    )
    entries = store.read()
    assert [(e.service, e.username, e.scheme, e.secret) for e in entries] == [
        ("https://example.com/", "alice", "basic", 's3"c\\ret'),
        ("https://api.example.com/", None, "bearer", "abc"),
    ]


def test_uv_quirk_userinfo_in_service_is_matched_and_masked(tmp_path):
    # uv 0.13.9 `auth login https://carol:pw2@h/simple` writes the secret into `service`
    path = tmp_path / "credentials.toml"
    path.write_text('[[credential]]\nservice = "https://carol:pw2-quirk@h.example/"\nusername = "carol"\npassword = "pw2-quirk"\n')
    source = StoreSource(path, name="uv-store")
    answer = source.lookup("https://h.example/simple/x/", "carol", None)
    assert answer.credentials.password == "pw2-quirk"
    assert source.knows_host("https", "h.example", 443)
    assert_no_secret(answer.detail + repr(answer) + repr(Store(path).read()), "pw2-quirk", "carol")


def test_missing_and_empty_files(store):
    assert store.read() == []
    assert not store.path.parent.exists(), "reading must not create anything (uv's store is read-only)"
    store.path.parent.mkdir()
    store.path.write_text("# only a comment\n")
    assert store.read() == []


def test_scheme_defaults_to_basic_and_password_is_optional():
    (entry,) = parse('[[credential]]\nservice = "https://h.example"\nusername = "u"\n')
    assert entry.scheme == "basic" and entry.password is None and entry.service == "https://h.example/"
    assert entry.credentials.is_complete is False


@pytest.mark.parametrize(
    "body, message",
    [
        ('service = "https://h/"\nscheme = "basic"\npassword = "p"', "`username` is required with `scheme = basic`"),
        ('service = "https://h/"\nusername = "u"\ntoken = "t"', "`token` cannot be provided with `scheme = basic`"),
        ('service = "https://h/"\nscheme = "bearer"', "`token` is required with `scheme = bearer`"),
        ('service = "https://h/"\nscheme = "bearer"\ntoken = "t"\nusername = "u"', "cannot be provided with `scheme = bearer`"),
        ('service = "h.example"\nusername = "u"', "not an absolute URL"),
        ('username = "u"', "`service` is required"),
        ('service = "https://h/"\nusername = "u"\nscheme = "digest"', "unknown scheme"),
        ('service = "https://h/"\nusername = 3', "`username` must be a string"),
    ],
)
def test_invalid_entries_fail_the_whole_file(tmp_path, body, message):
    path = tmp_path / "credentials.toml"
    path.write_text('[[credential]]\nservice = "https://ok/"\nusername = "a"\npassword = "p"\n\n[[credential]]\n' + body + "\n")
    with pytest.raises(StoreError) as e:
        Store(path).read()
    assert message in str(e.value)
    assert str(path) in str(e.value) and "#2" in str(e.value)


def test_corrupt_file_names_file_and_line_without_secret(tmp_path):
    path = tmp_path / "credentials.toml"
    path.write_text('[[credential]]\nservice = "https://h/"\nusername = "u"\npassword = "hunter2-secret\n')
    with pytest.raises(StoreError) as e:
        Store(path).read()
    text = str(e.value)
    assert str(path) in text and "(line 4)" in text
    assert_no_secret(text, "hunter2-secret")


def test_invalid_utf8_is_a_store_error(tmp_path):
    path = tmp_path / "credentials.toml"
    path.write_bytes(b'[[credential]]\nservice = "https://h/"\nusername = "\xff"\n')
    with pytest.raises(StoreError, match="not valid UTF-8"):
        Store(path).read()


# --- round trips -------------------------------------------------------------------------------

# any Unicode a user could type, including quotes, backslashes, control characters
_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
_path = st.lists(st.from_regex(r"[A-Za-z0-9._~-]{1,8}", fullmatch=True), max_size=3).map(lambda s: "/" + "/".join(s))
_service = st.builds(
    lambda host, port, path: f"https://{host}{port}{path}",
    st.from_regex(r"[a-z][a-z0-9-]{0,10}\.example", fullmatch=True),
    st.sampled_from(["", ":8443", ":443"]),
    _path,
)
_entry = st.one_of(
    st.builds(StoreEntry.basic, _service, _text, st.one_of(st.none(), _text)),
    st.builds(StoreEntry.bearer, _service, _text),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_entry, max_size=6))
def test_round_trip_property(tmp_path, entries):
    unique = list({e.key: e for e in entries}.values())
    assert parse(dumps(unique)) == unique
    store = Store(tmp_path / "rt" / "credentials.toml")
    store.modify(lambda _old: unique)
    assert store.read() == unique


def test_add_replaces_same_service_and_username_keeps_others(store):
    store.add(StoreEntry.basic("https://h.example/", "alice", "one"))
    store.add(StoreEntry.basic("https://h.example/", "bob", "two"))
    store.add(StoreEntry.basic("https://H.example:443", "alice", "three"))  # same key, normalised
    entries = {(e.username, e.password) for e in store.read()}
    assert entries == {("alice", "three"), ("bob", "two")}
    assert store.get("https://h.example", "bob").password == "two"


def test_remove_exact_key_only(store):
    store.add(StoreEntry.basic("https://h.example/", "alice", "one"))
    store.add(StoreEntry.basic("https://h.example/a", "alice", "two"))
    assert store.remove("https://h.example/", "bob") is False
    assert store.remove("https://h.example/", "alice") is True
    assert [(e.service, e.password) for e in store.read()] == [("https://h.example/a", "two")]


# --- permissions and atomicity -----------------------------------------------------------------


def test_directory_0700_file_0600_even_with_permissive_umask(store):
    old = os.umask(0o000)
    try:
        store.add(StoreEntry.basic("https://h.example/", "alice", "pw"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(store.path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.lock_path).st_mode) == 0o600
    leftovers = [p.name for p in store.path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_corrupt_file_is_never_overwritten(store):
    store.path.parent.mkdir()
    broken = '[[credential]]\nservice = "https://h/"\nusername = "u"\npassword = "unterminated\n'
    store.path.write_text(broken)
    with pytest.raises(StoreError, match="line 4"):
        store.add(StoreEntry.basic("https://other.example/", "alice", "pw"))
    with pytest.raises(StoreError):
        store.remove("https://h/", "u")
    assert store.path.read_text() == broken


def test_writer_waits_for_the_lock_then_gives_up_clearly(store, monkeypatch):
    import fcntl

    from credproxy.credentials import store as store_module

    store.add(StoreEntry.basic("https://h.example/", "alice", "pw"))
    monkeypatch.setattr(store_module, "WRITE_LOCK_TIMEOUT", 0.3)
    monkeypatch.setattr(store_module, "READ_LOCK_TIMEOUT", 0.2)
    fd = os.open(store.lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process (uv, credproxy) mid-write
        started = time.monotonic()
        with pytest.raises(StoreError, match="timed out .* waiting for the lock"):
            store.add(StoreEntry.basic("https://h.example/", "bob", "pw2"))
        assert 0.25 < time.monotonic() - started < 5
        started = time.monotonic()
        assert len(store.read()) == 1  # a stuck writer delays a reader briefly, then it reads anyway
        assert time.monotonic() - started < 2
    finally:
        os.close(fd)
    store.add(StoreEntry.basic("https://h.example/", "bob", "pw2"))
    assert len(store.read()) == 2


# --- lookup ------------------------------------------------------------------------------------

ENTRIES = [
    StoreEntry.basic("https://pkgs.example/", "root", "p-root"),
    StoreEntry.basic("https://pkgs.example/org", "org", "p-org"),
    StoreEntry.basic("https://pkgs.example/org/team/", "team", "p-team"),
    StoreEntry.basic("https://pkgs.example:8443/org", "port", "p-port"),
    StoreEntry.basic("http://pkgs.example/org", "plain", "p-plain"),
    StoreEntry.basic("https://tie.example/x", "alice", "p-a"),
    StoreEntry.basic("https://tie.example/x", "bob", "p-b"),
    StoreEntry.bearer("https://api.example/v1", "t-api"),
]


@pytest.mark.parametrize(
    "url, username, expected",
    [
        ("https://pkgs.example/org/simple/pkg/", None, "org"),  # longest prefix wins
        ("https://pkgs.example/org", None, "org"),
        ("https://pkgs.example/orgevil/simple", None, "root"),  # segments, not characters
        ("https://pkgs.example/org/team/x", None, "team"),
        ("https://pkgs.example/org/team", None, "org"),  # `/org/team/` does not cover `/org/team`
        ("https://pkgs.example:443/org/x", None, "org"),  # default port is the same realm
        ("https://pkgs.example:8443/org/x", None, "port"),
        ("https://pkgs.example:8443/other", None, None),  # other realm's `/` does not apply
        ("http://pkgs.example/org/x", None, "plain"),
        ("http://pkgs.example/", None, None),
        ("https://PKGS.example/org/x", None, "org"),
        ("https://pkgs.example/org/x", "root", "root"),  # username restricts the candidates
        ("https://pkgs.example/org/x", "nobody", None),
        ("https://tie.example/x/y", "bob", "bob"),
        ("https://api.example/v1/models", None, "bearer"),
        ("https://u:pw@pkgs.example/org/x", None, "org"),  # request userinfo is ignored
    ],
)
def test_lookup(url, username, expected):
    entry = find(ENTRIES, url, username)
    got = None if entry is None else (entry.username or "bearer")
    assert got == expected


def test_tie_without_username_is_an_error_without_secret():
    with pytest.raises(StoreError) as e:
        find(ENTRIES, "https://tie.example/x/y")
    text = str(e.value)
    assert "Multiple credentials found" in text and "specify which username" in text
    assert "'alice'" in text and "'bob'" in text
    for secret in ("p-a", "p-b"):
        assert_no_secret(text, secret)


def test_exact_service_match_prefers_given_username():
    entries = [StoreEntry.basic("https://h.example/a", "x", "px"), StoreEntry.bearer("https://h.example/a", "tok")]
    assert find(entries, "https://h.example/a").scheme == "bearer"  # exact with no username
    assert find(entries, "https://h.example/a", "x").password == "px"


# --- redaction ---------------------------------------------------------------------------------


def test_repr_and_str_never_show_secrets(store, caplog):
    secret = "s3cr&t/pw"
    entry = StoreEntry.basic("https://h.example/", "alice", secret)
    bearer = StoreEntry.bearer("https://h.example/", "tok-en-secret")
    store.add(entry)
    text = " ".join([repr(entry), str(entry), repr(bearer), repr(store.read()), repr(entry.credentials)])
    assert "****" in text
    assert_no_secret(text, secret, "alice")
    assert_no_secret(text, "tok-en-secret")


# --- the source --------------------------------------------------------------------------------


def test_source_finds_and_describes_entry(store):
    store.add(StoreEntry.basic("https://pkgs.example/org", "alice", "pw-123"))
    source = StoreSource(store.path)
    answer = source.lookup("https://pkgs.example/org/simple/x/", None, None)
    assert answer.found and answer.source == "store" and not answer.skipped
    assert answer.credentials.username == "alice" and answer.credentials.password == "pw-123"
    assert str(store.path) in answer.detail
    assert_no_secret(repr(answer) + answer.detail, "pw-123", "alice")
    miss = source.lookup("https://pkgs.example/other", None, None)
    assert not miss.found and not miss.skipped and "no entry" in miss.detail


def test_source_username_constraint(store):
    store.add(StoreEntry.basic("https://pkgs.example/", "alice", "pw"))
    source = StoreSource(store.path, name="uv-store")
    answer = source.lookup("https://pkgs.example/x", "bob", None)
    assert not answer.found and answer.source == "uv-store" and "'bob'" in answer.detail


def test_source_missing_file(tmp_path):
    answer = StoreSource(tmp_path / "none" / "credentials.toml").lookup("https://h/", None, None)
    assert not answer.found and "no credentials file" in answer.detail
    assert not (tmp_path / "none").exists()


def test_source_reloads_when_file_changes(store):
    source = StoreSource(store.path)
    assert not source.lookup("https://pkgs.example/", None, None).found
    assert not source.knows_host("https", "pkgs.example", 443)
    store.add(StoreEntry.basic("https://pkgs.example/", "alice", "first"))
    assert source.lookup("https://pkgs.example/", None, None).credentials.password == "first"
    assert source.knows_host("https", "pkgs.example", 443)
    store.add(StoreEntry.basic("https://pkgs.example/", "alice", "second"))  # same size
    assert source.lookup("https://pkgs.example/", None, None).credentials.password == "second"
    store.remove("https://pkgs.example/", "alice")
    assert not source.lookup("https://pkgs.example/", None, None).found


def test_source_corrupt_file_is_skipped_answer_not_exception(store, caplog):
    store.path.parent.mkdir()
    store.path.write_text('[[credential]]\nservice = "https://h/"\nusername = "u"\npassword = "leak-me\n')
    source = StoreSource(store.path)
    with caplog.at_level(logging.WARNING):
        answer = source.lookup("https://h/", None, None)
    assert answer.skipped and not answer.found and str(store.path) in answer.detail and "line 4" in answer.detail
    assert_no_secret(answer.detail + caplog.text, "leak-me")
    assert not source.knows_host("https", "h", 443)
    # fixed by the user while the proxy runs -> picked up
    time.sleep(0.01)
    store.path.write_text('[[credential]]\nservice = "https://h/"\nusername = "u"\npassword = "fixed"\n')
    assert source.lookup("https://h/", None, None).credentials.password == "fixed"


def test_source_tie_is_skipped_answer(store):
    store.add(StoreEntry.basic("https://h.example/", "alice", "pa"))
    store.add(StoreEntry.basic("https://h.example/", "bob", "pb"))
    answer = StoreSource(store.path).lookup("https://h.example/simple/", None, None)
    assert answer.skipped and not answer.found and "Multiple credentials" in answer.detail
    assert StoreSource(store.path).lookup("https://h.example/simple/", "bob", None).credentials.password == "pb"


@pytest.mark.parametrize(
    "scheme, host, port, expected",
    [
        ("https", "pkgs.example", 443, True),
        ("https", "PKGS.example", 443, True),
        ("https", "pkgs.example", 8443, False),
        ("http", "pkgs.example", 80, False),
        ("https", "::1", 9443, True),
        ("https", "[::1]", 9443, True),
        ("https", "other.example", 443, False),
    ],
)
def test_source_knows_host(store, scheme, host, port, expected):
    store.add(StoreEntry.basic("https://pkgs.example/org", "alice", "pw"))
    store.add(StoreEntry.basic("https://[::1]:9443/", "six", "pw"))
    assert StoreSource(store.path).knows_host(scheme, host, port) is expected


def test_store_sources_shared_then_old_location_while_it_exists(tmp_path):
    env = {"CREDPROXY_DATA_DIR": str(tmp_path / "cp"), "UV_CREDENTIALS_DIR": str(tmp_path / "uv"), "HOME": str(tmp_path)}
    assert [(s.name, s.path) for s in store_sources(env)] == [("store", tmp_path / "uv" / "credentials.toml")]
    Store(tmp_path / "cp" / "credentials.toml").add(StoreEntry.basic("https://old.example/", "o", "old-pw"))
    sources = store_sources(env)
    assert [(s.name, s.path) for s in sources] == [
        ("store", tmp_path / "uv" / "credentials.toml"),
        ("old-store", tmp_path / "cp" / "credentials.toml"),
    ]
    assert sources[1].lookup("https://old.example/x", None, None).credentials.password == "old-pw"
    same = {"CREDPROXY_CREDENTIALS_DIR": str(tmp_path / "cp"), "CREDPROXY_DATA_DIR": str(tmp_path / "cp")}
    assert [s.name for s in store_sources(same)] == ["store"]


def test_move_legacy_entries_keeps_the_shared_stores_own(tmp_path):
    legacy, shared = Store(tmp_path / "old" / "credentials.toml"), Store(tmp_path / "new" / "credentials.toml")
    legacy.modify(lambda _: [StoreEntry.basic("https://a.example/", "a", "new-a"), StoreEntry.basic("https://b.example/", "b", "old-b")])
    shared.add(StoreEntry.basic("https://a.example/", "a", "new-a"))
    moved = move_legacy_entries(legacy, shared)
    assert (moved.added, moved.kept) == (1, [])
    assert {(e.service, e.password) for e in shared.read()} == {("https://a.example/", "new-a"), ("https://b.example/", "old-b")}
    assert not legacy.path.exists()  # the same entry twice: nothing to keep
    assert move_legacy_entries(legacy, shared).added == 0


def test_move_legacy_entries_never_drops_an_old_secret_that_differs(tmp_path):
    """uv's store wins for the same URL and username, but an old entry with another password
    (or another scheme) stays in the old file, and only those entries stay."""
    legacy, shared = Store(tmp_path / "old" / "credentials.toml"), Store(tmp_path / "new" / "credentials.toml")
    legacy.modify(lambda _: [StoreEntry.basic("https://a.example/", "a", "old-a"),
                             StoreEntry.basic("https://b.example/", "b", "old-b"),
                             StoreEntry.bearer("https://t.example/", "old-token"),
                             StoreEntry.basic("https://s.example/", "s", "same")])
    shared.modify(lambda _: [StoreEntry.basic("https://a.example/", "a", "new-a"),
                             StoreEntry.bearer("https://t.example/", "new-token"),
                             StoreEntry.basic("https://s.example/", "s", "same")])
    moved = move_legacy_entries(legacy, shared)
    assert moved.added == 1
    assert [(e.service, e.secret) for e in moved.kept] == [("https://a.example/", "old-a"), ("https://t.example/", "old-token")]
    assert {(e.service, e.secret) for e in shared.read()} == {
        ("https://a.example/", "new-a"), ("https://t.example/", "new-token"), ("https://s.example/", "same"),
        ("https://b.example/", "old-b")}
    assert [(e.service, e.secret) for e in legacy.read()] == [("https://a.example/", "old-a"), ("https://t.example/", "old-token")]
    again = move_legacy_entries(legacy, shared)  # the next write says so again, and moves nothing
    assert (again.added, len(again.kept)) == (0, 2) and legacy.path.exists()


def test_move_legacy_entries_leaves_a_corrupt_old_file(tmp_path):
    legacy, shared = Store(tmp_path / "old" / "credentials.toml"), Store(tmp_path / "new" / "credentials.toml")
    legacy.path.parent.mkdir()
    legacy.path.write_text("[[credential]\n")
    with pytest.raises(StoreError):
        move_legacy_entries(legacy, shared)
    assert legacy.path.exists() and not shared.path.exists()
