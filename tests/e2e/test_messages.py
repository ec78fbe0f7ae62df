"""Issue 10, "messages that lead to the fix": what a user reads when something is wrong, with a
real `credproxy serve`/`run`, real pip/curl and real servers on 127.0.0.1. Each test follows
the advice it checks, where it can, and sees it work."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from credproxy.credentials.model import secret_forms
from tests.helpers.clients import client_env, curl, installed, pip_install
from tests.helpers.upstream import wait_for
from tests.helpers.proxy import CREDPROXY, proxy_env

pytestmark = pytest.mark.e2e

TIMEOUT = 60


def cli(env, *args, stdin: str | None = None, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([str(CREDPROXY), *args], env=env, input=stdin, capture_output=True, text=True,
                          timeout=timeout)


def proxy_environment(tmp_path, tls_certs, **extra) -> dict[str, str]:
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem, extra=extra)
    env["CREDPROXY_DATA_DIR"] = str(tmp_path / "proxy-data")
    return env


def client_bundle(tmp_path, proxy, tls_certs) -> Path:
    bundle = tmp_path / "client-bundle.pem"
    bundle.write_text(proxy.ca_cert.read_text() + "\n" + tls_certs.ca_pem.read_text())
    return bundle


def no_secret(text: str, *pairs: tuple[str, str]) -> list[str]:
    return [form for password, user in pairs for form in secret_forms(password, user) if form in text]


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("credproxy: warning: ")]


# --- 7. a rejected credential says so, with the command that replaces it --------------------------


def test_wrong_store_password_is_logged_with_the_command_that_replaces_it(
        tmp_path, private_index, tls_certs, credproxy_factory):
    env = proxy_environment(tmp_path, tls_certs)
    wrong = "not-the-password-7"
    login = cli(env, "auth", "login", private_index.url, "--username", private_index.username, "--password", "-",
                stdin=wrong + "\n")
    assert login.returncode == 0, login.stderr
    proxy = credproxy_factory(env=env)
    cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))

    failed = pip_install(tmp_path / "t1", "--index-url", private_index.url, "--retries", "0", "private-pkg",
                         env=cenv, timeout=90)
    assert failed.returncode != 0

    # `doctor URL` (through the running proxy) suggests the same command
    doctor = cli({**env, **cenv, "CREDPROXY_DATA_DIR": env["CREDPROXY_DATA_DIR"]},
                 "doctor", private_index.url + "private-pkg/", "--port", str(proxy.port))
    assert doctor.returncode == 1

    rejected = [line for line in warning_lines(proxy.stderr()) if "Replace it:" in line]
    assert len(rejected) == 1, proxy.stderr()  # once, though pip asked more than once
    line = rejected[0]
    root = f"https://pkgs.test:{private_index.port}/"
    assert f"the credential from store (username {private_index.username})" in line
    assert f"entry {root}." in line
    command = line.split("Replace it: ", 1)[1]
    assert command == f"credproxy auth login {root} --username {private_index.username} --password -"
    assert f"fix: {command}" in doctor.stdout, doctor.stdout
    pairs = ((wrong, private_index.username), (private_index.password, private_index.username))
    assert no_secret(proxy.stdout() + proxy.stderr() + doctor.stdout + doctor.stderr, *pairs) == []

    # follow it literally, the right password on stdin: the running proxy then installs
    argv = shlex.split(command)
    assert argv[0] == "credproxy"
    follow = cli(env, *argv[1:], stdin=private_index.password + "\n")
    assert follow.returncode == 0, follow.stderr
    ok = pip_install(tmp_path / "t2", "--index-url", private_index.url, "--retries", "0", "private-pkg",
                     env=cenv, timeout=90)
    assert ok.returncode == 0, ok.stderr
    assert installed(tmp_path / "t2") == {"private-pkg": "1.0", "private-dep": "1.0"}


def test_rejected_token_from_a_url_path_entry_names_that_entry(tmp_path, echo_factory, tls_certs, credproxy_factory):
    """A bearer-less `__token__` entry under a path, 403 from the upstream: the command uses
    --token and the entry's own URL (not the package URL, which would store a second entry)."""
    server = echo_factory(host="other.test", credentials=("__token__", "right-token-7"), wrong_credentials_status=403)
    env = proxy_environment(tmp_path, tls_certs)
    entry = server.url_for(path="/team/")
    assert cli(env, "auth", "login", entry, "--token", "-", stdin="wrong-token-7\n").returncode == 0
    proxy = credproxy_factory(env=env)
    cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
    r = curl("-o", "/dev/null", "-w", "%{http_code}", server.url_for(path="/team/simple/pkg/"), env=cenv)
    assert r.stdout == "403"
    lines = [line for line in warning_lines(proxy.stderr()) if "Replace it:" in line]
    assert len(lines) == 1, proxy.stderr()
    command = lines[0].split("Replace it: ", 1)[1]
    # the entry's URL comes from Decision.prefix when the sources fill it in; until then the
    # request's realm. Either way a command that stores a token for a prefix of the URL.
    assert re.fullmatch(rf"credproxy auth login https://other\.test:{server.port}/(team/)? --token -", command), command
    assert "wrong-token-7" not in proxy.stderr()


# --- 8. upstream TLS failure: one warning line per host, one `credproxy:` ---------------------------


def test_upstream_tls_failure_is_one_warning_line_per_host(tmp_path, echo_factory, tls_certs, credproxy_factory):
    server = echo_factory(host="other.test", untrusted=True)
    proxy = credproxy_factory("--intercept-all")
    cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
    for _ in range(3):
        r = curl("-o", "/dev/null", "-w", "%{http_code}", server.url, env=cenv)
        assert r.stdout == "502"
    tls = [line for line in proxy.stderr().splitlines() if "TLS to upstream" in line]
    assert len(tls) == 1, proxy.stderr()
    line = tls[0]
    assert line.startswith(f"credproxy: warning: TLS to upstream other.test:{server.port} failed: ")
    assert line.count("credproxy:") == 1 and "credproxy.addons" not in line and "WARNING" not in line
    assert "Fix: " in line


# --- 9. a client that does not trust the proxy's CA ------------------------------------------------


def test_client_tls_failed_names_the_client_side_fix(tmp_path, echo_factory, tls_certs, credproxy_factory):
    server = echo_factory(host="other.test")
    proxy = credproxy_factory("--intercept-all")
    # curl trusts only the test CA, not the proxy's: the handshake with the proxy fails
    cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=tls_certs.ca_pem)
    r = curl("-o", "/dev/null", server.url, env=cenv)
    assert r.returncode != 0

    def tls_failed_lines():
        return [line for line in proxy.stderr().splitlines() if "client-tls-failed" in line]

    # curl may exit before the proxy has handled its TLS alert: wait (bounded) for the line
    wait_for(lambda: tls_failed_lines(), timeout=10)
    lines = tls_failed_lines()
    assert len(lines) == 1, proxy.stderr()
    assert 'eval \\"$(credproxy env)\\"' in lines[0]
    for variable in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO",
                     "NODE_EXTRA_CA_CERTS"):
        assert variable in lines[0]
    # following it: curl with the variable the line names for it
    fixed = {**cenv, "CURL_CA_BUNDLE": str(client_bundle(tmp_path, proxy, tls_certs))}
    assert curl("-o", "/dev/null", "-w", "%{http_code}", server.url, env=fixed).stdout == "200"


# --- 11. doctor URL validates first -----------------------------------------------------------------


@pytest.mark.parametrize("url, says", [
    ("vm:33861/simple/", "add https://"),
    ("ftp://pkgs.example.com/", "got scheme 'ftp'"),
    ("https://alice:pa/ss@h/simple/", "percent-encode"),
])
def test_doctor_url_validates_the_url_first_and_exits_2(tmp_path, url, says):
    env = proxy_env(tmp_path, extra={"CREDPROXY_DATA_DIR": str(tmp_path / "data")})
    r = cli(env, "doctor", url)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith("credproxy: error: invalid URL") and says in r.stderr, r.stderr
    assert "pa/ss" not in r.stderr
    explain = cli(env, "explain", url)
    assert explain.returncode == 2


# --- 13. a netrc readable by others ------------------------------------------------------------------


def test_netrc_readable_by_others_is_warned_about_once(tmp_path, echo_factory, tls_certs, credproxy_factory):
    server = echo_factory(host="other.test")
    env = proxy_environment(tmp_path, tls_certs)
    netrc = Path(env["HOME"]) / ".netrc"
    netrc.write_text("machine other.test login alice password netrc-s3cret-13\n")
    netrc.chmod(0o644)
    proxy = credproxy_factory(env=env)
    cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
    for _ in range(3):
        assert curl("-o", "/dev/null", "-w", "%{http_code}", server.url, env=cenv).stdout == "200"
    proxy.stop()
    loose = [line for line in proxy.stderr().splitlines() if "readable by other users" in line]
    assert len(loose) == 1, proxy.stderr()
    assert loose[0] == (f"credproxy: warning: netrc file {netrc} is readable by other users (mode 0644); "
                        f"it holds passwords: chmod 600 {netrc}")
    doctor = cli(env, "doctor")
    assert f"✗ netrc file {netrc} is readable by other users (mode 0644)" in doctor.stdout
    assert f"fix: chmod 600 {netrc}" in doctor.stdout
    explain = cli(env, "explain", server.url)
    assert explain.stderr.count("readable by other users") == 1
    assert "netrc-s3cret-13" not in proxy.stderr() + doctor.stdout + explain.stdout + explain.stderr
    netrc.chmod(0o600)  # the fix, followed
    assert "readable by other users" not in cli(env, "doctor").stdout


# --- 14. NO_PROXY -------------------------------------------------------------------------------------


def bash_env_after(env: dict[str, str], script: str) -> dict[str, str]:
    """Run `script` in bash (CREDPROXY = this venv's credproxy) and return `env -0` after it."""
    full = f'credproxy() {{ {shlex.quote(str(CREDPROXY))} "$@"; }}\n{script}\nenv -0'
    r = subprocess.run(["bash", "-c", full], env=env, capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr.decode()
    return dict(item.split("=", 1) for item in r.stdout.decode().split("\0") if "=" in item)


def test_env_merges_no_proxy_and_unset_restores_every_previous_value(tmp_path):
    env = {**proxy_env(tmp_path, extra={"CREDPROXY_DATA_DIR": str(tmp_path / "data")}),
           "NO_PROXY": "corp.example,.internal", "no_proxy": "corp.example,.internal",
           "HTTPS_PROXY": "http://corp-proxy:3128", "PIP_CERT": "/etc/corp.pem"}
    after = bash_env_after(env, 'eval "$(credproxy env)"')
    assert after["NO_PROXY"] == after["no_proxy"] == "corp.example,.internal,localhost,127.0.0.1,::1"
    token = (tmp_path / "data" / "proxy-token").read_text().strip()
    assert after["HTTPS_PROXY"] == f"http://credproxy:{token}@127.0.0.1:8899"
    assert after["CREDPROXY_PREVIOUS_HTTPS_PROXY"] == "http://corp-proxy:3128"
    assert after["CREDPROXY_PREVIOUS_NO_PROXY"] == "corp.example,.internal"
    assert after["CREDPROXY_PREVIOUS_PIP_CERT"] == "/etc/corp.pem"
    assert "CREDPROXY_PREVIOUS_HTTP_PROXY" not in after  # it was not set

    # twice (another port), then --unset: the user's values, not the first eval's
    restored = bash_env_after(env, 'eval "$(credproxy env)"\neval "$(credproxy env --port 9000)"\n'
                                   'eval "$(credproxy env --unset)"')
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "PIP_CERT"):
        assert restored[name] == env[name], name
    for name in ("HTTP_PROXY", "http_proxy", "https_proxy", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        assert name not in restored, name
    assert not [k for k in restored if k.startswith("CREDPROXY_PREVIOUS_") or k == "CREDPROXY_ENV_ACTIVE"]


@pytest.mark.parametrize("shell, restore, forget", [
    ("zsh", "export HTTPS_PROXY='http://corp-proxy:3128'", "unset CREDPROXY_PREVIOUS_HTTPS_PROXY"),
    ("fish", "set -gx HTTPS_PROXY 'http://corp-proxy:3128'", "set -e CREDPROXY_PREVIOUS_HTTPS_PROXY"),
    ("powershell", "$Env:HTTPS_PROXY = 'http://corp-proxy:3128'",
     "Remove-Item Env:CREDPROXY_PREVIOUS_HTTPS_PROXY -ErrorAction SilentlyContinue"),
])
def test_unset_restores_in_every_shell(tmp_path, shell, restore, forget):
    env = {**proxy_env(tmp_path, extra={"CREDPROXY_DATA_DIR": str(tmp_path / "data")}),
           "CREDPROXY_PREVIOUS_HTTPS_PROXY": "http://corp-proxy:3128", "CREDPROXY_ENV_ACTIVE": "1",
           "HTTPS_PROXY": "http://127.0.0.1:8899"}
    out = cli(env, "env", "--shell", shell, "--unset").stdout.splitlines()
    assert restore in out and forget in out
    assert not any("HTTP_PROXY" in line and "corp" in line for line in out)  # only what was replaced
    setting = cli({**env, "CREDPROXY_ENV_ACTIVE": ""}, "env", "--shell", shell).stdout
    assert "CREDPROXY_PREVIOUS_HTTPS_PROXY" in setting


def test_loopback_registry_goes_through_the_proxy_and_doctor_says_when_no_proxy_bypasses_it(
        tmp_path, private_index, tls_certs, credproxy_factory):
    """An index on 127.0.0.1: `env` keeps 127.0.0.1 out of NO_PROXY (localhost stays), and a
    user NO_PROXY that lists it is reported by explain/doctor and dropped by env (with a
    note). pip shows who is right: bypassed, it fails; after `env`, it installs."""
    env = proxy_environment(tmp_path, tls_certs)
    (tmp_path / "credproxy-config.toml").write_text(f'[[index]]\nname = "private"\nurl = "{private_index.url_ip}"\n')
    netrc = Path(env["HOME"]) / ".netrc"
    netrc.write_text(f"machine 127.0.0.1 login {private_index.username} password {private_index.password}\n")
    netrc.chmod(0o600)
    proxy = credproxy_factory(env=env)
    bundle = client_bundle(tmp_path, proxy, tls_certs)
    user_no_proxy = "localhost,127.0.0.1,corp.example"

    shell = {**env, "NO_PROXY": user_no_proxy, "no_proxy": user_no_proxy,
             "HTTPS_PROXY": proxy.url, "https_proxy": proxy.url}
    explain = cli(shell, "explain", private_index.url_ip)
    assert "proxy:           BYPASSED: no_proxy=localhost,127.0.0.1,corp.example lists 127.0.0.1" in explain.stdout
    doctor = cli(shell, "doctor", private_index.url_ip, "--port", str(proxy.port))
    assert doctor.returncode == 1 and "No problems found" not in doctor.stdout
    assert "✗ no_proxy=localhost,127.0.0.1,corp.example lists 127.0.0.1: pip, uv and curl connect to 127.0.0.1 " \
           "directly" in doctor.stdout, doctor.stdout
    assert 'fix: eval "$(credproxy env)"' in doctor.stdout

    # as doctor says: pip with that NO_PROXY goes direct, and gets no credential
    cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=bundle,
                      extra={"NO_PROXY": user_no_proxy, "no_proxy": user_no_proxy})
    private_index.reset()
    bypassed = pip_install(tmp_path / "t1", "--index-url", private_index.url_ip, "--retries", "0", "private-pkg",
                           env=cenv, timeout=90)
    assert bypassed.returncode != 0 and private_index.count(200) == 0

    # the fix: env's NO_PROXY keeps the user's other entries and drops 127.0.0.1
    out = cli(shell, "env", "--port", str(proxy.port))
    assert "credproxy: note: NO_PROXY without 127.0.0.1" in out.stderr
    exported = dict(re.findall(r"^export (\w+)='([^']*)'$", out.stdout, re.M))
    assert exported["NO_PROXY"] == exported["no_proxy"] == "localhost,corp.example,::1"
    fixed = {**cenv, "NO_PROXY": exported["NO_PROXY"], "no_proxy": exported["no_proxy"]}
    ok = pip_install(tmp_path / "t2", "--index-url", private_index.url_ip, "--retries", "0", "private-pkg",
                     env=fixed, timeout=90)
    assert ok.returncode == 0, ok.stderr
    assert private_index.count(200, auth=True) >= 1
    doctor = cli({**shell, **exported, **{k: str(bundle) for k in ("SSL_CERT_FILE",)}},
                 "doctor", private_index.url_ip, "--port", str(proxy.port))
    assert "connect to 127.0.0.1 directly" not in doctor.stdout
    assert no_secret(explain.stdout + doctor.stdout + proxy.stderr(), (private_index.password, private_index.username)) == []


# --- 15. credproxy run: its log does not interleave; no traceback at shutdown -------------------------

CHILD = """
import os, subprocess, sys
print("child says hello", flush=True)
r = subprocess.run(["curl", "-q", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", sys.argv[1]],
                   capture_output=True, text=True)
print("status", r.stdout, flush=True)
"""


def run_env(tmp_path, tls_certs) -> dict[str, str]:
    env = proxy_environment(tmp_path, tls_certs)
    return env


def test_run_keeps_its_request_log_out_of_the_commands_output(tmp_path, echo_factory, tls_certs):
    server = echo_factory(host="other.test")
    env = run_env(tmp_path, tls_certs)
    # curl must trust the proxy CA: run sets CURL_CA_BUNDLE to the bundle, whose upstream part is
    # the proxy's SSL_CERT_FILE (certifi + the test CA)
    r = subprocess.run([str(CREDPROXY), "run", "--intercept-all", "--", sys.executable, "-c", CHILD, server.url],
                       env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "child says hello\nstatus 200\n"
    assert " GET https://other.test" not in r.stderr  # not on the terminal
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("credproxy: request log: ")
    log = Path(last.split(": ", 2)[2])
    assert log.parent == Path(env["CREDPROXY_DATA_DIR"]) / "run-logs"
    assert f"GET https://other.test:{server.port}/ 200" in log.read_text()
    assert oct(log.stat().st_mode & 0o777) == "0o600"

    # -v: the log on stderr, no file named
    v = subprocess.run([str(CREDPROXY), "run", "-v", "--intercept-all", "--", sys.executable, "-c", CHILD, server.url],
                       env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert v.returncode == 0 and v.stdout == "child says hello\nstatus 200\n"
    assert f"GET https://other.test:{server.port}/ 200" in v.stderr and "request log:" not in v.stderr


def test_run_still_shows_warnings_on_stderr(tmp_path, echo_factory, tls_certs):
    """The client refuses the proxy's certificate: that warning reaches the terminal even
    though the request log goes to a file."""
    server = echo_factory(host="other.test")
    env = {**run_env(tmp_path, tls_certs), "CURL_CA_BUNDLE_OVERRIDE": str(tls_certs.ca_pem)}
    child = ("import os, subprocess, sys\n"
             "os.environ['CURL_CA_BUNDLE'] = os.environ['CURL_CA_BUNDLE_OVERRIDE']\n"
             "subprocess.run(['curl', '-q', '-s', '-o', '/dev/null', '--max-time', '20', sys.argv[1]])\n")
    r = subprocess.run([str(CREDPROXY), "run", "--intercept-all", "--", sys.executable, "-c", child, server.url],
                       env=env, capture_output=True, text=True, timeout=TIMEOUT)
    warnings = [line for line in r.stderr.splitlines() if "client-tls-failed" in line]
    assert len(warnings) == 1 and warnings[0].startswith("credproxy: warning: "), r.stderr
    assert "CURL_CA_BUNDLE" in warnings[0]


def test_run_shuts_down_without_a_traceback_20_times(tmp_path, echo_factory, tls_certs):
    """Connections still open when the command exits (keep-alive, a tunnel mid-request) are
    the usual end of a `run`: stopping the proxy must not print a CancelledError."""
    server = echo_factory(host="other.test")
    env = run_env(tmp_path, tls_certs)
    child = (
        "import os, socket, sys\n"
        "port = int(os.environ['HTTPS_PROXY'].rsplit(':', 1)[1])\n"
        "host = sys.argv[1]\n"
        "open_ = []\n"
        "for i in range(3):\n"
        "    s = socket.create_connection(('127.0.0.1', port)); open_.append(s)\n"
        "    s.sendall(f'CONNECT {host} HTTP/1.1\\r\\nHost: {host}\\r\\n\\r\\n'.encode())\n"
        "    s.recv(100)\n"
        "os._exit(0)\n"
    )
    target = f"other.test:{server.port}"
    for i in range(20):
        r = subprocess.run([str(CREDPROXY), "run", "--intercept-all", "--", sys.executable, "-c", child, target],
                           env=env, capture_output=True, text=True, timeout=TIMEOUT)
        assert r.returncode == 0, f"run {i}: {r.stderr}"
        assert "Traceback" not in r.stderr and "CancelledError" not in r.stderr, f"run {i}: {r.stderr}"


# --- 16. UV_KEYRING_PROVIDER=native ---------------------------------------------------------------


def test_native_keyring_has_its_own_switch_and_uv_is_never_given_native(tmp_path, tls_certs):
    env = {**run_env(tmp_path, tls_certs), "CREDPROXY_KEYRING_PROVIDER": "native"}
    r = subprocess.run([str(CREDPROXY), "run", "--", sys.executable, "-c",
                        "import os; print(os.environ.get('UV_KEYRING_PROVIDER', '-'))"],
                       env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0 and r.stdout == "-\n", r.stderr
    explain = cli(env, "explain", "https://pkgs.example.com/simple/")
    assert "native" in explain.stdout and "UV_KEYRING_PROVIDER" not in explain.stderr
    # the uv variable set to native still selects it, and says how to stop breaking uv
    old = cli({**env, "CREDPROXY_KEYRING_PROVIDER": "", "UV_KEYRING_PROVIDER": "native"},
              "explain", "https://pkgs.example.com/simple/")
    assert "UV_KEYRING_PROVIDER=native makes uv fail" in old.stderr
    assert "CREDPROXY_KEYRING_PROVIDER=native" in old.stderr and "UV_PREVIEW_FEATURES=native-auth" in old.stderr


# --- 17. help texts --------------------------------------------------------------------------------


def test_help_texts_say_what_the_commands_do(tmp_path):
    env = proxy_env(tmp_path, extra={"CREDPROXY_DATA_DIR": str(tmp_path / "data")})

    def help_of(*command: str) -> str:
        return " ".join(cli(env, *command, "--help").stdout.split())

    assert "request log, which is on without it" in help_of("serve")
    run = help_of("run")
    assert "default: a free one" in run and "request log on stderr instead of a file" in run
    assert "does not change the answer: one store holds the entries of every service" in help_of("auth", "dir")
    assert "--config FILE Config file (TOML) naming the proxy's host and port" in help_of("env")
    assert "--config FILE Config file (TOML) whose ca-bundle" in help_of("ca", "bundle")


# --- 10. the README's `credproxy auth` example, as written -------------------------------------------


def test_readme_auth_example_works_as_written(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    lines = [line.split("  #")[0].strip() for line in readme.splitlines() if line.startswith("credproxy auth ")]
    assert [shlex.split(line)[2] for line in lines] == ["login", "login", "token", "logout", "dir"], lines
    env = proxy_env(tmp_path, extra={"CREDPROXY_DATA_DIR": str(tmp_path / "data")})
    secrets = iter(["alice-readme-pw", "readme-token-10"])
    outputs = []
    for line in lines:
        argv = shlex.split(line)
        stdin = next(secrets) + "\n" if argv[-1] == "-" else None
        r = cli(env, *argv[1:], stdin=stdin)
        assert r.returncode == 0, f"{line}: {r.stderr}"
        outputs.append(r.stdout)
    assert outputs[2] == "readme-token-10\n"  # `auth token` finds the __token__ entry
    assert outputs[4].strip() == env["CREDPROXY_CREDENTIALS_DIR"]
