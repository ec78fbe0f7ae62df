"""Only its owner can use the proxy (issue 9, findings 1 and 7), against a real `credproxy serve`.

The owner has a netrc with a `machine localhost` entry and a `default` entry, a store entry
for their TLS index (pkgs.test), and a configured index (other.test) whose credential comes
from a `keyring` command that records every call. Before the fix, another local user got all
of those by pointing a client at 127.0.0.1:8899. Now:

- another uid (setpriv/sudo), without the token, gets 407 for plain HTTP to its own 401
  listener (as 127.0.0.1 and localhost), for CONNECT to the owner's index, and TLS spoken to
  the proxy itself is dropped; its listener and the index receive nothing, the keyring is
  never run, and the request log shows only 407s;
- the same uid without the token, or with a wrong or rotated one: the same;
- the owner, through `eval "$(credproxy env)"` and `credproxy run`, gets through with curl,
  git, pip and uv, and the token reaches no log, no saved flow and no upstream;
- `--proxyauth`: empty parts and a token on argv are refused; the file and the environment
  forms work and keep the token out of /proc/PID/cmdline; that pair replaces the default one.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.clients import UV, REAL_PYTHON, client_env, curl, run
from tests.helpers.keyring_script import read_calls, write_keyring_script
from tests.helpers.loopback import LoopbackServer, canned_handler
from tests.helpers.proxy import Proxy, credproxy_cmd, proxy_env, start_credproxy
from tests.helpers.servers import EchoServer, make_certs, stop_pid

pytestmark = pytest.mark.e2e

STORE_USER, STORE_SECRET = "alice", "st0re-S3cret-pkgs-index"
DEFAULT_SECRET = "n3trc-DEFAULT-s3cret"
LOCALHOST_SECRET = "n3trc-LOCALHOST-s3cret"
KEYRING_SECRET = "k3yring-S3cret-other"
OWNER_SECRETS = (STORE_SECRET, DEFAULT_SECRET, LOCALHOST_SECRET, KEYRING_SECRET)
NOBODY = 65534
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z (?P<method>[A-Z]+) (?P<url>\S+) (?P<status>\S+) ")


# --- the owner's world ------------------------------------------------------------------------


@dataclass
class World:
    tmp: Path
    index: EchoServer  # pkgs.test (store entry) and other.test (keyring index), one TLS server
    env: dict[str, str]  # the proxy's environment (and `credproxy env`'s)
    keyring_log: Path
    flows: Path
    proxy: Proxy

    def keyring_calls(self) -> int:
        return len(read_calls(self.keyring_log)) if self.keyring_log.exists() else 0

    def index_url(self, host: str = "pkgs.test", path: str = "/simple/") -> str:
        return self.index.url_for(host, path)

    def request_log(self) -> list[dict]:
        return [m.groupdict() for m in map(LOG_LINE.match, self.proxy.stderr().splitlines()) if m]

    def client(self, **extra) -> dict[str, str]:
        """A client's environment that trusts the proxy's CA and nothing of this machine."""
        return client_env(self.tmp / "client", ca_bundle=self.proxy.ca_cert, extra=extra)


class Recorder:
    """A plain-HTTP listener in this process: answers 401 with a Basic challenge, records the
    Authorization of every request. What an attacker would run to collect credentials."""

    def __init__(self):
        self.seen = []
        self.server = LoopbackServer(canned_handler(401, headers={"WWW-Authenticate": 'Basic realm="collect"'},
                                                    seen=self.seen)).start()
        self.port = self.server.port

    def close(self):
        self.server.stop()


def _owner_env(tmp: Path, index: EchoServer, bin_dir: Path, **extra: str) -> dict[str, str]:
    env = proxy_env(tmp, upstream_ca=index.certs.ca_pem, extra={
        "CREDPROXY_DATA_DIR": str(tmp / "data"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PIP_CONFIG_FILE": os.devnull, "UV_NO_CONFIG": "1", **extra,
    })
    home = Path(env["HOME"])
    netrc = home / ".netrc"
    netrc.write_text(f"machine localhost login lh password {LOCALHOST_SECRET}\n"
                     f"default login dflt password {DEFAULT_SECRET}\n")
    netrc.chmod(0o600)
    Path(env["CREDPROXY_CONFIG"]).write_text(
        'keyring-provider = "subprocess"\n\n[[index]]\nname = "kr"\n'
        f'url = "https://other.test:{index.port}/simple/"\nusername = "{STORE_USER}"\n')
    login = subprocess.run(credproxy_cmd("auth", "login", f"https://pkgs.test:{index.port}/",
                                         "--username", STORE_USER, "--password", "-"),
                           input=STORE_SECRET, env=env, capture_output=True, text=True, timeout=60)
    assert login.returncode == 0, login.stderr
    return env


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("owner")
    certs = make_certs(tmp / "certs")
    index = EchoServer.start(certs, credentials=(STORE_USER, STORE_SECRET), host="pkgs.test")
    keyring_log = tmp / "keyring-calls.jsonl"
    answers = {(f"https://other.test:{index.port}/simple", STORE_USER): STORE_SECRET,
               (f"https://other.test:{index.port}/simple/", STORE_USER): STORE_SECRET,
               (f"other.test:{index.port}", STORE_USER): STORE_SECRET}
    write_keyring_script(tmp / "bin", answers, log=keyring_log)
    env = _owner_env(tmp, index, tmp / "bin")
    flows = tmp / "flows.mitm"
    proxy = start_credproxy(tmp, "-v", "--save-flows", str(flows), env=env, name="owner-proxy", timeout=40)
    try:
        yield World(tmp, index, env, keyring_log, flows, proxy)
    finally:
        proxy.stop()
        index.stop()


# --- another user -----------------------------------------------------------------------------

_STRANGER = r'''
import json, os, socket, ssl, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
cfg = json.loads(sys.argv[1])
seen = []

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        seen.append([self.path, self.headers.get("Authorization")])
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="collect"')
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
port = server.server_address[1]

def head(sock):
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode("latin-1")

def ask(request):
    with socket.create_connection(("127.0.0.1", cfg["proxy_port"]), timeout=15) as s:
        s.sendall(request.encode())
        return head(s)

insecure = ssl.create_default_context()
insecure.check_hostname = False
insecure.verify_mode = ssl.CERT_NONE
results = {}
for name, host in (("127.0.0.1", "127.0.0.1"), ("localhost", "localhost")):
    url = f"http://{host}:{port}/{name}"
    results[f"GET {url}"] = ask(f"GET {url} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n")
for target in cfg["tunnels"]:
    with socket.create_connection(("127.0.0.1", cfg["proxy_port"]), timeout=15) as s:
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        answer = head(s)
        if " 200" in answer:  # the tunnel is open: ask the owner's index through it
            with insecure.wrap_socket(s, server_hostname=target.split(":")[0]) as t:
                t.sendall(f"GET /simple/stolen/ HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n".encode())
                answer += " then " + head(t)
        results[f"CONNECT {target}"] = answer
try:  # TLS spoken to the proxy itself, no CONNECT
    with socket.create_connection(("127.0.0.1", cfg["proxy_port"]), timeout=15) as s:
        target = cfg["tunnels"][0]
        with insecure.wrap_socket(s, server_hostname=target.split(":")[0]) as t:
            t.sendall(f"GET https://{target}/simple/direct/ HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n".encode())
            results["TLS to the proxy"] = "handshake completed, then " + head(t)
except (OSError, ssl.SSLError) as e:
    results["TLS to the proxy"] = "refused: " + type(e).__name__
server.shutdown()
print(json.dumps({"uid": os.getuid(), "results": results, "listener": seen}))
'''


def _as_nobody() -> tuple[list[str] | None, str]:
    """(argv prefix running a stdlib python as uid 65534, "") or (None, why not)."""
    pythons = [p for p in (os.path.realpath(sys.executable), shutil.which("python3"), "/usr/bin/python3") if p]
    if os.geteuid() == 0 and shutil.which("setpriv"):
        wrappers = [["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]]
    elif shutil.which("sudo"):
        wrappers = [["sudo", "-n", "-u", "nobody"]]
    else:
        return None, "needs root with setpriv, or sudo -n -u nobody, to run a process as another user"
    for wrapper in wrappers:
        for python in pythons:
            probe = subprocess.run([*wrapper, python, "-I", "-S", "-c", "import os, ssl; print(os.getuid())"],
                                   capture_output=True, text=True, timeout=30, cwd="/", env={"PATH": "/usr/bin:/bin"})
            if probe.returncode == 0 and probe.stdout.strip() not in ("", str(os.geteuid())):
                return [*wrapper, python, "-I", "-S"], ""
    return None, "no Python interpreter here can run as another user (setpriv/sudo to nobody failed)"


def test_another_user_gets_407_and_causes_no_lookup(world):
    prefix, why = _as_nobody()
    if prefix is None:
        pytest.skip(why)
    keyring_before, index_before = world.keyring_calls(), len(world.index.requests)
    log_before = len(world.request_log())
    tunnels = [f"pkgs.test:{world.index.port}", f"other.test:{world.index.port}"]
    cfg = {"proxy_port": world.proxy.port, "tunnels": tunnels}
    result = subprocess.run([*prefix, "-c", _STRANGER, json.dumps(cfg)], capture_output=True, text=True,
                            timeout=120, cwd="/", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["uid"] != os.geteuid()

    answers = out["results"]
    assert len(answers) == 5, answers
    problems = []  # all of them at once: on the old code this lists what the stranger got
    for what, answer in answers.items():
        if what == "TLS to the proxy":
            if not answer.startswith("refused"):  # a completed handshake = a minted certificate
                problems.append(f"{what}: {answer}")
        elif not answer.startswith("HTTP/1.1 407"):
            problems.append(f"{what}: {answer}")
    got = [(path, _reveal(auth)) for path, auth in out["listener"]]
    if got:
        problems.append(f"the stranger's own listener received {got}")
    sent = [(r.path, _reveal(r.authorization)) for r in world.index.requests[index_before:]]
    if sent:
        problems.append(f"the owner's index was asked for the stranger: {sent}")
    if world.keyring_calls() != keyring_before:
        problems.append(f"the owner's keyring ran {world.keyring_calls() - keyring_before} time(s)")
    lines = world.request_log()[log_before:]
    if not lines or any(line["status"] != "407" for line in lines):
        problems.append(f"request log: {lines}")
    assert problems == [], "\n".join(problems)
    assert len(lines) == 4  # two plain requests, two CONNECTs; the direct TLS made no flow


def _reveal(authorization: str | None) -> str | None:
    """Which of the owner's secrets a captured Authorization carries (by name, for messages)."""
    if not authorization:
        return authorization
    try:
        decoded = base64.b64decode(authorization.split(" ", 1)[1]).decode()
    except Exception:
        return "unreadable"
    names = {STORE_SECRET: "STORE", DEFAULT_SECRET: "NETRC-DEFAULT", LOCALHOST_SECRET: "NETRC-LOCALHOST",
             KEYRING_SECRET: "KEYRING"}
    return next((f"{name} secret" for secret, name in names.items() if secret in decoded), "other")


# --- the same user, without the token ---------------------------------------------------------


def _status(result: subprocess.CompletedProcess) -> str:
    """curl -w '%{http_code} %{http_connect}': the CONNECT's status when there was one."""
    code, _, connect = result.stdout.strip().partition(" ")
    return connect if connect not in ("", "000") else code


@pytest.mark.parametrize("credentials", ["", "credproxy:wrong-token-0123456789abcdef", "credproxy:", "other:{token}"])
def test_same_user_without_the_token_gets_407_and_no_lookup(world, credentials):
    recorder = Recorder()
    try:
        keyring_before, index_before = world.keyring_calls(), len(world.index.requests)
        userinfo = credentials.replace("{token}", world.proxy.token or "")
        proxy_url = f"http://{userinfo}@127.0.0.1:{world.proxy.port}" if userinfo else world.proxy.bare_url
        env = world.client()
        targets = [f"http://127.0.0.1:{recorder.port}/x", f"http://localhost:{recorder.port}/y",
                   world.index_url("pkgs.test"), world.index_url("other.test", "/simple/pkg/")]
        for target in targets:
            result = curl("-o", "/dev/null", "-w", "%{http_code} %{http_connect}", "--proxy", proxy_url,
                          target, env=env)
            assert _status(result) == "407", (target, result.stdout, result.stderr)
        assert recorder.seen == []
        assert world.index.requests[index_before:] == []
        assert world.keyring_calls() == keyring_before
    finally:
        recorder.close()


# --- the owner --------------------------------------------------------------------------------


def _eval_env(world: World, script: str, **extra: str) -> subprocess.CompletedProcess:
    """bash: eval "$(credproxy env --port PORT)" then `script`, as the owner's shell would."""
    env = world.client(CREDPROXY_DATA_DIR=world.env["CREDPROXY_DATA_DIR"],
                       CREDPROXY_CONFIG=world.env["CREDPROXY_CONFIG"],
                       GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", **extra)
    env.pop("SSL_CERT_FILE", None)  # `credproxy env` sets every CA variable itself
    cli = " ".join(credproxy_cmd("env", "--port", str(world.proxy.port)))
    return subprocess.run(["bash", "-c", f'eval "$({cli})" && {script}'], env=env, capture_output=True,
                          text=True, timeout=120)


def test_owner_through_credproxy_env_with_curl_and_git(world):
    start = len(world.index.requests)
    curled = _eval_env(world, f"curl -q -sS --max-time 30 -o /dev/null -w '%{{http_code}}' {world.index_url()}")
    assert curled.stdout == "200", curled.stderr
    git = _eval_env(world, f"git ls-remote {world.index_url('pkgs.test', '/team/repo.git')}")
    # the echo index is no git server; what matters is that git's request got through the
    # proxy (with its token) and reached the index with the owner's credential
    seen = world.index.requests[start:]
    assert [r.path for r in seen][:1] == ["/simple/"]
    git_requests = [r for r in seen if r.path.startswith("/team/repo.git/info/refs")]
    assert git_requests, (git.stdout, git.stderr)
    expected = "Basic " + base64.b64encode(f"{STORE_USER}:{STORE_SECRET}".encode()).decode()
    assert all(r.authorization == expected for r in git_requests)
    assert "git/" in git_requests[0].headers.get("User-Agent", "")


def test_owner_through_credproxy_run_with_pip_uv_and_curl(world, tmp_path):
    # a HOME without the netrc: pip would send its `default` entry itself (the proxy still has
    # the store entry and the keyring index)
    (tmp_path / "home").mkdir()
    env = {**world.env, "HOME": str(tmp_path / "home"), "CREDPROXY_DATA_DIR": str(tmp_path / "run-data"),
           "PIP_NO_INPUT": "1",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
           "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    keyring_before, start = world.keyring_calls(), len(world.index.requests)
    expected = "Basic " + base64.b64encode(f"{STORE_USER}:{STORE_SECRET}".encode()).decode()
    index = world.index_url("other.test", "/simple/")
    commands = {
        "curl": ["curl", "-q", "-sS", "--max-time", "30", "-o", "/dev/null", "-w", "%{http_code}",
                 world.index_url("pkgs.test", "/simple/curl/")],
        "pip": [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(tmp_path / "dl"),
                "--index-url", world.index_url("pkgs.test", "/simple/"), "pip-probe"],
        "uv": [str(UV), "pip", "install", "--python", str(REAL_PYTHON), "--target", str(tmp_path / "t"),
               "--index-url", index, "uv-probe"],
    }
    for name, command in commands.items():
        result = run(credproxy_cmd("run", "--", *command), env=env, timeout=180)
        seen = [r for r in world.index.requests[start:] if f"/{name}" in r.path or f"{name}-probe" in r.path]
        assert seen, f"{name} did not reach the index through `credproxy run`: {result.stderr[-2000:]}"
        assert all(r.authorization == expected for r in seen), (name, [r.authorization for r in seen])
    assert world.keyring_calls() > keyring_before, "the configured index's keyring was asked for the owner"


def test_the_token_reaches_no_upstream_log_or_saved_flow(world):
    token = world.proxy.token
    assert token and len(token) >= 40
    # enough traffic to scan: the owner's request through a URL that carries the token
    result = curl("-o", "/dev/null", "-w", "%{http_code}", "--proxy", world.proxy.url, world.index_url(),
                  env=world.client())
    assert result.stdout == "200"
    for request in world.index.requests:
        assert "proxy-authorization" not in {k.lower() for k in request.headers}
        assert not any(token in v for v in request.headers.values())
    assert token not in world.proxy.stderr() and token not in world.proxy.stdout()
    assert token.encode() not in world.flows.read_bytes()
    encoded = base64.b64encode(f"credproxy:{token}".encode())
    assert encoded not in world.flows.read_bytes()
    assert encoded.decode() not in world.proxy.stderr()


# --- rotation and the token file ---------------------------------------------------------------


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(credproxy_cmd(*args), env=env, capture_output=True, text=True, timeout=60)


def _token_from_env_output(text: str) -> str:
    m = re.search(r"HTTPS_PROXY='http://credproxy:([A-Za-z0-9_-]+)@", text)
    assert m, text
    return m.group(1)


def test_rotating_the_token_needs_no_restart_and_revokes_the_old_one(world, tmp_path):
    env = {**world.env, "CREDPROXY_DATA_DIR": str(tmp_path / "data")}
    proxy = start_credproxy(tmp_path, env=env, name="rotate", timeout=40)
    try:
        old = proxy.token
        assert old == _token_from_env_output(_cli(env, "env", "--port", str(proxy.port)).stdout)
        (tmp_path / "data" / "proxy-token").unlink()
        new = _token_from_env_output(_cli(env, "env", "--port", str(proxy.port)).stdout)
        assert new != old
        url = world.index_url()
        ok = curl("-o", "/dev/null", "-w", "%{http_code} %{http_connect}", "--proxy",
                  f"http://credproxy:{new}@127.0.0.1:{proxy.port}", url, env=world.client())
        stale = curl("-o", "/dev/null", "-w", "%{http_code} %{http_connect}", "--proxy",
                     f"http://credproxy:{old}@127.0.0.1:{proxy.port}", url, env=world.client())
        assert _status(ok) == "200", ok.stderr
        assert _status(stale) == "407"
    finally:
        proxy.stop()
    assert old not in proxy.stderr() and new not in proxy.stderr()


def test_token_file_is_private_created_once_and_shared(tmp_path):
    env = {**proxy_env(tmp_path), "CREDPROXY_DATA_DIR": str(tmp_path / "data")}
    procs = [subprocess.Popen(credproxy_cmd("env"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    try:
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:  # one that hangs is killed with the others, by pid
            stop_pid(p)
    assert all(p.returncode == 0 for p in procs), outputs
    tokens = {_token_from_env_output(out) for out, _ in outputs}
    assert len(tokens) == 1, "concurrent first uses must agree on one token"
    token_file = tmp_path / "data" / "proxy-token"
    assert token_file.read_text().strip() == tokens.pop()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    assert [p.name for p in (tmp_path / "data").iterdir() if p.name.startswith(".proxy-token")] == []


@pytest.mark.parametrize("damage, message", [
    ("symlink", "symbolic link"),
    ("corrupt", "not a credproxy proxy token"),
    ("readable", "readable by other users"),
])
def test_a_bad_token_file_is_an_error_naming_the_fix_and_never_overwritten(tmp_path, damage, message):
    env = {**proxy_env(tmp_path), "CREDPROXY_DATA_DIR": str(tmp_path / "data")}
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    token_file = data / "proxy-token"
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me\n")
    if damage == "symlink":
        token_file.symlink_to(target)
    elif damage == "corrupt":
        token_file.write_text("not a token!\n")
        token_file.chmod(0o600)
    else:
        token_file.write_text("A" * 43 + "\n")
        token_file.chmod(0o644)
    before = token_file.read_bytes()
    for args in (("env",), ("serve", "--port", "0")):
        result = _cli(env, *args)
        assert result.returncode == 2, result
        assert message in result.stderr and "credproxy env" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "A" * 43 not in result.stderr
    assert token_file.read_bytes() == before and target.read_text() == "keep me\n"


# --- --proxyauth ------------------------------------------------------------------------------


@pytest.mark.parametrize("pair", [":", "u:", ":t0ken"])
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_proxyauth_with_an_empty_part_is_refused(tmp_path, pair, host):
    env = {**proxy_env(tmp_path), "CREDPROXY_DATA_DIR": str(tmp_path / "data")}
    pair_file = tmp_path / "pair"
    pair_file.write_text(pair + "\n")
    pair_file.chmod(0o600)
    from_file = _cli(env, "serve", "--host", host, "--port", "0", "--proxyauth-file", str(pair_file))
    from_env = _cli({**env, "CREDPROXY_PROXYAUTH": pair}, "serve", "--host", host, "--port", "0")
    for result in (from_file, from_env):
        assert result.returncode == 2 and "empty" in result.stderr, result
        assert "listening" not in result.stdout


def test_proxyauth_on_the_command_line_is_refused_naming_the_alternatives(tmp_path):
    env = {**proxy_env(tmp_path), "CREDPROXY_DATA_DIR": str(tmp_path / "data")}
    for args in (("serve", "--port", "0", "--proxyauth", "me:s3cret-on-argv"),
                 ("run", "--proxyauth", "me:s3cret-on-argv", "--", "true")):
        result = _cli(env, *args)
        assert result.returncode == 2, result
        assert "--proxyauth-file" in result.stderr and "CREDPROXY_PROXYAUTH" in result.stderr
        assert "s3cret-on-argv" not in result.stderr


@pytest.mark.parametrize("form", ["file", "environment"])
def test_proxyauth_file_and_environment_forms_work_and_stay_out_of_ps(world, tmp_path, form):
    secret = "pr0xy-PAIR-t0ken-" + form
    env = {**world.env, "CREDPROXY_DATA_DIR": str(tmp_path / "data")}
    args: tuple[str, ...] = ()
    if form == "file":
        pair_file = tmp_path / "pair"
        pair_file.write_text(f"me:{secret}\n")
        pair_file.chmod(0o644)  # works, with a warning
        args = ("--proxyauth-file", str(pair_file))
    else:
        env["CREDPROXY_PROXYAUTH"] = f"me:{secret}"
    # the owner's default token exists too (an earlier `credproxy env`); the pair replaces it
    default = _cli({k: v for k, v in env.items() if k != "CREDPROXY_PROXYAUTH"}, "env")
    default_token = _token_from_env_output(default.stdout)
    proxy = start_credproxy(tmp_path, *args, env=env, name=f"pair-{form}", timeout=40)
    try:
        assert (proxy.user, proxy.token) == ("me", secret)
        cmdline = Path(f"/proc/{proxy.pid}/cmdline").read_bytes()
        assert secret.encode() not in cmdline
        url = world.index_url()

        def status(proxy_url: str) -> str:
            return _status(curl("-o", "/dev/null", "-w", "%{http_code} %{http_connect}", "--proxy", proxy_url,
                                url, env=world.client()))

        assert status(proxy.url) == "200"
        assert status(proxy.bare_url) == "407"
        assert status(f"http://credproxy:{default_token}@127.0.0.1:{proxy.port}") == "407"  # replaced
        printed = _cli({**env, "CREDPROXY_PROXYAUTH": f"me:{secret}"} if form == "environment" else env,
                       "env", "--port", str(proxy.port), *args)
        assert f"HTTPS_PROXY='http://me:{secret}@127.0.0.1:{proxy.port}'" in printed.stdout, printed.stderr
    finally:
        proxy.stop()
    assert secret not in proxy.stderr()
    if form == "file":
        assert "chmod 600" in proxy.stderr()
