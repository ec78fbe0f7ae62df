"""proxy/token.py: the per-user token file and --proxyauth pairs, on a real file system.
The CLI and the running proxy are covered by tests/security/test_owner_only.py."""

from __future__ import annotations

import os
import stat

import pytest

from credproxy.proxy import token
from credproxy.proxy.token import ProxyCredential, TokenError, TokenFile, ensure_token, parse_pair, read_pair_file


def test_ensure_token_creates_a_private_file_once(tmp_path):
    path = tmp_path / "data" / "proxy-token"
    first = ensure_token(path=path)
    assert first.user == "credproxy" and len(first.token) >= 43
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert ensure_token(path=path) == first
    assert first.token not in repr(first)


def test_an_existing_data_dir_is_made_private(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    ensure_token(path=data / "proxy-token")
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


def test_a_lost_race_keeps_the_winners_token(tmp_path, monkeypatch):
    path = tmp_path / "proxy-token"
    real_link = os.link

    def late_link(src, dst):  # another process links its token first
        with open(dst, "w") as f:
            f.write("W" * 43 + "\n")
        os.chmod(dst, 0o600)
        return real_link(src, dst)

    monkeypatch.setattr(token.os, "link", late_link)
    assert ensure_token(path=path).token == "W" * 43
    assert [p.name for p in tmp_path.iterdir()] == ["proxy-token"]  # no temporary file left


@pytest.mark.parametrize("content, mode, message", [
    ("short\n", 0o600, "not a credproxy proxy token"),
    ("x" * 5000, 0o600, "not a credproxy proxy token"),
    ("A" * 43 + " B\n", 0o600, "not a credproxy proxy token"),
    ("A" * 43 + "\n", 0o640, "readable by other users"),
])
def test_bad_files_are_errors_and_stay_as_they_were(tmp_path, content, mode, message):
    path = tmp_path / "proxy-token"
    path.write_text(content)
    os.chmod(path, mode)
    with pytest.raises(TokenError) as err:
        ensure_token(path=path)
    assert message in str(err.value) and "credproxy env" in str(err.value)
    assert "A" * 43 not in str(err.value)
    assert path.read_text() == content and stat.S_IMODE(path.stat().st_mode) == mode


def test_a_symlink_is_not_followed(tmp_path):
    target = tmp_path / "target"
    target.write_text("B" * 43 + "\n")
    os.chmod(target, 0o600)
    (tmp_path / "proxy-token").symlink_to(target)
    with pytest.raises(TokenError, match="symbolic link"):
        ensure_token(path=tmp_path / "proxy-token")
    dangling = tmp_path / "d" / "proxy-token"
    dangling.parent.mkdir()
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(TokenError, match="symbolic link"):
        ensure_token(path=dangling)
    assert not (tmp_path / "nowhere").exists(), "creating through a dangling link would write elsewhere"


def test_token_file_follows_rotation(tmp_path):
    path = tmp_path / "proxy-token"
    watched = TokenFile(path)
    first = watched.current()
    assert watched.current() == first
    path.unlink()
    second = ensure_token(path=path)
    assert second != first and watched.current() == second
    path.unlink()
    third = watched.current()  # deleted while running: a new one, which `credproxy env` then reads
    assert third != second and ensure_token(path=path) == third


def test_matches_only_the_exact_pair():
    pair = ProxyCredential("credproxy", "t0ken-value")
    assert pair.matches(pair.header_value())
    assert pair.matches("basic " + pair.header_value().split()[1])
    for value in (None, "", "Basic", "Basic !!!", "Bearer t0ken-value", ProxyCredential("credproxy", "t0ken-valuE").header_value(),
                  ProxyCredential("credproxy", "t0ken-value ").header_value(), ProxyCredential("x", "t0ken-value").header_value()):
        assert not pair.matches(value), value


@pytest.mark.parametrize("text, message", [
    (":", "the user and the token are empty"),
    ("u:", "the token is empty"),
    (":t", "the user is empty"),
    ("novalue", "expected USER:TOKEN"),
    ("u:to ken", "spaces or control characters"),
])
def test_parse_pair_refuses_empty_or_odd_parts(text, message):
    with pytest.raises(TokenError, match=message):
        parse_pair(text, "CREDPROXY_PROXYAUTH")


def test_pair_file_reads_the_first_line_and_warns_when_others_can_read_it(tmp_path):
    path = tmp_path / "pair"
    path.write_text("\nme:s3cret-pair\n")
    os.chmod(path, 0o600)
    pair, warnings = read_pair_file(path)
    assert (pair.user, pair.token, warnings) == ("me", "s3cret-pair", [])
    os.chmod(path, 0o644)
    _, warnings = read_pair_file(path)
    assert warnings and "chmod 600" in warnings[0] and "s3cret" not in warnings[0]
    with pytest.raises(TokenError, match="cannot read"):
        read_pair_file(tmp_path / "missing")
