"""Real uv and credproxy share the OS keyring (issue 12 point 6): with
`UV_PREVIEW_FEATURES=native-auth`, what `credproxy auth login` stores real uv finds, what
`uv auth login` stores the proxy injects, and a logout by either is seen by the other, the
running proxy included.

The OS keyring is a real Secret Service: gnome-keyring on a private D-Bus session bus
(tests/helpers/secret_service.py), unlocked, as on a Linux desktop. PYTHON_KEYRING_BACKEND is
NOT set: credproxy picks the Secret Service as it would on a user's machine (`doctor` says so),
although keyrings.alt (a test extra) is installed and would win in Python's keyring. Secrets go
in on stdin, never in argv. uv 0.13.9 is the wheel in .venv."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers.clients import UV, client_env, installed, pip_install, run, uv_pip_install
from tests.helpers.proxy import credproxy_cmd, proxy_env
from tests.helpers.secret_service import secret_service
from tests.helpers.servers import REPO_ROOT
from tests.helpers.timing import until

from .conftest import INDEX_PASSWORD, INDEX_USERNAME
from .observe_setup import leaks

pytestmark = pytest.mark.e2e

NATIVE = {"UV_PREVIEW_FEATURES": "native-auth", "PYTHON_KEYRING_BACKEND": None}
OTHER_PW = "n0t-the-index-pw-Kq7"  # a second secret (replaced, or for service-name parity)


@pytest.fixture
def ss(tmp_path):
    with secret_service(tmp_path / "secret-service") as service:
        yield service


@pytest.fixture
def cp_env(tmp_path, ss, tls_certs):
    """credproxy's CLI and proxy: their own HOME, the Secret Service, native-auth, no keyring
    backend chosen by variable."""
    return proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem,
                     extra={**NATIVE, **ss.env, "CREDPROXY_DATA_DIR": str(tmp_path / "cli-data")})


@pytest.fixture
def uv_env(tmp_path, ss, private_index):
    """Real uv without a proxy: trusts the index's CA, native-auth, the same Secret Service."""
    return client_env(tmp_path, ca_bundle=private_index.ca,
                      extra={**NATIVE, **ss.env, "UV_CREDENTIALS_DIR": str(tmp_path / "uv-file-store")})


def sh(cmd, env, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run with the secret (if any) on stdin; argv never carries one."""
    return subprocess.run([str(c) for c in cmd], env=env, input=stdin or "", capture_output=True,
                          text=True, timeout=timeout)


def cp(env, *args, stdin=None):
    return sh(credproxy_cmd(*args), env, stdin)


def uv(env, *args, stdin=None):
    return sh([UV, *args], env, stdin)


def login_args(url: str, user: str) -> list[str]:
    return ["auth", "login", url, "--username", user, "--password", "-"]


def output(r: subprocess.CompletedProcess) -> str:
    return r.stdout + r.stderr


def assert_no_leak(label: str, text: str, *secrets: str) -> None:
    for secret in secrets or (INDEX_PASSWORD,):
        found = leaks(text, secret, INDEX_USERNAME)
        assert found == [], f"{label} contains {found}"


# --- a. credproxy writes, real uv reads ----------------------------------------------------------


def test_uv_installs_with_what_credproxy_login_stored(tmp_path, ss, cp_env, uv_env, private_index):
    index = private_index.url_for("localhost")  # the index cert names localhost; no proxy here
    # credproxy's login, the way a user types it: the index URL (with /simple/)
    login = cp(cp_env, *login_args(index, INDEX_USERNAME), stdin=INDEX_PASSWORD + "\n")
    assert login.returncode == 0, login.stderr
    service = f"uv:localhost:{private_index.port}"
    items = ss.items()
    assert [(i["service"], i["username"], i.get("application"), i.get("target")) for i in items] == [
        (service, INDEX_USERNAME, "uv", "default")], items  # uv's own attribute set
    assert ss.secret(service, INDEX_USERNAME) == [INDEX_PASSWORD]
    assert not (tmp_path / "credproxy-credentials" / "credentials.toml").exists(), "not the file store"

    token = uv(uv_env, "auth", "token", index, "--username", INDEX_USERNAME)
    assert (token.returncode, token.stdout) == (0, INDEX_PASSWORD + "\n"), token.stderr

    # uv's resolver: a 401 from the index, the native store asked for the URL's user, re-sent
    # (uv 0.13.9 asks its native store only with a username: a bare index URL gets the 401)
    private_index.reset()
    user_url = private_index.url_for("localhost", userinfo=INDEX_USERNAME)
    got = uv_pip_install(tmp_path / "t", "--index-url", user_url, "private-pkg", env=uv_env)
    assert got.returncode == 0, got.stderr
    assert installed(tmp_path / "t") == {"private-pkg": "1.0", "private-dep": "1.0"}
    assert private_index.count(200, auth=True) > 0

    # without the keyring entry the same install fails: it was the keyring that answered
    assert cp(cp_env, "auth", "logout", index, "--username", INDEX_USERNAME).returncode == 0
    fails = uv_pip_install(tmp_path / "t2", "--index-url", user_url, "private-pkg", env=uv_env)
    assert fails.returncode != 0 and not (tmp_path / "t2" / "private_pkg").exists()
    for label, r in (("login", login), ("uv auth token stderr", token), ("uv pip", got), ("uv pip 2", fails)):
        text = r.stderr if r is token else output(r)
        assert_no_leak(label, text)


def test_credproxy_login_replaces_uv_login_and_uv_login_replaces_ours(ss, cp_env, uv_env):
    """One item per (service, username) whoever wrote last: before, credproxy added a second item
    (Python keyring's attributes) beside uv's, and uv kept reading its own old password."""
    url = "https://replace.test/simple/"
    assert uv(uv_env, *login_args(url, "alice"), stdin="pw-from-uv\n").returncode == 0
    r = cp(cp_env, *login_args(url, "alice"), stdin="pw-from-credproxy\n")
    assert r.returncode == 0, r.stderr
    assert ss.secret("uv:replace.test", "alice") == ["pw-from-credproxy"]
    token = uv(uv_env, "auth", "token", url, "--username", "alice")
    assert (token.returncode, token.stdout) == (0, "pw-from-credproxy\n"), token.stderr
    assert uv(uv_env, *login_args(url, "alice"), stdin="pw-from-uv-again\n").returncode == 0
    assert ss.secret("uv:replace.test", "alice") == ["pw-from-uv-again"]
    token = cp(cp_env, "auth", "token", url, "--username", "alice")
    assert (token.returncode, token.stdout) == (0, "pw-from-uv-again\n"), token.stderr


# --- b. uv writes, the proxy injects -------------------------------------------------------------


def _index_config(tmp_path, private_index) -> str:
    root = private_index.url
    (tmp_path / "credproxy-config.toml").write_text(
        f'[[index]]\nname = "corp"\nurl = "{root}"\nusername = "{INDEX_USERNAME}"\n')
    return root


def test_proxy_injects_what_uv_login_stored_and_stops_after_uv_logout(
        tmp_path, ss, cp_env, uv_env, private_index, credproxy_factory, proxied_env):
    root = _index_config(tmp_path, private_index)
    login = uv(uv_env, *login_args(root, INDEX_USERNAME), stdin=INDEX_PASSWORD + "\n")
    assert login.returncode == 0, login.stderr
    assert ss.pairs() == [(f"uv:pkgs.test:{private_index.port}", INDEX_USERNAME)]

    # doctor names the backend: the Secret Service, not keyrings.alt's file (installed here)
    doctor = cp(cp_env, "doctor")
    assert "✓ uv's native store: Secret Service (uv's attributes)" in doctor.stdout, doctor.stdout
    explained = cp(cp_env, "explain", root)
    assert "decision: inject from native" in explained.stdout, output(explained)
    assert "Secret Service" in explained.stdout

    proxy = credproxy_factory("-v", env=cp_env)
    env = proxied_env(proxy)
    got = pip_install(tmp_path / "t1", "--index-url", root, "private-pkg", env=env)
    assert got.returncode == 0, got.stderr
    assert installed(tmp_path / "t1") == {"private-pkg": "1.0", "private-dep": "1.0"}

    # uv logs out while the proxy runs: the proxy stops injecting (within the native TTL)
    logout = uv(uv_env, "auth", "logout", root, "--username", INDEX_USERNAME)
    assert logout.returncode == 0, logout.stderr
    assert ss.items() == []
    page = private_index.url + "private-pkg/"

    def refused() -> bool:
        private_index.reset()
        r = run(["curl", "-q", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", page],
                env=env, timeout=30)
        return r.stdout != "200" and [q.auth for q in private_index.requests()] == [False]

    took = until(refused, "uv logout seen by the running proxy", within=5.0)
    print(f"uv logout seen by the running proxy after {took:.2f} s")
    # and a new uv login reaches it too, without a restart
    assert uv(uv_env, *login_args(root, INDEX_USERNAME), stdin=INDEX_PASSWORD + "\n").returncode == 0
    until(lambda: run(["curl", "-q", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", page],
                      env=env, timeout=30).stdout == "200", "a new uv login seen by the running proxy", within=5.0)
    proxy.stop()
    log = proxy.stderr()
    assert "source=native" in log
    for label, text in (("uv login", output(login)), ("uv logout", output(logout)), ("doctor", output(doctor)),
                        ("explain", output(explained)), ("pip", output(got)), ("proxy log", log + proxy.stdout())):
        assert_no_leak(label, text)


def test_uv_login_is_sent_only_to_its_host_and_port(tmp_path, ss, cp_env, uv_env, echo_factory,
                                                  credproxy_factory, proxied_env):
    """The item `uv:pkgs.test:PORT` answers for pkgs.test:PORT; the same username asked for
    by other.test on that very port (same server, another name) gets nothing from it."""
    echo = echo_factory(host="other.test", credentials=(INDEX_USERNAME, INDEX_PASSWORD))
    (tmp_path / "credproxy-config.toml").write_text('intercept-hosts = ["pkgs.test", "other.test"]\n')
    login = uv(uv_env, *login_args(f"https://pkgs.test:{echo.port}/", INDEX_USERNAME), stdin=INDEX_PASSWORD + "\n")
    assert login.returncode == 0, login.stderr
    proxy = credproxy_factory("-v", env=cp_env)
    env = proxied_env(proxy)

    def status(host: str) -> str:
        r = run(["curl", "-q", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20",
                 "-u", f"{INDEX_USERNAME}:", echo.url_for(host=host, path="/simple/")], env=env, timeout=30)
        return r.stdout

    assert status("other.test") == "401"
    assert all(leaks(r.authorization or "", INDEX_PASSWORD, INDEX_USERNAME) == [] for r in echo.requests)
    assert status("pkgs.test") == "200"  # the control: the item itself works
    proxy.stop()
    assert_no_leak("proxy log", proxy.stderr() + proxy.stdout())


# --- c. logout each way ----------------------------------------------------------------------------


def test_credproxy_logout_removes_uv_login(ss, cp_env, uv_env):
    url = "https://logout.test:8443/simple/"
    assert uv(uv_env, *login_args(url, "bob"), stdin=OTHER_PW + "\n").returncode == 0
    assert uv(uv_env, "auth", "token", url, "--username", "bob").returncode == 0
    out = cp(cp_env, "auth", "logout", url, "--username", "bob")
    assert out.returncode == 0, out.stderr
    assert ss.items() == []
    token = uv(uv_env, "auth", "token", url, "--username", "bob")
    assert token.returncode != 0 and OTHER_PW not in output(token)
    again = cp(cp_env, "auth", "logout", url, "--username", "bob")
    assert again.returncode != 0 and "No matching entry found" in again.stderr


def test_uv_logout_removes_credproxy_login(ss, cp_env, uv_env):
    url = "https://logout.test/"
    assert cp(cp_env, *login_args(url, "carol"), stdin=OTHER_PW + "\n").returncode == 0
    out = uv(uv_env, "auth", "logout", url, "--username", "carol")
    assert out.returncode == 0, out.stderr
    assert ss.items() == [], "uv's logout left credproxy's item behind"
    token = cp(cp_env, "auth", "token", url, "--username", "carol")
    assert token.returncode != 0 and OTHER_PW not in output(token)


# --- d. service-name parity ------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "https://parity.test/simple/",                 # https, default port
    "https://parity.test:8443/simple/",            # explicit port
    "https://Parity.TEST:8443/team/a/simple/pkg/",  # a path under the root, upper-case host
    "http://127.0.0.1:8080/simple/",               # plain http (uv allows it for loopback)
    "http://localhost/",                           # plain http, default port
])
def test_service_names_match_uv(url, ss, cp_env, uv_env):
    """The (service, username) pair uv's login writes is the pair credproxy's login writes; and
    each finds the other's entry by the same URL. uv has no username-less login (it prompts,
    or refuses without a terminal), and neither does credproxy; `--token` is `__token__`."""
    results = {}
    for who, run_login in (("uv", lambda *a, **k: uv(uv_env, *a, **k)), ("credproxy", lambda *a, **k: cp(cp_env, *a, **k))):
        ss.clear()
        r = run_login(*login_args(url, "dora"), stdin=OTHER_PW + "\n")
        assert r.returncode == 0, f"{who}: {r.stderr}"
        t = run_login("auth", "login", url, "--token", "-", stdin="tok-" + OTHER_PW + "\n")
        assert t.returncode == 0, f"{who}: {t.stderr}"
        results[who] = ss.pairs()
        # the other tool reads it back
        other = cp if who == "uv" else uv
        other_env = cp_env if who == "uv" else uv_env
        back = other(other_env, "auth", "token", url, "--username", "dora")
        assert (back.returncode, back.stdout) == (0, OTHER_PW + "\n"), f"{who} wrote, the other: {back.stderr}"
        back = other(other_env, "auth", "token", url)
        assert (back.returncode, back.stdout) == (0, "tok-" + OTHER_PW + "\n"), f"{who} wrote, the other: {back.stderr}"
    assert results["credproxy"] == results["uv"], results
    assert len(results["uv"]) == 2


def test_no_username_is_refused_like_uv(cp_env, uv_env, ss):
    url = "https://nouser.test/"
    ours = cp(cp_env, "auth", "login", url, "--password", "-", stdin=OTHER_PW + "\n")
    theirs = uv(uv_env, "auth", "login", url, "--password", "-", stdin=OTHER_PW + "\n")
    assert ours.returncode != 0 and theirs.returncode != 0
    assert ss.items() == []
    assert_no_leak("login errors", output(ours) + output(theirs), OTHER_PW)


# --- e. without native-auth: the file store, nothing in the keyring ---------------------------------


def test_without_native_auth_login_writes_the_file_store_only(tmp_path, ss, cp_env, uv_env):
    env = {**cp_env}
    del env["UV_PREVIEW_FEATURES"]
    r = cp(env, *login_args("https://filestore.test/simple/", "erin"), stdin=OTHER_PW + "\n")
    assert r.returncode == 0, r.stderr
    assert ss.items() == []
    store = tmp_path / "credproxy-credentials" / "credentials.toml"
    assert store.exists() and "erin" in store.read_text()
    # uv with native-auth does not see it (its native store is the keyring) ...
    assert uv(uv_env, "auth", "token", "https://filestore.test/", "--username", "erin").returncode != 0
    # ... uv without it reads the same file
    plain_uv = {**uv_env, "UV_CREDENTIALS_DIR": str(tmp_path / "credproxy-credentials")}
    del plain_uv["UV_PREVIEW_FEATURES"]
    token = uv(plain_uv, "auth", "token", "https://filestore.test/", "--username", "erin")
    assert (token.returncode, token.stdout) == (0, OTHER_PW + "\n"), token.stderr


# --- no Secret Service: the error names the fix ------------------------------------------------------


def test_no_secret_service_error_names_the_fix(tmp_path, cp_env):
    env = {**cp_env, "DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/no-such-bus"}
    r = cp(env, *login_args("https://nobus.test/", "fred"), stdin=OTHER_PW + "\n")
    assert r.returncode != 0
    assert "no Secret Service answers on D-Bus" in r.stderr, r.stderr
    assert "gnome-keyring-daemon --unlock" in r.stderr and "unset UV_PREVIEW_FEATURES" in r.stderr
    assert "Traceback" not in r.stderr
    doctor = cp(env, "doctor")
    assert "✗ no Secret Service answers on D-Bus" in doctor.stdout, doctor.stdout
    assert "fix: start a Secret Service and unlock it" in doctor.stdout
    # nothing fell back to a file uv cannot read (keyrings.alt is installed here)
    assert not list((tmp_path / "proxy-home").rglob("keyring_pass.cfg"))
    assert_no_leak("errors", output(r) + output(doctor), OTHER_PW)


# --- the fixture: a missing tool fails under CI, skips (naming the apt command) elsewhere -------------


@pytest.mark.parametrize("require, outcome", [("1", "failed"), (None, "skipped")])
def test_missing_tools_fail_in_ci_and_skip_elsewhere(tmp_path, require, outcome):
    """A pytest run of a test using the fixture, with PATH hiding gnome-keyring-daemon."""
    import sys

    (tmp_path / "test_uses_fixture.py").write_text(
        "from pathlib import Path\nfrom tests.helpers.secret_service import secret_service\n"
        "def test_it(tmp_path):\n    with secret_service(tmp_path / 's'):\n        pass\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dbus-daemon").symlink_to("/usr/bin/dbus-daemon")
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "PYTHONPATH": str(REPO_ROOT), "LANG": "C.UTF-8"}
    if require:
        env["CREDPROXY_REQUIRE_SYSTEM_TOOLS"] = require
    r = run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
             str(tmp_path / "test_uses_fixture.py")], env=env, timeout=120, cwd=tmp_path)
    assert f"1 {outcome}" in r.stdout, r.stdout + r.stderr
    assert "apt-get install -y --no-install-recommends gnome-keyring dbus" in r.stdout
    assert "gnome-keyring-daemon not installed" in r.stdout


def test_locked_keyring_error_names_the_fix_and_the_proxy_goes_on(tmp_path, ss, cp_env, private_index,
                                                                  credproxy_factory, proxied_env):
    root = _index_config(tmp_path, private_index)
    assert cp(cp_env, *login_args(root, INDEX_USERNAME), stdin=INDEX_PASSWORD + "\n").returncode == 0
    ss.lock()
    outs = [cp(cp_env, *login_args(root, INDEX_USERNAME), stdin=OTHER_PW + "\n"),
            cp(cp_env, "auth", "token", root, "--username", INDEX_USERNAME)]
    for r in outs:
        assert r.returncode != 0 and "(KeyringLocked); unlock the keyring" in r.stderr, r.stderr
        assert "gnome-keyring-daemon --replace --unlock" in r.stderr and "Traceback" not in r.stderr
    doctor = cp(cp_env, "doctor")
    assert "does not answer: KeyringLocked" in doctor.stdout and "fix: unlock the keyring" in doctor.stdout, doctor.stdout
    # the proxy: no credential, a warning, the request still goes (and gets the index's refusal)
    proxy = credproxy_factory("-v", env=cp_env)
    r = run(["curl", "-q", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", root + "private-pkg/"],
            env=proxied_env(proxy), timeout=30)
    assert r.stdout in ("401", "403"), output(r)
    proxy.stop()
    log = proxy.stderr()
    assert "system keyring: KeyringLocked" in log, log
    for label, text in (("cli", "".join(output(o) for o in outs)), ("doctor", output(doctor)), ("proxy log", log)):
        assert_no_leak(label, text, INDEX_PASSWORD, OTHER_PW)

