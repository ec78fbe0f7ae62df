"""The programs credproxy runs for credentials (issue 12: `token-command`, git's credential
helpers; the `keyring` command shares their runner) against a real `credproxy serve`:

- git's credential protocol is line-based: a client's username with a line break in it
  (`Authorization: Basic base64("alice\\nhost=other.test")`, what pip sends for a URL with
  `alice%0Ahost=other.test@` in it) must not make git ask its helpers about another host;
- a helper does not inherit the proxy's own token (CREDPROXY_PROXYAUTH, or a proxy variable
  `eval "$(credproxy env)"` left in the shell `serve` started from);
- what a helper writes on stderr reaches the proxy's log with terminal escape sequences
  escaped, like every other log line;
- a client without the proxy token (another user) gets 407 and runs nothing: no token
  command, no git helper, and `--remember` stores nothing.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.proxy_client import client_context
from tests.e2e.proxy_client import get as _get
from tests.helpers.clients import run
from tests.helpers.proxy import credproxy_cmd, proxy_env, start_credproxy
from tests.helpers.registries import TokenRegistry

from .test_registry_sources_scope import calls, echo_factory, logging_program, tls_certs  # noqa: F401

pytestmark = pytest.mark.e2e

TOKEN = "tc-T0ken-helpers-s3cret"
GIT_PASSWORD = "g1t-helpers-S3cret"
PROXY_PAIR_TOKEN = "pr0xy-AUTH-t0ken-s3cret"
STRANGER_PASSWORD = "str4nger-Own-s3cret"
ESCAPES = "\x1b]2;owned\x07\x1b[2J\rfake line"


def _gitconfig(tmp_path: Path, helper: Path) -> None:
    home = tmp_path / "proxy-home"
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text(f'[credential]\n\thelper = "!{helper}"\n')


def _env_dumping_program(path: Path, out: str) -> str:
    """Program text: the environment it got goes to `path` as JSON, then prints `out`."""
    return (f"import os\njson.dump(dict(os.environ), open({str(path)!r}, 'w'))\n"
            f"sys.stderr.write({ESCAPES!r} + '\\n')\n{out}")


@pytest.fixture
def world(tmp_path, tls_certs, echo_factory):  # noqa: F811 - fixtures imported above
    """An index whose token comes from a token-command, and a git host whose password comes
    from git's credential helper; both programs record their calls and their environment."""
    registry = TokenRegistry.start(tls_certs, base="/pypi/repo", username="aws", token=TOKEN)
    git_host = echo_factory(host="pkgs.test", credentials=("alice", GIT_PASSWORD))
    command = logging_program(tmp_path / "bin" / "aws", _env_dumping_program(
        tmp_path / "command.env", f"print({TOKEN!r})"))
    helper = logging_program(tmp_path / "bin" / "greedy-helper", _env_dumping_program(
        tmp_path / "helper.env", f"print('username=alice'); print('password=' + {GIT_PASSWORD!r})"))
    _gitconfig(tmp_path, helper)
    (tmp_path / "credproxy-config.toml").write_text(f'''
git-credential-hosts = ["pkgs.test:{git_host.port}"]

[[index]]
url = "{registry.index_url()}"
username = "aws"
token-command = ["{command}", "codeartifact", "get-authorization-token"]
''')
    yield registry, git_host, command, helper
    registry.stop()


def _start(tmp_path, tls_certs, *args, **extra):
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem, extra=extra)
    proxy = start_credproxy(tmp_path, *args, env=env)
    proxy.test_ca = tls_certs.ca_pem
    return proxy


def get(proxy, url: str, headers: dict[str, str] | None = None):
    """`proxy`: a Proxy (the owner, with its token) or a bare port (a client without it)."""
    context = client_context(str(proxy.ca_cert), str(proxy.test_ca)) if not isinstance(proxy, int) else None
    return _get(proxy, url, context, headers=headers)


def _basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_a_username_with_a_line_break_cannot_make_git_ask_about_another_host(tmp_path, tls_certs, world):
    _, git_host, _, helper = world
    proxy = _start(tmp_path, tls_certs, "-v")
    try:
        url = git_host.url_for("pkgs.test", "/team/repo.git/info/refs?service=git-upload-pack")
        for injected in ("alice\nprotocol=https\nhost=other.test", "alice\rhost=other.test", "alice\x00host=other.test"):
            reply = get(proxy, url, headers={"Authorization": _basic(injected)})
            assert reply.status == 401, injected  # no credential for that "username"
        asked = [stdin for _argv, stdin in calls(helper)]
        assert not any("other.test" in stdin for stdin in asked), f"git asked its helper about another host: {asked}"
        # a plain username still works: the helper is asked for the listed host and answers
        assert get(proxy, url, headers={"Authorization": _basic("alice")}).status == 200
        assert any(f"host=pkgs.test:{git_host.port}" in stdin for _argv, stdin in calls(helper))
    finally:
        proxy.stop()
    assert GIT_PASSWORD not in proxy.stderr()


def test_helpers_do_not_inherit_the_proxy_token(tmp_path, tls_certs, world):
    registry, git_host, command, helper = world
    pair = f"me:{PROXY_PAIR_TOKEN}"
    # `serve` started from a shell where `eval "$(credproxy env)"` ran, with the pair in the environment
    proxy = _start(tmp_path, tls_certs, "-v", CREDPROXY_PROXYAUTH=pair, CREDPROXY_ENV_ACTIVE="1",
                   HTTPS_PROXY=f"http://{pair}@127.0.0.1:9/", http_proxy=f"http://credproxy:{PROXY_PAIR_TOKEN}@127.0.0.1:9/",
                   CREDPROXY_PREVIOUS_HTTPS_PROXY="http://corp-proxy.test:3128", NO_PROXY="pkgs.test")
    try:
        assert get(proxy, registry.index_url()).status == 200
        assert get(proxy, git_host.url_for("pkgs.test", "/team/repo.git/info/refs")).status == 200
    finally:
        proxy.stop()
    assert calls(command) and calls(helper)
    for name in ("command.env", "helper.env"):
        env = json.loads((tmp_path / name).read_text())
        assert PROXY_PAIR_TOKEN not in json.dumps(env), f"{name}: the proxy token reached the helper"
        assert "CREDPROXY_PROXYAUTH" not in env
        # the value `credproxy env` replaced is what a helper that goes online uses
        assert env.get("HTTPS_PROXY") == "http://corp-proxy.test:3128", name
        assert "http_proxy" not in env, name
    assert PROXY_PAIR_TOKEN not in proxy.stderr()


def test_helper_stderr_reaches_the_log_with_escape_sequences_escaped(tmp_path, tls_certs, world):
    registry, git_host, command, helper = world
    for log_format in ("text", "json"):
        proxy = _start(tmp_path, tls_certs, "-v", "--log-format", log_format)
        try:
            assert get(proxy, registry.index_url()).status == 200
            assert get(proxy, git_host.url_for("pkgs.test", "/team/repo.git/info/refs")).status == 200
        finally:
            proxy.stop()
        raw = proxy.stderr_path.read_bytes()  # as a terminal gets it (no newline translation)
        log = raw.decode("utf-8", "replace")
        assert len(calls(command)) >= 1 and len(calls(helper)) >= 1
        assert not any(c in raw for c in (b"\x1b", b"\x07", b"\r")), f"{log_format}: raw control characters: {raw!r}"
        assert log.count("\\x1b]2;owned\\x07\\x1b[2J\\x0dfake line") == 2, log  # both programs' stderr, escaped
        assert TOKEN not in log and GIT_PASSWORD not in log


def test_a_client_without_the_proxy_token_runs_no_helper_and_nothing_is_remembered(tmp_path, tls_certs, world):
    registry, git_host, command, helper = world
    proxy = _start(tmp_path, tls_certs, "-v", "--remember")
    stranger = proxy.port  # a bare port: no Proxy-Authorization, as another local user
    try:
        own = {"Authorization": _basic(f"alice:{STRANGER_PASSWORD}")}
        for url in (registry.index_url(), git_host.url_for("pkgs.test", "/team/repo.git/info/refs"),
                    git_host.url_for("pkgs.test", "/")):
            with pytest.raises(OSError, match="407"):
                get(stranger, url, headers=own)  # the CONNECT is refused before any TLS
        assert calls(command) == [] and calls(helper) == [], "a client without the token ran a helper"
        assert registry.seen == [] and git_host.requests == [], "a request without the token went upstream"
    finally:
        proxy.stop()
    assert "remembered" not in proxy.stderr()
    leaked = [str(p) for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith((".stderr", ".stdout"))
              and STRANGER_PASSWORD.encode() in p.read_bytes()]
    assert leaked == [], f"the stranger's credential was stored: {leaked}"
    assert STRANGER_PASSWORD not in proxy.stderr()



def test_with_use_http_path_a_repositorys_credential_goes_to_that_repository_only(tmp_path, tls_certs, echo_factory):  # noqa: F811
    """`credential.useHttpPath = true`: git keeps one credential per repository or
    organisation (GitHub fine-grained tokens; Azure DevOps organisations on one host, which
    Git Credential Manager tells apart by the path's first segment, as this helper does). Each
    goes to its own place, never to the next one on the same host."""
    password_a, password_b = "org-A-t0ken-s3cret", "org-B-t0ken-s3cret"
    git_host = echo_factory(host="pkgs.test", credentials=("alice", password_a))
    port = git_host.port
    helper = logging_program(tmp_path / "bin" / "org-helper", (
        "fields = dict(line.split('=', 1) for line in json.loads(open(__file__ + '.calls').read().splitlines()[-1])[1].splitlines() if '=' in line)\n"
        "org = fields.get('path', '').split('/')[0]\n"
        f"passwords = {{'team-a': {password_a!r}, 'team-b': {password_b!r}}}\n"
        "if sys.argv[1:] == ['get'] and org in passwords:\n"
        "    print('username=alice'); print('password=' + passwords[org])\n"))
    home = tmp_path / "proxy-home"
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text(f'[credential]\n\thelper = "!{helper}"\n\tuseHttpPath = true\n')
    (tmp_path / "credproxy-config.toml").write_text(f'git-credential-hosts = ["pkgs.test:{port}"]\n')
    proxy = _start(tmp_path, tls_certs, "-v")
    try:
        for _ in range(2):  # the second round is served from the session cache
            assert get(proxy, git_host.url_for("pkgs.test", "/team-a/repo.git/info/refs?service=git-upload-pack")).status == 200
            assert get(proxy, git_host.url_for("pkgs.test", "/team-a/repo.git/git-upload-pack")).status == 200
            get(proxy, git_host.url_for("pkgs.test", "/team-b/repo.git/info/refs?service=git-upload-pack"))
        got_a = {_basic(f"alice:{password_a}")}
        to_b = [r for r in git_host.requests if r.path.startswith("/team-b/")]
        assert not [r.path for r in to_b if r.authorization in got_a], "repository A's credential went to repository B"
        assert any(r.authorization == _basic(f"alice:{password_b}") for r in to_b), "B's own credential was asked for"
    finally:
        proxy.stop()
    assert password_a not in proxy.stderr() and password_b not in proxy.stderr()


def test_no_helper_secret_in_logs_flows_status_or_explain(tmp_path, tls_certs, world):
    """The token-command's token and the git helper's password, through every output: the
    -v log in text and JSON, saved flows, the state file behind `credproxy status`, `status`,
    `explain` and `doctor` (which run the same sources)."""
    registry, git_host, command, helper = world
    flows = tmp_path / "flows.mitm"
    proxy = _start(tmp_path, tls_certs, "-vv", "--log-format", "json", "--save-flows", str(flows))
    try:
        assert get(proxy, registry.index_url()).status == 200
        assert get(proxy, git_host.url_for("pkgs.test", "/team/repo.git/info/refs")).status == 200
        cli_env = {**proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem), "CREDPROXY_DATA_DIR": str(proxy.data_dir)}
        outputs = {name: run(credproxy_cmd(*argv), env=cli_env, timeout=60) for name, argv in {
            "status": ["status"],
            "explain token-command": ["explain", registry.index_url()],
            "explain git": ["explain", git_host.url_for("pkgs.test", "/team/repo.git/info/refs")],
            "doctor": ["doctor", registry.index_url()],
        }.items()}
    finally:
        proxy.stop()
    assert "token-command" in outputs["explain token-command"].stdout  # it did look
    texts = {"proxy log": proxy.stderr() + proxy.stdout(), "saved flows": flows.read_bytes().decode("latin-1")}
    texts.update({name: r.stdout + r.stderr for name, r in outputs.items()})
    texts.update({str(p): p.read_bytes().decode("latin-1") for p in proxy.data_dir.rglob("*") if p.is_file()})
    for secret, user in ((TOKEN, "aws"), (GIT_PASSWORD, "alice")):
        forms = (secret, base64.b64encode(f"{user}:{secret}".encode()).decode())
        leaked = [name for name, text in texts.items() if any(form in text for form in forms)]
        assert leaked == [], f"{secret} found in {leaked}"


@pytest.mark.parametrize("misbehaviour", ["hang", "flood"])
def test_a_hanging_or_flooding_helper_is_cut_off_and_the_proxy_keeps_serving(tmp_path, tls_certs, echo_factory,  # noqa: F811
                                                                             misbehaviour):
    """A token-command and a git helper that never answer, or print 300 MB: each request is
    answered (401: no credential) within the timeout, the programs and what they started are
    gone, and the proxy stays small."""
    registry = TokenRegistry.start(tls_certs, base="/pypi/repo", username="aws", token=TOKEN)
    git_host = echo_factory(host="pkgs.test", credentials=("alice", GIT_PASSWORD))
    pids = tmp_path / "pids"
    body = {
        "hang": ("import subprocess, time\n"
                 "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
                 f"open({str(pids)!r}, 'a').write(f'{{os.getpid()}} {{child.pid}}\\n')\n"
                 "time.sleep(120)\n"),
        "flood": "chunk = 'x' * (1 << 20) + '\\n'\nfor _ in range(300):\n    sys.stdout.write(chunk)\n",
    }[misbehaviour]
    command = logging_program(tmp_path / "bin" / "aws", "import os\n" + body)
    helper = logging_program(tmp_path / "bin" / "bad-helper", "import os\n" + body)
    _gitconfig(tmp_path, helper)
    (tmp_path / "credproxy-config.toml").write_text(f'''
keyring-timeout = 2
git-credential-hosts = ["pkgs.test:{git_host.port}"]

[[index]]
url = "{registry.index_url()}"
username = "aws"
token-command = ["{command}"]
''')
    proxy = _start(tmp_path, tls_certs, "-v")
    try:
        rss_before = proxy.rss_kb()
        for url in (registry.index_url(), git_host.url_for("pkgs.test", "/team/repo.git/info/refs")):
            started = time.monotonic()
            assert get(proxy, url).status == 401
            assert time.monotonic() - started < 10, f"{url}: the request waited for the helper"
        assert calls(command) and calls(helper)
        assert proxy.rss_kb() - rss_before < 50 * 1024, "the proxy grew with the helper's output"
        if misbehaviour == "hang":
            started_pids = [int(p) for line in pids.read_text().split("\n") if line for p in line.split()]
            deadline = time.monotonic() + 5
            while any(_alive(p) for p in started_pids) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not [p for p in started_pids if _alive(p)], "a helper or its child outlived the timeout"
        # and the proxy still answers
        assert get(proxy, registry.index_url()).status == 401
    finally:
        proxy.stop()
        registry.stop()
    assert "killed" in proxy.stderr()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_repository_serve_starts_in_cannot_choose_gits_credential_helper(tmp_path, tls_certs, world):
    """A project folder is not trusted (docs/security.md): a repository's `.git/config` (an
    unpacked archive, a checkout of someone else's work) may name `credential.helper =
    !program`. Started in it, `serve` must not let git run that program; only the user's
    own git configuration counts (here: no helper that knows this host)."""
    _, git_host, _, _ = world
    (tmp_path / "proxy-home" / ".gitconfig").write_text("[user]\n\tname = owner\n")
    project = tmp_path / "someone-elses-repo"
    evil = logging_program(tmp_path / "bin" / "evil-helper", "print('username=alice'); print('password=evil')")
    subprocess.run(["git", "init", "-q", str(project)], check=True, timeout=30)
    with open(project / ".git" / "config", "a") as f:
        f.write(f'[credential]\n\thelper = "!{evil}"\n')
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem)
    proxy = start_credproxy(tmp_path, "-v", env=env, cwd=project)
    proxy.test_ca = tls_certs.ca_pem
    try:
        assert get(proxy, git_host.url_for("pkgs.test", "/team/repo.git/info/refs")).status == 401
    finally:
        proxy.stop()
    assert calls(evil) == [], "git ran the credential helper named by the repository serve started in"


def test_the_directory_serve_starts_in_cannot_shadow_a_token_commands_module(tmp_path, tls_certs):
    """`token-command = ["python3", "-m", "corp_token"]` (a keyring-style helper): Python puts
    the working directory first on sys.path for `-m`, so a `corp_token.py` in the folder `serve`
    starts in (someone else's project) would run instead, with the user's rights. The command
    runs in `/`, so the installed module answers."""
    registry = TokenRegistry.start(tls_certs, base="/pypi/repo", username="aws", token=TOKEN)
    installed = tmp_path / "site"
    installed.mkdir()
    (installed / "corp_token.py").write_text(f"print({TOKEN!r})\n")
    project = tmp_path / "someone-elses-project"
    project.mkdir()
    marker = tmp_path / "shadow-ran"
    (project / "corp_token.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nprint('evil')\n")
    (tmp_path / "credproxy-config.toml").write_text(f'''
[[index]]
url = "{registry.index_url()}"
username = "aws"
token-command = ["{sys.executable}", "-m", "corp_token"]
''')
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem, extra={"PYTHONPATH": str(installed)})
    proxy = start_credproxy(tmp_path, "-v", env=env, cwd=project)
    proxy.test_ca = tls_certs.ca_pem
    try:
        assert get(proxy, registry.index_url()).status == 200
    finally:
        proxy.stop()
        registry.stop()
    assert not marker.exists(), "a module in the directory serve started in ran as the token command"
