"""Real uv (the wheel in .venv, 0.13.9) and credproxy share one credentials.toml: uv reads what
`credproxy auth login` writes, our uv-store source reads what `uv auth login` writes, and both
take the same lock."""

from __future__ import annotations

import http.server
import subprocess
import sys
from pathlib import Path

import pytest

from credproxy.credentials.model import secret_forms
from credproxy.credentials.sources.store import StoreSource
from credproxy.credentials.store import Store, StoreEntry, uv_store_path
from tests.helpers.loopback import LoopbackServer, basic_header, send_body

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
CREDPROXY = str(BIN / "credproxy")
UV = str(BIN / "uv")
TIMEOUT = 60

# quotes, backslash, `#`, `=`, non-ASCII: everything a TOML writer or reader may get wrong
AWKWARD = "pa'ss\"wo\\rd #=ünï 🎉"


@pytest.fixture
def env(tmp_path):
    """Hermetic: temp HOME, no uv config, no proxy or CA variables, both tools on one store."""
    home = tmp_path / "home"
    home.mkdir()
    store_dir = tmp_path / "store"
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "UV_NO_CONFIG": "1",
        "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        "UV_CREDENTIALS_DIR": str(store_dir),
        "CREDPROXY_CREDENTIALS_DIR": str(store_dir),
    }


def run(cmd, env, stdin=""):
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=TIMEOUT)


def uv_token(env, service, username=None):
    args = [UV, "auth", "token", service] + (["--username", username] if username else [])
    return run(args, env)


def test_uv_reads_credproxy_login(env):
    r = run([CREDPROXY, "auth", "login", "pkgs.example/simple/", "--username", "alice", "--password", "-"], env, AWKWARD + "\n")
    assert r.returncode == 0, r.stderr
    r = run([CREDPROXY, "auth", "login", "pkgs.example/simple/", "--username", "bob", "--password", "bob-pw"], env)
    assert r.returncode == 0, r.stderr
    for service in ("pkgs.example", "https://pkgs.example/simple/some-package/"):
        r = uv_token(env, service, "alice")
        assert (r.returncode, r.stdout) == (0, AWKWARD + "\n"), r.stderr
    r = uv_token(env, "https://pkgs.example/", "bob")
    assert (r.returncode, r.stdout) == (0, "bob-pw\n"), r.stderr


def test_uv_reads_credproxy_token_login(env):
    r = run([CREDPROXY, "auth", "login", "https://tokens.example/org/simple", "--token", "tok-123"], env)
    assert r.returncode == 0, r.stderr
    r = uv_token(env, "https://tokens.example/org/simple/pkg/")  # uv's default username __token__
    assert (r.returncode, r.stdout) == (0, "tok-123\n"), r.stderr
    r = uv_token(env, "https://tokens.example/other/")
    assert r.returncode != 0 and "tok-123" not in r.stdout + r.stderr


def test_uv_agrees_on_logout(env):
    assert run([CREDPROXY, "auth", "login", "pkgs.example", "-u", "alice", "--password", "pw"], env).returncode == 0
    assert run([CREDPROXY, "auth", "logout", "pkgs.example", "-u", "alice"], env).returncode == 0
    r = uv_token(env, "pkgs.example", "alice")
    assert r.returncode == 2 and "Failed to fetch credentials" in r.stderr


def test_uv_store_source_reads_uv_login(env):
    r = run([UV, "auth", "login", "https://uvpkgs.example/simple/", "--username", "carol", "--password", "-"], env, AWKWARD + "\n")
    assert r.returncode == 0, r.stderr
    r = run([UV, "auth", "login", "uvpkgs.example/team", "--token", "team-token"], env)
    assert r.returncode == 0, r.stderr
    source = StoreSource(uv_store_path(env), name="uv-store")
    answer = source.lookup("https://uvpkgs.example/simple/pkg/", "carol", None)
    assert answer.found and answer.source == "uv-store", answer.detail
    assert (answer.credentials.username, answer.credentials.password) == ("carol", AWKWARD)
    answer = source.lookup("https://uvpkgs.example/team/simple/", "__token__", None)
    assert answer.credentials.password == "team-token"
    assert source.knows_host("https", "uvpkgs.example", 443)
    for form in secret_forms(AWKWARD, "carol"):
        assert form not in answer.detail + repr(answer)
    # `credproxy auth token` reads the same file
    r = run([CREDPROXY, "auth", "token", "https://uvpkgs.example/pkg", "-u", "carol"], env)
    assert (r.returncode, r.stdout) == (0, AWKWARD + "\n"), r.stderr


def test_uv_store_path_matches_uv_default_location(tmp_path):
    """Without UV_CREDENTIALS_DIR, uv_store_path() is where `uv auth login` writes."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "UV_NO_CONFIG": "1", "UV_CACHE_DIR": str(tmp_path / "c")}
    r = run([UV, "auth", "login", "default.example", "-u", "dan", "--password", "dan-pw"], env)
    assert r.returncode == 0, r.stderr
    r = run([UV, "auth", "dir"], env)
    assert Path(r.stdout.strip()) == uv_store_path(env).parent
    answer = StoreSource(uv_store_path(env), name="uv-store").lookup("https://default.example/x", None, None)
    assert answer.credentials.password == "dan-pw"


def test_source_sees_uv_login_while_running(env):
    """A long-lived source (the proxy's) picks up a login made after it first read the file."""
    source = StoreSource(uv_store_path(env), name="uv-store")
    assert not source.lookup("https://late.example/", None, None).found
    assert run([UV, "auth", "login", "late.example", "-u", "eve", "--password", "late-pw"], env).returncode == 0
    assert source.lookup("https://late.example/", None, None).credentials.password == "late-pw"


def test_uv_and_credproxy_logins_share_the_lock(env):
    """Five uv and five credproxy logins at once on one store, pre-filled so writes overlap:
    both take the same lock and re-read, so no entry is lost."""
    store = Store(Path(env["CREDPROXY_CREDENTIALS_DIR"]) / "credentials.toml")
    store.modify(lambda _old: [StoreEntry.basic(f"https://h{i}.example/", f"u{i}", "w" * 100) for i in range(300)])
    procs = []
    try:
        for n in range(10):
            tool = UV if n % 2 else CREDPROXY
            procs.append(
                subprocess.Popen(
                    [tool, "auth", "login", f"https://mix{n}.example/", "--username", f"m{n}", "--password", f"pw-{n}"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=env,
                )
            )
        results = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=TIMEOUT)
    for p, (_out, err) in zip(procs, results):
        assert p.returncode == 0, err
    entries = {(e.service, e.username): e.password for e in store.read()}
    assert len(entries) == 310
    assert all(entries[(f"https://mix{n}.example/", f"m{n}")] == f"pw-{n}" for n in range(10))


class _AuthIndex(http.server.BaseHTTPRequestHandler):
    """A PEP 503 index on 127.0.0.1 that answers 401 unless it gets alice's password; it
    records every Authorization header it is sent."""

    expected = basic_header("alice", AWKWARD)
    seen: list[tuple[str, str | None]]

    def do_GET(self):
        auth = self.headers.get("Authorization")
        self.seen.append((self.path, auth))
        if auth != self.expected:
            send_body(self, 401, b"", headers={"WWW-Authenticate": 'Basic realm="test"'})
            return
        send_body(self, 200, b"<!DOCTYPE html><html><body></body></html>", "text/html")

    def log_message(self, *args):
        pass


def test_uv_resolver_authenticates_with_credproxy_store(env, tmp_path):
    """Not just `uv auth token`: uv's HTTP middleware answers a 401 from an index with the
    credentials `credproxy auth login` stored."""
    handler = type("Handler", (_AuthIndex,), {"seen": []})
    server = LoopbackServer(handler, timeout=30).start()
    try:
        index = server.url("/simple/")
        r = run([CREDPROXY, "auth", "login", index, "-u", "alice", "--password", "-"], env, AWKWARD + "\n")
        assert r.returncode == 0, r.stderr
        r = run(
            [UV, "pip", "compile", "-", "--index-url", index, "--python", sys.executable, "--no-header"],
            {**env, "UV_PYTHON_DOWNLOADS": "never"},
            "demo-pkg\n",
        )
        # the index is empty, so resolution fails: what matters is how uv asked
        assert "no versions of demo-pkg" in r.stderr, r.stderr
    finally:
        server.stop()
    assert ("/simple/demo-pkg/", _AuthIndex.expected) in handler.seen, handler.seen


AWKWARD_SECRETS = [
    "tab\there",
    # (no C0 controls: `uv auth token` strips them from what it prints, so they cannot be
    # checked this way; tomllib reads them back in the unit round-trip test)
    'both\'"quotes',
    "back\\slash\\\\",
    "line\u2028sep",
    "ünïcødé-🎉",
    "''' triple",
    '""" triple',
    "#not-a-comment",
    " spaces inside ",
]


def test_uv_reads_every_escape_we_write(env):
    """Escapes TOML writers get wrong, plus a bearer entry uv must accept in the same file."""
    store = Store(Path(env["CREDPROXY_CREDENTIALS_DIR"]) / "credentials.toml")
    entries = [StoreEntry.basic(f"https://s{i}.example/", f"user{i}", secret) for i, secret in enumerate(AWKWARD_SECRETS)]
    entries.append(StoreEntry.bearer("https://bearer.example/", "bearer-token"))
    store.modify(lambda _old: entries)
    for i, secret in enumerate(AWKWARD_SECRETS):
        r = uv_token(env, f"https://s{i}.example/", f"user{i}")
        assert r.returncode == 0, r.stderr
        assert r.stdout == secret + "\n"


# --- one store by default: no CREDPROXY_CREDENTIALS_DIR, no UV_CREDENTIALS_DIR ------------------


@pytest.fixture
def default_env(tmp_path):
    """Hermetic, and neither tool told where the store is: each finds it by itself (HOME)."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "UV_NO_CONFIG": "1",
        "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        "CREDPROXY_DATA_DIR": str(tmp_path / "credproxy-data"),
    }


def test_default_store_is_uvs_both_ways(default_env):
    """`uv auth login` -> `credproxy auth token` finds it; `credproxy auth login` -> `uv auth
    token` finds it; `auth dir` of both name the same directory."""
    env = default_env
    r = run([UV, "auth", "login", "https://uv-wrote.example/simple/", "-u", "ulla", "--password", "-"], env, AWKWARD + "\n")
    assert r.returncode == 0, r.stderr
    r = run([CREDPROXY, "auth", "token", "https://uv-wrote.example/simple/pkg/", "-u", "ulla"], env)
    assert (r.returncode, r.stdout) == (0, AWKWARD + "\n"), r.stderr

    r = run([CREDPROXY, "auth", "login", "https://cp-wrote.example/simple/", "-u", "carl", "--password", "-"], env, "cp-pw\n")
    assert r.returncode == 0, r.stderr
    r = uv_token(env, "https://cp-wrote.example/simple/pkg/", "carl")
    assert (r.returncode, r.stdout) == (0, "cp-pw\n"), r.stderr
    r = run([CREDPROXY, "auth", "login", "tok.example", "--token", "-"], env, "tok-secret\n")
    assert r.returncode == 0, r.stderr
    assert uv_token(env, "https://tok.example/x").stdout == "tok-secret\n"

    # logout by one is seen by the other
    assert run([UV, "auth", "logout", "https://cp-wrote.example/", "-u", "carl"], env).returncode == 0
    r = run([CREDPROXY, "auth", "token", "https://cp-wrote.example/", "-u", "carl"], env)
    assert r.returncode == 2 and "cp-pw" not in r.stdout + r.stderr

    ours = run([CREDPROXY, "auth", "dir"], env)
    theirs = run([UV, "auth", "dir"], env)
    assert ours.returncode == theirs.returncode == 0
    assert ours.stdout == theirs.stdout == str(Path(env["HOME"]) / ".local/share/uv/credentials") + "\n"
    assert not (Path(env["CREDPROXY_DATA_DIR"]) / "credentials.toml").exists()


def test_uv_credentials_dir_is_followed(default_env, tmp_path):
    env = {**default_env, "UV_CREDENTIALS_DIR": str(tmp_path / "uvdir")}
    assert run([UV, "auth", "login", "moved.example", "-u", "m", "--password", "moved-pw"], env).returncode == 0
    r = run([CREDPROXY, "auth", "token", "moved.example", "-u", "m"], env)
    assert (r.returncode, r.stdout) == (0, "moved-pw\n"), r.stderr
    assert run([CREDPROXY, "auth", "dir"], env).stdout == str(tmp_path / "uvdir") + "\n"


def test_credproxy_credentials_dir_overrides(default_env, tmp_path):
    env = {**default_env, "CREDPROXY_CREDENTIALS_DIR": str(tmp_path / "mine")}
    assert run([CREDPROXY, "auth", "login", "own.example", "-u", "o", "--password", "own-pw"], env).returncode == 0
    assert Store(tmp_path / "mine" / "credentials.toml").get("https://own.example/", "o") is not None
    assert run([CREDPROXY, "auth", "dir"], env).stdout == str(tmp_path / "mine") + "\n"


def test_old_location_is_read_then_moved_on_next_write(default_env):
    """Entries credproxy stored before it shared uv's store: `auth token` and the proxy's
    source still find them; the next `auth login` moves them, after which uv sees them too."""
    env = default_env
    old = Store(Path(env["CREDPROXY_DATA_DIR"]) / "credentials.toml")
    old.modify(lambda _: [StoreEntry.basic("https://old.example/", "olga", "old-pw"),
                          StoreEntry.basic("https://oldtok.example/", "__token__", "old-token")])
    r = run([CREDPROXY, "auth", "token", "https://old.example/simple/", "-u", "olga"], env)
    assert (r.returncode, r.stdout) == (0, "old-pw\n"), r.stderr
    assert uv_token(env, "https://old.example/", "olga").returncode != 0  # not moved yet

    r = run([CREDPROXY, "auth", "login", "new.example", "-u", "nina", "--password", "new-pw"], env)
    assert r.returncode == 0, r.stderr
    assert f"Moved 2 stored credential(s) from {old.path}" in r.stderr
    assert "old-pw" not in r.stderr and "old-token" not in r.stderr
    assert not old.path.exists()
    assert uv_token(env, "https://old.example/", "olga").stdout == "old-pw\n"
    assert uv_token(env, "https://new.example/", "nina").stdout == "new-pw\n"
    assert uv_token(env, "https://oldtok.example/pkg").stdout == "old-token\n"
    # a second write moves nothing more and says nothing about it
    r = run([CREDPROXY, "auth", "logout", "new.example", "-u", "nina"], env)
    assert r.returncode == 0 and "Moved" not in r.stderr


def test_an_old_entry_that_differs_from_uvs_is_kept_and_named(default_env):
    """uv's store already has olga@old.example with another password: uv's stays in use, the
    old password is not thrown away, and the user is told which entry to check (no secret)."""
    env = default_env
    old = Store(Path(env["CREDPROXY_DATA_DIR"]) / "credentials.toml")
    old.modify(lambda _: [StoreEntry.basic("https://old.example/", "olga", "old-pw"),
                          StoreEntry.basic("https://other.example/", "otto", "otto-pw")])
    assert run([UV, "auth", "login", "https://old.example/", "-u", "olga", "--password", "uv-pw"], env).returncode == 0

    r = run([CREDPROXY, "auth", "login", "new.example", "-u", "nina", "--password", "new-pw"], env)
    assert r.returncode == 0, r.stderr
    assert f"Moved 1 stored credential(s) from {old.path}" in r.stderr
    assert f"warning: {old.path} keeps 1 credential(s)" in r.stderr and "olga@https://old.example/" in r.stderr
    assert f"then delete {old.path}" in r.stderr
    for secret in ("old-pw", "uv-pw", "otto-pw", "new-pw"):
        assert secret not in r.stderr
    assert uv_token(env, "https://old.example/", "olga").stdout == "uv-pw\n"
    assert uv_token(env, "https://other.example/", "otto").stdout == "otto-pw\n"
    assert [(e.username, e.password) for e in old.read()] == [("olga", "old-pw")]
    r = run([CREDPROXY, "auth", "token", "https://old.example/simple/", "-u", "olga"], env)
    assert r.stdout == "uv-pw\n"  # uv's store comes first, for credproxy too


    # a logout of that URL and username removes the old secret too: nothing is left for the
    # proxy's old-store source (or `auth token`) to find
    r = run([CREDPROXY, "auth", "logout", "https://old.example/", "-u", "olga"], env)
    assert r.returncode == 0 and "keeps" not in r.stderr, r.stderr
    assert not old.path.exists()
    r = run([CREDPROXY, "auth", "token", "https://old.example/simple/", "-u", "olga"], env)
    assert r.returncode != 0 and "old-pw" not in r.stdout + r.stderr
    assert uv_token(env, "https://old.example/", "olga").returncode != 0


def test_a_login_settles_a_kept_old_entry(default_env):
    """`auth login` for the URL and username the old file kept: the new secret is stored and the
    old one leaves the old file (the warning no longer names it)."""
    env = default_env
    old = Store(Path(env["CREDPROXY_DATA_DIR"]) / "credentials.toml")
    old.modify(lambda _: [StoreEntry.basic("https://old.example/", "olga", "old-pw")])
    assert run([UV, "auth", "login", "https://old.example/", "-u", "olga", "--password", "uv-pw"], env).returncode == 0
    r = run([CREDPROXY, "auth", "login", "https://old.example/", "-u", "olga", "--password", "new-pw"], env)
    assert r.returncode == 0 and "keeps" not in r.stderr, r.stderr
    assert not old.path.exists()
    assert uv_token(env, "https://old.example/", "olga").stdout == "new-pw\n"
