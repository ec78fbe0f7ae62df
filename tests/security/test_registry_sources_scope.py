"""The new credential sources (issue 12) answer only where the user pointed them.

Against a real `credproxy serve` and upstreams that record the Authorization they receive:

- a `token-command` token goes to its index, never to another path of the same host (outside
  the index root), another host or another port of the same host, even when that upstream challenges with 401; the command is not run for them;
- git's credential helpers are asked only for `git-credential-hosts`, even when the helper
  would answer for any host (a "greedy" helper), and the answer is sent only there;
- a host challenging with 401 cannot make credproxy run either program (no command run, no
  helper asked, no credential sent), also with --intercept-all, where the proxy sees the 401."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest

from tests.helpers.proxy import proxy_env, start_credproxy
from tests.helpers.proxy_client import client_context
from tests.helpers.proxy_client import get as _get
from tests.helpers.registries import TokenRegistry
from tests.helpers.servers import EchoServer, make_certs

pytestmark = pytest.mark.e2e

TOKEN = "tc-T0ken/+=:@%secret"
GIT_PASSWORD = "g1t-S3cret/+=:@%pw"


def logging_program(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    log = str(path) + ".calls"
    path.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"open({log!r}, 'a').write(json.dumps([sys.argv[1:], sys.stdin.read() if not sys.stdin.isatty() else '']) + '\\n')\n"
                    f"{body}\n")
    path.chmod(0o755)
    return path


def calls(path: Path) -> list:
    log = Path(str(path) + ".calls")
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def get(proxy, url: str):
    return _get(proxy, url, client_context(str(proxy.ca_cert), str(proxy.test_ca)))


def sent_secret(echo, secret: str) -> list[str]:
    """Authorization values an upstream received that carry `secret` in any form."""
    found = []
    for rec in echo.requests:
        value = rec.authorization or ""
        decoded = ""
        if value.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(value[6:]).decode()
            except ValueError:
                decoded = value
        if secret in value or secret in decoded:
            found.append(f"{rec.host}{rec.path}")
    return found


@pytest.fixture(scope="module")
def tls_certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def echo_factory(tls_certs):
    started: list[EchoServer] = []

    def start(**kwargs) -> EchoServer:
        started.append(EchoServer.start(tls_certs, **kwargs))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def upstreams(tls_certs, echo_factory):
    registry = TokenRegistry.start(tls_certs, base="/pypi/my-repo", username="aws", token=TOKEN)
    # other hosts that ask for credentials: a 401 must not make credproxy run anything for them
    other = echo_factory(host="other.test", credentials=("someone", "something"))
    same_host_other_port = echo_factory(host="pkgs.test", credentials=("someone", "something"))
    yield registry, other, same_host_other_port
    registry.stop()


INTERCEPT = pytest.mark.parametrize("intercept", [(), ("--intercept-all",)], ids=["auto", "intercept-all"])


@INTERCEPT
def test_a_token_command_token_goes_to_its_index_only(tmp_path, tls_certs, upstreams, intercept):
    registry, other, same_host = upstreams
    aws = logging_program(tmp_path / "bin" / "aws", f"print({TOKEN!r})")
    (tmp_path / "credproxy-config.toml").write_text(f'''
[[index]]
url = "{registry.index_url()}"
username = "aws"
token-command = ["{aws}", "codeartifact", "get-authorization-token"]
''')
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem)
    proxy = start_credproxy(tmp_path, "-v", *intercept, env=env)
    proxy.test_ca = tls_certs.ca_pem
    try:
        ok = get(proxy, registry.index_url())
        assert ok.status == 200  # the index itself: the token works
        assert len(calls(aws)) == 1
        for target in (other.url_for("other.test", "/pypi/my-repo/simple/"),
                       same_host.url_for("pkgs.test", "/pypi/my-repo/simple/")):
            reply = get(proxy, target)
            assert reply.status == 401, target
        assert len(calls(aws)) == 1, "the token command ran for another host"
        # the same host and port, outside the index root: not under the token's prefix
        outside = get(proxy, f"https://pkgs.test:{registry.port}/pypi/other-repo/simple/")
        assert outside.status == 401
        assert [s.who for s in registry.seen if "other-repo" in s.path] == [None]
        assert sent_secret(other, TOKEN) == [] and sent_secret(same_host, TOKEN) == []
    finally:
        proxy.stop()
    assert TOKEN not in proxy.stderr()


@INTERCEPT
def test_git_credential_helpers_are_asked_for_the_listed_hosts_only(tmp_path, tls_certs, upstreams, echo_factory,
                                                                    intercept):
    _, other, _ = upstreams
    listed = echo_factory(host="pkgs.test", credentials=("alice", GIT_PASSWORD))
    # a helper that answers for any host it is asked about
    helper = logging_program(tmp_path / "bin" / "greedy-helper",
                             f"print('username=alice'); print('password=' + {GIT_PASSWORD!r})")
    home = tmp_path / "proxy-home"
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text(f'[credential]\n\thelper = "!{helper}"\n')
    (tmp_path / "credproxy-config.toml").write_text(f'git-credential-hosts = ["pkgs.test:{listed.port}"]\n')
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem)
    proxy = start_credproxy(tmp_path, "-v", *intercept, env=env)
    proxy.test_ca = tls_certs.ca_pem
    try:
        refused = get(proxy, other.url_for("other.test", "/team/repo.git/info/refs?service=git-upload-pack"))
        assert refused.status == 401
        assert calls(helper) == [], "git's helper was asked for a host not in git-credential-hosts"
        assert sent_secret(other, GIT_PASSWORD) == []
        ok = get(proxy, listed.url_for("pkgs.test", "/team/repo.git/info/refs?service=git-upload-pack"))
        assert ok.status == 200
        (call,) = calls(helper)
        assert f"host=pkgs.test:{listed.port}" in call[1]
        assert sent_secret(listed, GIT_PASSWORD) != []
        # and still not to the other host afterwards (nothing cached for it)
        assert get(proxy, other.url_for("other.test", "/team/repo.git/")).status == 401
        assert sent_secret(other, GIT_PASSWORD) == []
    finally:
        proxy.stop()
    assert GIT_PASSWORD not in proxy.stderr()
