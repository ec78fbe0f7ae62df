"""`credproxy auth …` as a user runs it: the installed console script in a subprocess with a
hermetic environment. Messages and exit codes follow uv 0.13.9 (uv-auth-reference.md §16)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from credproxy.credentials.model import secret_forms
from credproxy.credentials.store import Store, StoreEntry, uv_store_path

CREDPROXY = str(Path(sys.executable).parent / "credproxy")
TIMEOUT = 20


@pytest.fixture
def env(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "CREDPROXY_DATA_DIR": str(tmp_path / "data"),
    }


@pytest.fixture
def store(env):
    """The store `auth` uses by default: uv's own (here under the temp HOME)."""
    return Store(uv_store_path(env))


def cli(env, *args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CREDPROXY, "auth", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
    )


def entries(store):
    return [(e.service, e.username, e.scheme, e.secret) for e in store.read()]


def assert_no_secret(result, secret, username=None):
    for form in secret_forms(secret, username):
        assert form not in result.stdout and form not in result.stderr, f"{form!r} leaked"


# --- login -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "service, stored",
    [
        ("example.com", "https://example.com/"),
        ("example.com/simple/", "https://example.com/"),
        ("https://Example.COM/org/repo/+simple", "https://example.com/org/repo"),
        ("https://example.com/org/SIMPLE", "https://example.com/org"),
        ("https://example.com:443/org/", "https://example.com/org/"),
        ("http://localhost:9000/simple", "http://localhost:9000/"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000/"),
        ("http://[::1]:9000/", "http://[::1]:9000/"),
    ],
)
def test_login_normalises_service(env, store, service, stored):
    r = cli(env, "login", service, "--username", "alice", "--password", "pw-1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert r.stderr == f"Stored credentials for alice@{stored}\n"
    assert entries(store) == [(stored, "alice", "basic", "pw-1")]
    assert_no_secret(r, "pw-1", "alice")


def test_login_token_stores_token_username(env, store):
    r = cli(env, "login", "pkgs.example", "--token", "tok-abc")
    assert r.returncode == 0 and r.stderr == "Stored credentials for https://pkgs.example/\n"
    assert entries(store) == [("https://pkgs.example/", "__token__", "basic", "tok-abc")]
    assert_no_secret(r, "tok-abc", "__token__")


@pytest.mark.parametrize("flag", ["--password", "--token"])
def test_secret_from_stdin_one_line_trimmed(env, store, flag):
    extra = [] if flag == "--token" else ["-u", "alice"]
    r = cli(env, "login", "pkgs.example", *extra, flag, "-", stdin="  line-secret \nsecond line\n")
    assert r.returncode == 0, r.stderr
    assert store.read()[0].secret == "line-secret"
    assert_no_secret(r, "line-secret")


def test_credentials_from_url_userinfo(env, store):
    r = cli(env, "login", "https://carol:p%40ss@pkgs.example/simple")
    assert r.returncode == 0, r.stderr
    # unlike uv 0.13.9, the secret does not end up in the service string
    assert entries(store) == [("https://pkgs.example/", "carol", "basic", "p@ss")]
    assert "p@ss" not in store.path.read_text().split("password")[0]
    assert_no_secret(r, "p@ss", "carol")
    assert_no_secret(r, "p%40ss")


def test_login_replaces_and_keeps_other_usernames(env, store):
    assert cli(env, "login", "pkgs.example", "-u", "alice", "--password", "one").returncode == 0
    assert cli(env, "login", "pkgs.example", "-u", "bob", "--password", "two").returncode == 0
    assert cli(env, "login", "pkgs.example", "-u", "alice", "--password", "three").returncode == 0
    assert sorted(entries(store)) == [
        ("https://pkgs.example/", "alice", "basic", "three"),
        ("https://pkgs.example/", "bob", "basic", "two"),
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["example.com:8080/simple", "-u", "a", "--password", "p", "--token", "t"], "the argument '--token <TOKEN>' cannot be used with '--username <USERNAME>'"),
        (["ftp://example.com", "-u", "a", "--password", "p"], "invalid value 'ftp://example.com' for '<SERVICE>': Unsupported scheme: ftp"),
        (["http://example.com", "-u", "a", "--password", "p"], "invalid value 'http://example.com' for '<SERVICE>': HTTPS is required for non-local hosts"),
        (["example.com", "-u", "a"], "No password provided; did you mean to provide `--password` or `--token`?"),
        (["example.com", "--password", "p"], "No username provided; did you mean to provide `--username` or `--token`?"),
        (["example.com", "-u", "", "--password", "p"], "Username cannot be empty"),
        (["example.com", "-u", "a", "--password", ""], "Password cannot be empty"),
        (["example.com", "--token", ""], "Password cannot be empty"),
        (["https://x:y@example.com", "-u", "a", "--password", "p"], "Cannot specify a username both via the URL and CLI; found `--username a` and `x`"),
        (["https://x:y@example.com", "--password", "p"], "Cannot specify a password both via the URL and CLI"),
        (["https://x@example.com", "--token", "t"], "When using `--token`, a username cannot be provided; found: ****"),
        (["https://:y@example.com", "--token", "t"], "Cannot include a password in the URL when using `--token`"),
        (["example.com", "--token", "t", "-u", "a"], "the argument '--token <TOKEN>' cannot be used with '--username <USERNAME>'"),
        (["example.com", "--token", "t", "--password", "p"], "the argument '--token <TOKEN>' cannot be used with '--password <PASSWORD>'"),
        ([], "Missing argument 'SERVICE'"),  # click's own errors: wording varies by version
        (["example.com", "--bogus"], "No such option"),
    ],
)
def test_login_errors_are_one_line_exit_2(env, store, args, message):
    r = cli(env, "login", *args)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith(f"error: {message}") and r.stderr.count("\n") == 1, r.stderr
    assert not store.path.exists()


def test_error_never_echoes_a_url_secret(env):
    r = cli(env, "login", "ftp://u:topsecret-9@example.com", "--password", "p")
    assert r.returncode == 2 and "ftp://u:****@example.com" in r.stderr
    assert_no_secret(r, "topsecret-9", "u")
    # no scheme: a bare host with userinfo (uv would read `u` as the scheme and echo it all)
    r = cli(env, "login", "u:topsecret-9@example.com", "--password", "p")
    assert r.returncode == 2 and r.stderr == "error: Cannot specify a password both via the URL and CLI\n"
    assert_no_secret(r, "topsecret-9", "u")


def test_login_into_corrupt_store_fails_and_keeps_file(env, store):
    store.path.parent.mkdir(parents=True)
    store.path.write_text('[[credential]]\nservice = "https://h/"\nusername = "u"\npassword = "old-secret\n')
    before = store.path.read_bytes()
    r = cli(env, "login", "pkgs.example", "-u", "alice", "--password", "new-secret")
    assert r.returncode == 2
    assert r.stderr.startswith("error: cannot parse credentials file ") and str(store.path) in r.stderr
    assert r.stderr.count("\n") == 1
    assert store.path.read_bytes() == before
    assert_no_secret(r, "old-secret")
    assert_no_secret(r, "new-secret")


# --- logout ------------------------------------------------------------------------------------


def test_logout(env, store):
    store.add(StoreEntry.basic("https://pkgs.example/", "alice", "alice-pw-zz"))
    store.add(StoreEntry.basic("https://pkgs.example/", "__token__", "pt"))
    r = cli(env, "logout", "pkgs.example/simple", "-u", "alice")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "Removed credentials for alice@https://pkgs.example/\n")
    assert_no_secret(r, "alice-pw-zz", "alice")
    r = cli(env, "logout", "pkgs.example", "-u", "alice")
    assert (r.returncode, r.stderr) == (2, "error: No matching entry found for `alice@https://pkgs.example/`\n")
    r = cli(env, "logout", "https://pkgs.example/")  # default username __token__
    assert (r.returncode, r.stderr) == (0, "Removed credentials for https://pkgs.example/\n")
    assert entries(store) == []
    r = cli(env, "logout", "https://pkgs.example/")
    assert (r.returncode, r.stderr) == (2, "error: No matching entry found for `https://pkgs.example/`\n")


# --- token -------------------------------------------------------------------------------------


def test_token_prints_secret_alone_with_prefix_match(env, store):
    store.add(StoreEntry.basic("https://pkgs.example/org", "alice", "alice-secret"))
    store.add(StoreEntry.basic("https://pkgs.example/", "__token__", "root-token"))
    r = cli(env, "token", "https://pkgs.example/org/simple/x", "-u", "alice")
    assert (r.returncode, r.stdout, r.stderr) == (0, "alice-secret\n", "")
    r = cli(env, "token", "pkgs.example/org/x")  # default username __token__
    assert (r.returncode, r.stdout, r.stderr) == (0, "root-token\n", "")


def test_token_bearer_entry(env, store):
    store.add(StoreEntry.bearer("https://api.example/", "bearer-tok"))
    r = cli(env, "token", "api.example/v1")
    assert (r.returncode, r.stdout) == (0, "bearer-tok\n")


def test_token_errors(env, store):
    store.add(StoreEntry.basic("https://pkgs.example/", "alice", "alice-only-secret"))
    r = cli(env, "token", "pkgs.example", "-u", "nobody")
    assert_no_secret(r, "alice-only-secret", "alice")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", "error: Failed to fetch credentials for `nobody@https://pkgs.example/`\n")
    store.add(StoreEntry.basic("https://pkgs.example/", "nopw", None))
    r = cli(env, "token", "pkgs.example", "-u", "nopw")
    assert (r.returncode, r.stderr) == (2, "error: No password found for `nopw@https://pkgs.example/`\n")
    r = cli(env, "token", "http://example.com")
    assert r.returncode == 2 and "HTTPS is required for non-local hosts" in r.stderr


def test_token_on_corrupt_store_reports_file_without_secret(env, store):
    store.path.parent.mkdir(parents=True)
    store.path.write_text('[[credential]]\nservice = "https://h/"\nusername = "u"\npassword = "corrupt-secret\n')
    r = cli(env, "token", "https://h/", "-u", "u")
    assert r.returncode == 2 and str(store.path) in r.stderr and "line 4" in r.stderr
    assert_no_secret(r, "corrupt-secret")


# --- dir ---------------------------------------------------------------------------------------


def test_dir(env, tmp_path):
    uv_dir = str(Path(env["HOME"]) / ".local/share/uv/credentials")
    r = cli(env, "dir")
    assert (r.returncode, r.stdout) == (0, uv_dir + "\n")
    r = cli(env, "dir", "pkgs.example")
    assert (r.returncode, r.stdout) == (0, uv_dir + "\n")
    r = cli({**env, "UV_CREDENTIALS_DIR": str(tmp_path / "u")}, "dir")
    assert r.stdout == str(tmp_path / "u") + "\n"
    r = cli({**env, "CREDPROXY_CREDENTIALS_DIR": str(tmp_path / "c")}, "dir")
    assert r.stdout == str(tmp_path / "c") + "\n"
    r = cli(env, "dir", "ftp://x")
    assert r.returncode == 2 and "Unsupported scheme: ftp" in r.stderr


# --- prompts on a terminal ---------------------------------------------------------------------


def _acquire_controlling_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_prompts_on_a_tty_with_hidden_password(env, store):
    """With stdin a terminal and nothing given, login asks; the password is not echoed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [CREDPROXY, "auth", "login", "pkgs.example"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
        preexec_fn=_acquire_controlling_tty,
    )
    os.close(slave)
    seen = b""

    def read_until(marker: bytes, timeout: float = TIMEOUT) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {marker!r} in {seen!r}"
            ready, _, _ = select.select([master], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(master, 1024)
                except OSError:
                    chunk = b""
                assert chunk, f"terminal closed before {marker!r}: {seen!r}"
                seen += chunk

    try:
        read_until(b"Enter username:")
        os.write(master, b"tty-user\n")
        read_until(b"Enter password:")
        os.write(master, b"tty-hidden-pw\n")
        read_until(b"Stored credentials for tty-user@https://pkgs.example/")
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=TIMEOUT)
        os.close(master)
    assert b"tty-hidden-pw" not in seen
    assert entries(store) == [("https://pkgs.example/", "tty-user", "basic", "tty-hidden-pw")]


@pytest.mark.parametrize("arg, service", [
    ("vm:33861/simple/", "https://vm:33861/"),       # uv 0.13.9: "Unsupported scheme: vm"
    ("example.com:8080", "https://example.com:8080/"),
    ("localhost:3141/root/pypi/+simple/", "https://localhost:3141/root/pypi"),  # strip_simple, as uv
])
def test_login_takes_a_host_with_a_port_as_a_bare_host_and_keeps_the_port(env, store, arg, service):
    r = cli(env, "login", arg, "-u", "alice", "--password", "pw")
    assert r.returncode == 0, r.stderr
    assert [(e.service, e.username) for e in store.read()] == [(service, "alice")]
    t = cli(env, "token", arg, "-u", "alice")
    assert t.returncode == 0 and t.stdout == "pw\n"


def test_token_and_logout_without_username_name_the_stored_usernames(env, store):
    """`auth token URL` looks for __token__: with only alice and bob stored, the error names
    them and says what to pass; then the command works with --username as it says."""
    for user in ("alice", "bob"):
        assert cli(env, "login", "https://pkgs.example.com/simple/", "-u", user, "--password", f"pw-{user}").returncode == 0
    r = cli(env, "token", "https://pkgs.example.com/simple/x/")
    assert r.returncode == 2
    assert r.stderr == ("error: Failed to fetch credentials for `https://pkgs.example.com/simple/x/`; "
                        "entries for this URL: alice, bob; pass --username\n")
    assert "pw-" not in r.stderr
    assert cli(env, "token", "https://pkgs.example.com/simple/x/", "--username", "bob").stdout == "pw-bob\n"
    r = cli(env, "logout", "https://pkgs.example.com/")
    assert r.returncode == 2
    assert r.stderr == ("error: No matching entry found for `https://pkgs.example.com/`; "
                        "entries for this URL: alice, bob; pass --username\n")
    assert cli(env, "logout", "https://pkgs.example.com/", "--username", "alice").returncode == 0
    assert [e.username for e in store.read()] == ["bob"]
    # another host's entries are not "for this URL"
    r = cli(env, "token", "https://other.example.com/")
    assert r.returncode == 2 and "entries for this URL" not in r.stderr


def test_login_scheme_bearer_stores_a_uv_bearer_entry(env, store):
    """`--scheme bearer` (npm registries): uv's `scheme = "bearer"` entry, the token from stdin."""
    result = cli(env, "login", "https://npm.example.com/", "--token", "-", "--scheme", "bearer", stdin="npm-s3cret\n")
    assert result.returncode == 0, result.stderr
    assert "Stored a bearer token for https://npm.example.com/" in result.stderr
    assert entries(store) == [("https://npm.example.com/", None, "bearer", "npm-s3cret")]
    assert_no_secret(result, "npm-s3cret")
    text = store.path.read_text()
    assert 'scheme = "bearer"' in text and 'token = "npm-s3cret"' in text and "username" not in text
    logout = cli(env, "logout", "https://npm.example.com/")
    assert logout.returncode == 0, logout.stderr
    assert entries(store) == []


@pytest.mark.parametrize("args", [
    ("--username", "alice", "--password", "-"),
    ("--password", "-"),
    ("--token", "-", "--username", "alice"),
])
def test_login_scheme_bearer_needs_a_token_alone(env, store, args):
    result = cli(env, "login", "https://npm.example.com/", *args, "--scheme", "bearer", stdin="x\n")
    assert result.returncode != 0
    assert "`--scheme bearer` stores a token: use it with `--token`" in result.stderr
    assert entries(store) == []


def test_a_token_given_as_the_urls_username_is_not_echoed_by_the_refusals(tmp_path, monkeypatch):
    """`auth login https://TOKEN@host --token -` and `https://TOKEN:x-oauth-basic@host -u me` are
    refused; the refusal names the conflict without the token."""
    from click.testing import CliRunner

    from credproxy.cli import main
    token = "ghp_T0kenInTheUrl0123456789abcdefXYZ"
    monkeypatch.setenv("UV_CREDENTIALS_DIR", str(tmp_path))
    for args in (["auth", "login", f"https://{token}@example.com", "--token", "t"],
                 ["auth", "login", f"https://{token}:x-oauth-basic@example.com", "-u", "me", "--password", "p"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code != 0
        assert "Cannot specify a username" in result.output or "cannot be provided" in result.output, result.output
        assert token not in result.output and token[:10] not in result.output, result.output
