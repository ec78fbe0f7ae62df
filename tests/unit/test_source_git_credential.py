"""`git credential fill` as a source (issue 12 point 2), with the real git and real helpers
configured in a temporary HOME: found, not asked for other hosts, never interactive, bounded."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from credproxy.config import Settings
from credproxy.credentials.resolver import Decision, Resolver
from credproxy.credentials.sources.git_credential import GitCredentialSource

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

PASSWORD = "g1t-s3cret/+=:@%"
URL = "https://git.example.test:8443/team/repo.git/info/refs?service=git-upload-pack"


def home_with_helper(tmp_path: Path, helper: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / ".gitconfig").write_text(f"[credential]\n\thelper = {helper}\n")
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}


def source(env, timeout: float = 10.0) -> GitCredentialSource:
    return GitCredentialSource(lambda host, port: host == "git.example.test", env, timeout=timeout)


def store_helper(tmp_path: Path) -> dict[str, str]:
    creds = tmp_path / "git-credentials"
    creds.write_text(f"https://alice:{quote(PASSWORD, safe='')}@git.example.test%3a8443\n")  # as git writes it
    return home_with_helper(tmp_path, f'"store --file={creds}"')


def test_gits_store_helper_answers_for_its_host(tmp_path):
    answer = source(store_helper(tmp_path)).lookup(URL, None, None)
    assert answer.found and answer.credentials.username == "alice" and answer.credentials.password == PASSWORD
    assert answer.prefix == "https://git.example.test:8443/"
    assert PASSWORD not in answer.detail and PASSWORD not in repr(answer)


def test_other_hosts_and_plain_http_are_not_asked(tmp_path):
    src = source(store_helper(tmp_path))
    assert src.lookup("https://elsewhere.test/repo.git", None, None).skipped
    assert src.lookup("http://git.example.test:8443/repo.git", None, None).skipped
    assert src.knows_host("https", "git.example.test", 8443) and not src.knows_host("https", "elsewhere.test", 443)


def test_another_username_is_not_answered(tmp_path):
    answer = source(store_helper(tmp_path)).lookup(URL, "mallory", None)
    assert not answer.found


def test_without_a_helper_git_does_not_prompt(tmp_path):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_ASKPASS": "/bin/false-askpass-should-not-run", "SSH_ASKPASS": "/bin/false"}
    started = time.monotonic()
    answer = source(env).lookup(URL, None, None)
    assert time.monotonic() - started < 10
    assert not answer.found and "no helper had credentials" in answer.detail


def test_a_hanging_helper_is_killed_with_its_process_group(tmp_path):
    pid_file = tmp_path / "helper.pid"
    helper = tmp_path / "hang-helper"
    helper.write_text(f"#!{sys.executable}\nimport os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)\n")
    helper.chmod(0o755)
    started = time.monotonic()
    answer = source(home_with_helper(tmp_path, f'"!{helper}"'), timeout=1.5).lookup(URL, None, None)
    assert time.monotonic() - started < 10
    assert not answer.found and "killed" in answer.detail
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_helper_stderr_is_echoed_with_the_password_masked(tmp_path, capfd):
    helper = tmp_path / "chatty-helper"
    helper.write_text(f"#!/bin/sh\necho 'helper says {PASSWORD}' >&2\necho username=alice\necho 'password={PASSWORD}'\n")
    helper.chmod(0o755)
    answer = source(home_with_helper(tmp_path, f'"!{helper}"')).lookup(URL, None, None)
    assert answer.found and answer.credentials.password == PASSWORD
    err = capfd.readouterr().err
    assert "helper says ****" in err and PASSWORD not in err


def test_resolver_asks_git_only_after_the_host_challenged(tmp_path):
    settings = Settings(env=store_helper(tmp_path), git_credential_hosts=["git.example.test"])
    resolver = Resolver(settings)
    try:
        assert resolver.sources[-1].name == "git-credential"
        assert resolver.knows_host("https", "git.example.test", 8443)  # so its TLS is intercepted
        first = resolver.resolve(URL)
        assert first.action == "send"
        retry = resolver.challenge(URL, first, 401)
        assert retry is not None and retry.action == "inject" and retry.source == "git-credential"
        resolver.record(URL, retry, 200)
        # the next request (the push's POST) carries it up front, from the session cache
        again = resolver.resolve("https://git.example.test:8443/team/repo.git/git-receive-pack")
        assert again.action == "inject" and again.cached
        assert isinstance(again, Decision)
    finally:
        resolver.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.parametrize("username, url", [
    ("alice\nhost=elsewhere.test", URL),
    ("alice\rhost=elsewhere.test", URL),
    ("alice\x00host=elsewhere.test", URL),
    (None, "https://git.example.test:8443/team/repo.git%0a/x"),  # encoded: stays one line, asked
])
def test_a_line_break_in_a_value_never_reaches_gits_line_based_protocol(tmp_path, username, url):
    asked = tmp_path / "asked"
    helper = tmp_path / "recording-helper"
    helper.write_text(f"#!/bin/sh\ncat >> '{asked}'\necho username=alice\necho password=pw\n")
    helper.chmod(0o755)
    answer = source(home_with_helper(tmp_path, f'"!{helper}"')).lookup(url, username, None)
    if username is None:
        assert answer.found and "host=git.example.test:8443\n" in asked.read_text()
        return
    assert not answer.found and "line break" in answer.detail
    assert not asked.exists(), "git (and its helper) ran with the injected line"
    assert "elsewhere" not in answer.detail


@pytest.mark.parametrize("path, repository", [
    ("/team/repo.git/info/refs", "team/repo.git"),
    ("/team/repo.git/git-upload-pack", "team/repo.git"),
    ("/team/repo.git", "team/repo.git"),
    ("/org/project/_git/repo/info/refs", "org/project/_git/repo"),
    ("/team/repo/git-receive-pack", "team/repo"),
    ("/team/repo/info/lfs/objects/batch", "team/repo"),
    ("/a.github/x/info/refs", "a.github/x"),
])
def test_the_repository_path_is_what_git_itself_sends(path, repository):
    from credproxy.credentials.sources.git_credential import repository_path

    assert repository_path(path) == repository


def test_with_use_http_path_each_repository_has_its_own_credential_and_scope(tmp_path):
    creds = tmp_path / "git-credentials"
    creds.write_text(f"https://alice:{quote(PASSWORD, safe='')}@git.example.test%3a8443/team/repo.git\n")
    env = home_with_helper(tmp_path, f'"store --file={creds}"')
    with open(Path(env["HOME"]) / ".gitconfig", "a") as f:
        f.write("\tuseHttpPath = true\n")
    src = source(env)
    answer = src.lookup(URL, None, None)
    assert answer.found and answer.credentials.password == PASSWORD
    assert answer.prefix == "https://git.example.test:8443/team/repo.git/"
    assert not src.lookup("https://git.example.test:8443/other/repo.git/info/refs", None, None).found
    assert src.memo_scope(URL) != src.memo_scope("https://git.example.test:8443/other/repo.git/info/refs")


def test_git_runs_outside_any_repository_so_a_repositorys_helper_is_never_used(tmp_path, monkeypatch):
    import subprocess

    ran = tmp_path / "ran"
    evil = tmp_path / "evil-helper"
    evil.write_text(f"#!/bin/sh\ntouch '{ran}'\necho username=alice\necho password=evil\n")
    evil.chmod(0o755)
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=30)
    with open(repo / ".git" / "config", "a") as f:
        f.write(f'[credential]\n\thelper = "!{evil}"\n')
    env = {**home_with_helper(tmp_path, '""'), "GIT_DIR": str(repo / ".git")}
    monkeypatch.chdir(repo)
    answer = source(env).lookup(URL, None, None)
    assert not answer.found and not ran.exists()


def test_a_huge_request_path_is_not_written_to_git(tmp_path):
    """The path comes from the client; git's stdin is written before the timeout starts, so a
    request longer than MAX_REQUEST is refused without running git (a helper that never reads
    stdin could otherwise hold the lookup past its timeout)."""
    from credproxy.credentials.sources.git_credential import MAX_REQUEST, GitCredentialSource
    source = GitCredentialSource(lambda host, port: True, env={"PATH": "/nonexistent-so-git-is-never-run"})
    source.git = "/bin/false"  # found on any PATH lookup of an absolute path
    answer = source.lookup("https://git.test/" + "a" * (MAX_REQUEST + 10) + ".git/info/refs", None, None)
    assert not answer.found and "git not asked" in answer.detail
