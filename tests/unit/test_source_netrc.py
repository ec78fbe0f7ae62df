from __future__ import annotations

import os

import logging

import pytest

from credproxy.credentials.index import Index
from credproxy.credentials.model import covers, secret_forms
from credproxy.credentials.sources.netrc import NetrcSource

NETRC = """\
machine pkgs.example.com login alice password s3cret
machine 127.0.0.1 login bob password ""
machine other.example:8443 login carl password portpw
machine [::1] login six password sixpw
default login anon password anonpw
"""


@pytest.fixture
def home(tmp_path):
    (tmp_path / ".netrc").write_text(NETRC)
    return tmp_path


@pytest.mark.parametrize(
    "url, username, expected, preemptive",
    [
        ("https://pkgs.example.com/simple/", None, ("alice", "s3cret"), True),
        ("http://PKGS.example.com:8080/x", None, ("alice", "s3cret"), True),  # host only
        ("https://pkgs.example.com/", "alice", ("alice", "s3cret"), True),
        ("https://pkgs.example.com/", "mallory", None, None),  # no fallback to default
        ("http://127.0.0.1:18087/simple", None, ("bob", ""), True),  # empty password complete
        ("https://other.example:8443/", None, ("anon", "anonpw"), False),  # host:port never matches
        ("https://unknown.example/", None, ("anon", "anonpw"), False),
        ("https://unknown.example/", "anon", ("anon", "anonpw"), False),
        ("https://unknown.example/", "zed", None, None),
        ("http://[::1]:8080/simple", None, ("six", "sixpw"), True),
    ],
)
def test_matching_as_uv(home, url, username, expected, preemptive):
    # uv's matching, which the widest settings give (netrc-default = "any-host",
    # netrc-loopback = "any-port"); the narrow defaults are tested below
    src = NetrcSource({}, home=str(home), default_scope="any-host", loopback_scope="any-port")
    ans = src.lookup(url, username, None)
    if expected is None:
        assert not ans.found
    else:
        assert (ans.credentials.username, ans.credentials.password) == expected
        assert ans.credentials.is_complete
        assert ans.preemptive is preemptive
    assert "s3cret" not in ans.detail and "anonpw" not in ans.detail


def test_detail_texts(home, tmp_path):
    src = NetrcSource({}, home=str(home))
    assert src.lookup("https://pkgs.example.com/", None, None).detail == f"machine pkgs.example.com in {home}/.netrc"
    (home / ".netrc").write_text("machine a.example login x password y\n")
    src = NetrcSource({}, home=str(home))
    assert src.lookup("https://b.example/", None, None).detail == f"no entry for b.example in {home}/.netrc"
    empty = tmp_path / "empty"
    empty.mkdir()
    ans = NetrcSource({}, home=str(empty)).lookup("https://b.example/", None, None)
    assert ans.detail == f"no netrc file ($NETRC unset, {empty}/.netrc missing)"


def test_netrc_env_wins_and_tilde(home):
    (home / "alt").write_text("machine pkgs.example.com login envuser password envpw\n")
    for value in [str(home / "alt"), "~/alt"]:
        src = NetrcSource({"NETRC": value, "HOME": str(home)})
        assert src.lookup("https://pkgs.example.com/", None, None).credentials.username == "envuser"
        assert src.path == str(home / "alt")


def test_missing_netrc_env_falls_back_to_home(home):
    src = NetrcSource({"NETRC": str(home / "nope"), "HOME": str(home)})
    assert src.lookup("https://pkgs.example.com/", None, None).credentials.username == "alice"


def test_home_arg_overrides_env_home(home, tmp_path):
    src = NetrcSource({"HOME": str(tmp_path / "elsewhere")}, home=str(home))
    assert src.lookup("https://pkgs.example.com/", None, None).found


def test_duplicate_machine_last_wins(tmp_path):
    (tmp_path / ".netrc").write_text("machine h login a password 1\nmachine h login b password 2\n")
    assert NetrcSource({}, home=str(tmp_path)).lookup("https://h/", None, None).credentials.username == "b"


def test_parse_error_is_a_warning_without_secret(tmp_path, caplog):
    (tmp_path / ".netrc").write_text("machine h login a password topsecret\n\nbogus topsecret2\n")
    src = NetrcSource({}, home=str(tmp_path))
    with caplog.at_level(logging.WARNING):
        ans = src.lookup("https://h/", None, None)
        src.lookup("https://h/", None, None)
    assert not ans.found
    assert str(tmp_path / ".netrc") in ans.detail and "line 3" in ans.detail
    assert len(src.warnings) == 1
    text = ans.detail + caplog.text + " ".join(src.warnings)
    for secret in ["topsecret", "topsecret2"]:
        for form in secret_forms(secret):
            assert form not in text


def test_read_again_when_the_file_changes(home):
    """A token replaced in the netrc while the proxy runs is used (issue 12: rotation); an
    unchanged file is not parsed again."""
    src = NetrcSource({}, home=str(home))
    assert src.lookup("https://pkgs.example.com/", None, None).found
    hosts = src._hosts
    assert src.lookup("https://pkgs.example.com/", None, None).found and src._hosts is hosts
    (home / ".netrc").write_text("machine pkgs.example.com login alice password rotated\n")
    answer = src.lookup("https://pkgs.example.com/", None, None)
    assert answer.credentials.password == "rotated"
    (home / ".netrc").write_text("")
    assert not src.lookup("https://pkgs.example.com/", None, None).found


def test_knows_host_machine_entries_only(home):
    src = NetrcSource({}, home=str(home), loopback_scope="any-port")
    assert src.knows_host("https", "pkgs.example.com", 443)
    assert src.knows_host("http", "PKGS.example.com", 8080)
    assert not src.knows_host("https", "unknown.example", 443)  # default does not count
    assert not src.knows_host("https", "other.example", 8443)
    assert src.knows_host("http", "::1", 8080)


# --- the narrow defaults: `default` for configured indexes, loopback for indexed ports --------


def test_default_entry_answers_configured_indexes_only(home):
    team = Index.from_url("https://unknown.example/team/simple/")
    src = NetrcSource({}, home=str(home), indexes=[team])
    refused = src.lookup("https://unknown.example/other/x", None, None)
    assert not refused.found
    assert "answers configured indexes only" in refused.detail and 'netrc-default = "any-host"' in refused.detail
    ans = src.lookup("https://unknown.example/team/simple/x/", None, team)
    assert ans.credentials.username == "anon" and ans.preemptive is False
    # cached and sent within the index root only, not the host
    assert ans.prefix == "https://unknown.example/team"
    assert not covers(ans.prefix, "https://unknown.example/other/x")
    wide = NetrcSource({}, home=str(home), default_scope="any-host").lookup("https://unknown.example/o", None, None)
    assert wide.credentials.username == "anon" and wide.prefix == "https://unknown.example/"
    assert "anonpw" not in refused.detail


@pytest.mark.parametrize("url, host", [("http://127.0.0.1:18087/simple", "127.0.0.1"),
                                       ("https://[::1]:8443/x", "[::1]")])
def test_loopback_machine_entry_applies_to_index_ports_only(home, url, host):
    src = NetrcSource({}, home=str(home))
    refused = src.lookup(url, None, None)
    assert not refused.found
    assert f"machine {host}" in refused.detail and "no index names this loopback port" in refused.detail
    assert 'netrc-loopback = "any-port"' in refused.detail
    scheme, rest = url.split("://")
    port = int(rest.split("/")[0].rsplit(":", 1)[1])
    assert not src.knows_host(scheme, host.strip("[]"), port)
    # an index on that port (anywhere on it) makes the entry apply to the port
    indexed = NetrcSource({}, home=str(home), indexes=[Index.from_url(url.rsplit("/", 1)[0] + "/elsewhere/simple")])
    assert indexed.lookup(url, None, None).found and indexed.knows_host(scheme, host.strip("[]"), port)
    assert not indexed.knows_host(scheme, host.strip("[]"), port + 1)
    assert NetrcSource({}, home=str(home), loopback_scope="any-port").lookup(url, None, None).found


def test_machine_entry_prefix_is_the_realm(home):
    ans = NetrcSource({}, home=str(home)).lookup("https://pkgs.example.com:8443/a/b", None, None)
    assert ans.prefix == "https://pkgs.example.com:8443/"


@pytest.mark.parametrize("text", [
    "machine h.test login alice password s3cret\n",
    "machine h.test\r\n  login alice\r\n  password s3cret\r\ndefault login anon password x\r\n",
    "# a comment\nmachine a.test login \"quoted user\" password \"p w\" # trailing\nmachine b.test login b password c\n",
    "macdef init\ncd /pub\n\nmachine h.test login u password \\\"escaped\n",
    "machine h.test login u account acct password p\nmachine h.test login second password later\n",
    "machine h.test login u password pässwörd\n",
])
def test_the_in_memory_parse_is_the_standard_librarys(tmp_path, text):
    """credproxy parses the bytes it read (netrc.py `_parse_bytes`, so a big file in a worker
    thread does not starve the event loop of the GIL); the result is netrc.netrc's."""
    import netrc as stdlib_netrc

    from credproxy.credentials.sources.netrc import _parse_bytes

    path = tmp_path / "netrc"
    path.write_bytes(text.encode())
    ours, theirs = _parse_bytes(str(path), path.read_bytes()), stdlib_netrc.netrc(str(path))
    assert (ours.hosts, ours.macros) == (theirs.hosts, theirs.macros)


def test_the_in_memory_parse_fails_where_the_standard_library_does(tmp_path):
    import netrc as stdlib_netrc

    from credproxy.credentials.sources.netrc import _parse_bytes

    path = tmp_path / "netrc"
    path.write_text("machine a.test login a password b\nmachine\n")
    with pytest.raises(stdlib_netrc.NetrcParseError) as ours:
        _parse_bytes(str(path), path.read_bytes())
    with pytest.raises(stdlib_netrc.NetrcParseError) as theirs:
        stdlib_netrc.netrc(str(path))
    assert (ours.value.lineno, ours.value.filename) == (theirs.value.lineno, theirs.value.filename)


def test_parsing_a_big_netrc_in_a_worker_leaves_the_event_loop_running(tmp_path):
    """netrc.netrc reads its file a character at a time, and in a worker thread that kept
    the event loop off the GIL for the whole parse (a second for 3 MB). The source parses
    what it read from memory: the loop keeps turning, its longest pause a fraction of the
    parse time (measured here, so the bound holds on a slow machine)."""
    import asyncio
    import time

    from tests.helpers.timing import big_netrc, replace_file

    path = tmp_path / "netrc"
    replace_file(path, big_netrc(10_000))

    async def longest_pause() -> tuple[float, float]:
        source = NetrcSource({"NETRC": str(path)})
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        parsing = loop.run_in_executor(None, source.knows_host, "https", "nothing.invalid", 443)
        pauses = []
        while not parsing.done():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            pauses.append(time.perf_counter() - before)
        await parsing
        return max(pauses), time.perf_counter() - start

    pause, took = asyncio.run(longest_pause())
    assert pause < took / 4, f"the event loop stood still for {pause:.3f} s of a {took:.3f} s parse"


def test_a_removed_netrc_leaves_no_parse_behind(tmp_path):
    """The parse shared between sources (netrc.py `_parsed`) lives only as long as a source
    uses it: a deleted file's passwords do not stay in the proxy's memory, also when the
    source falls back to ~/.netrc (the review's case: `$NETRC` deleted, ~/.netrc present)."""
    import gc

    from credproxy.credentials.sources import netrc as netrc_module

    path = tmp_path / "netrc"
    path.write_text("machine h.test login alice password gone-soon-pw\n")
    (tmp_path / ".netrc").write_text("machine other.test login bob password stays-pw\n")
    source = NetrcSource({"NETRC": str(path), "HOME": str(tmp_path)})
    assert source.knows_host("https", "h.test", 443)
    assert str(path) in netrc_module._parsed
    path.unlink()
    assert not source.knows_host("https", "h.test", 443)
    assert source.knows_host("https", "other.test", 443)  # ~/.netrc now
    gc.collect()
    assert not any("gone-soon-pw" in repr(vars(entry)) for entry in netrc_module._parsed.values())
    del source
    gc.collect()
    assert not any("stays-pw" in repr(vars(entry)) for entry in netrc_module._parsed.values())


def test_a_netrc_that_is_not_a_regular_file_or_too_large_is_ignored_with_a_warning(tmp_path, monkeypatch):
    """A FIFO named by $NETRC would block the read (and every source of that file) for good;
    a huge file is not read whole."""
    from credproxy.credentials.sources import netrc as netrc_module

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    source = NetrcSource({"NETRC": str(fifo), "HOME": str(tmp_path)})
    answer = source.lookup("https://h.test/simple/", None, None)
    assert not answer.found and "not a regular file; netrc ignored" in answer.detail
    big = tmp_path / "big"
    big.write_text("machine h.test login alice password pw\n" * 10)
    monkeypatch.setattr(netrc_module, "SIZE_LIMIT", 64)
    answer = NetrcSource({"NETRC": str(big), "HOME": str(tmp_path)}).lookup("https://h.test/simple/", None, None)
    assert not answer.found and "larger than" in answer.detail
