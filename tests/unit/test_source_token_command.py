"""The token command source (issue 12 point 5): real subprocesses, bounded and masked.

Each test writes a small program and runs it through TokenCommandSource (or the resolver),
the way the proxy does: argv without a shell, the configured environment, no stdin."""

from __future__ import annotations

import base64
import os
import sys
import time
from pathlib import Path

import pytest

from credproxy.config import ConfigError, Settings, parse_config
from credproxy.credentials.index import Index
from credproxy.credentials.resolver import Resolver, default_sources
from credproxy.credentials.sources.process import OUTPUT_LIMIT, run_bounded
from credproxy.credentials.sources.token_command import DEFAULT_LIFETIME, TokenCommandSource

TOKEN = "tok-3f9a/+=:@secret"
URL = "https://codeartifact.test/pypi/repo/simple/"


def script(tmp_path: Path, body: str, name: str = "tokencmd") -> Path:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\nimport os, sys, time\n{body}\n")
    path.chmod(0o755)
    return path


def index(command: list[str], username: str | None = "aws", lifetime: float | None = None) -> Index:
    return Index.from_url(URL, name="ca", username=username, token_command=tuple(command),
                          token_lifetime=lifetime)


def test_stdout_is_the_password_for_the_index_username(tmp_path):
    prog = script(tmp_path, f"print({TOKEN!r})")
    ix = index([str(prog)])
    answer = TokenCommandSource([ix]).lookup(URL + "pkg/", None, ix)
    assert answer.found and answer.credentials.username == "aws"
    assert answer.credentials.password == TOKEN
    assert answer.ttl == DEFAULT_LIFETIME and answer.prefix == ix.root_url
    assert TOKEN not in answer.detail and TOKEN not in repr(answer)


def test_no_username_means_an_empty_one_as_jfrog_takes_it(tmp_path):
    prog = script(tmp_path, f"print({TOKEN!r})")
    ix = index([str(prog)], username=None)
    creds = TokenCommandSource([ix]).lookup(URL, None, ix).credentials
    assert creds.header_value() == "Basic " + base64.b64encode(f":{TOKEN}".encode()).decode()


def test_argv_is_not_given_to_a_shell(tmp_path):
    marker = tmp_path / "pwned"
    prog = script(tmp_path, "print(repr(sys.argv[1:]), file=sys.stderr); print('t0k')")
    ix = index([str(prog), f"; touch {marker}", f"$(touch {marker})"])
    answer = TokenCommandSource([ix]).lookup(URL, None, ix)
    assert answer.found and not marker.exists()


def test_a_failing_command_gives_no_credential_and_says_which_program(tmp_path, caplog):
    prog = script(tmp_path, f"print({TOKEN!r}); sys.exit(3)", name="aws")
    ix = index([str(prog), "codeartifact", "get-authorization-token", "--domain-owner", "123456789012"])
    answer = TokenCommandSource([ix]).lookup(URL, None, ix)
    assert not answer.found
    assert "aws" in answer.detail and "exit 3" in answer.detail
    assert "123456789012" not in answer.detail  # arguments may name accounts
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("body, expected", [("pass", "got nothing"), ("print('a'); print('b')", "got 2 lines")])
def test_stdout_must_be_the_token_alone(tmp_path, body, expected):
    prog = script(tmp_path, body)
    ix = index([str(prog)])
    answer = TokenCommandSource([ix]).lookup(URL, None, ix)
    assert not answer.found and expected in answer.detail


def test_stderr_is_echoed_with_the_token_masked(tmp_path, capfd):
    prog = script(tmp_path, f"print('fetched token {TOKEN} for aws', file=sys.stderr); print({TOKEN!r})")
    ix = index([str(prog)])
    assert TokenCommandSource([ix]).lookup(URL, None, ix).found
    err = capfd.readouterr().err
    assert "fetched token **** for aws" in err and TOKEN not in err


def test_a_hanging_command_is_killed_with_its_process_group(tmp_path):
    pids = tmp_path / "pids"
    prog = script(tmp_path, (
        "import subprocess\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(60)"))
    ix = index([str(prog)])
    started = time.monotonic()
    answer = TokenCommandSource([ix], timeout=1.0).lookup(URL, None, ix)
    assert time.monotonic() - started < 10
    assert not answer.found and "no answer within 1s, killed" in answer.detail
    for pid in map(int, pids.read_text().split()):
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), f"pid {pid} survived"


def test_output_is_bounded(tmp_path):
    prog = script(tmp_path, "sys.stdout.write('x' * (10 * 1024 * 1024)); sys.stdout.flush(); time.sleep(60)")
    started = time.monotonic()
    outcome = run_bounded([str(prog)], env=None, timeout=20)
    assert time.monotonic() - started < 10
    assert "more than 64 KiB" in outcome.problem and len(outcome.stdout) <= OUTPUT_LIMIT
    ix = index([str(prog)])
    assert not TokenCommandSource([ix], timeout=20).lookup(URL, None, ix).found


def test_the_command_gets_the_configured_environment_and_no_stdin(tmp_path):
    prog = script(tmp_path, "data = sys.stdin.read(); print(os.environ['AWS_PROFILE'] + '-' + str(len(data)))")
    ix = index([str(prog)])
    answer = TokenCommandSource([ix], env={"AWS_PROFILE": "ci", "PATH": os.defpath}).lookup(URL, None, ix)
    assert answer.credentials.password == "ci-0"


def test_another_username_is_not_answered(tmp_path):
    prog = script(tmp_path, "print('t')")
    ix = index([str(prog)])
    answer = TokenCommandSource([ix]).lookup(URL, "mallory", ix)
    assert not answer.found and "not 'mallory'" in answer.detail


# --- in the resolver: lifetime, re-run after a rejection ---------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting_command(tmp_path: Path) -> tuple[Path, Path]:
    """A command printing `token-<n>` where n counts its runs."""
    runs = tmp_path / "runs"
    prog = script(tmp_path, (
        f"p = {str(runs)!r}\n"
        "n = (len(open(p).read()) if os.path.exists(p) else 0) + 1\n"
        "open(p, 'a').write('x')\n"
        "print(f'token-{n}')"))
    return prog, runs


def test_resolver_uses_the_token_for_its_lifetime_then_runs_the_command_again(tmp_path):
    prog, runs = counting_command(tmp_path)
    settings = Settings(indexes=[index([str(prog)], lifetime=300)], env={"PATH": os.defpath})
    clock = Clock()
    resolver = Resolver(settings, clock=clock)
    try:
        assert [s.name for s in resolver.sources][:2] == ["index-url", "token-command"]
        first = resolver.resolve(URL + "a/")
        assert first.action == "inject" and first.credentials.password == "token-1"
        resolver.record(URL + "a/", first, 200)
        clock.now += 299
        again = resolver.resolve(URL + "b/")
        assert again.cached and again.credentials.password == "token-1"
        resolver.record(URL + "b/", again, 200)  # a cache hit does not extend the lifetime
        clock.now += 2
        later = resolver.resolve(URL + "c/")
        assert later.credentials.password == "token-2" and not later.cached
        assert runs.read_text() == "xx"
    finally:
        resolver.close()


def test_resolver_runs_the_command_again_after_a_rejection(tmp_path):
    prog, runs = counting_command(tmp_path)
    settings = Settings(indexes=[index([str(prog)], lifetime=3600)], env={"PATH": os.defpath})
    resolver = Resolver(settings, clock=Clock())
    try:
        first = resolver.resolve(URL)
        resolver.record(URL, first, 200)
        cached = resolver.resolve(URL)
        assert cached.cached and cached.credentials.password == "token-1"
        retry = resolver.challenge(URL, cached, 401)  # the registry rotated its token
        assert retry is not None and retry.action == "inject" and retry.credentials.password == "token-2"
        assert runs.read_text() == "xx"
    finally:
        resolver.close()


def test_no_token_command_source_without_a_token_command():
    assert "token-command" not in [s.name for s in default_sources(Settings(env={}))]


# --- config ------------------------------------------------------------------------------------


def test_config_reads_token_command_and_lifetime():
    layer = parse_config({"index": [{"url": URL, "username": "aws", "token-lifetime": 900,
                                     "token-command": ["aws", "codeartifact", "get-authorization-token"]}]},
                         Path("c.toml"))
    (ix,) = layer.indexes
    assert ix.token_command == ("aws", "codeartifact", "get-authorization-token") and ix.token_lifetime == 900.0


@pytest.mark.parametrize("table, expected", [
    ({"token-command": "aws codeartifact"}, "index[1].token-command: expected a non-empty array of strings"),
    ({"token-command": []}, "index[1].token-command: expected a non-empty array of strings"),
    ({"token-command": ["aws"], "token-lifetime": 0}, "index[1].token-lifetime: expected a positive number"),
    ({"token-lifetime": 60}, "index[1].token-lifetime: expected to be set together with token-command"),
])
def test_config_names_a_bad_token_command(table, expected):
    with pytest.raises(ConfigError) as e:
        parse_config({"index": [{"url": URL, **table}]}, Path("c.toml"))
    assert expected in str(e.value)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_a_token_shaped_request_username_is_masked_in_the_answers_detail(tmp_path):
    """A client's username-only `Basic TOKEN:` is the secret: the detail (shown by explain and the
    request log) names it as ****, with and without a configured username."""
    from credproxy.credentials.sources.netrc import NetrcSource
    from credproxy.credentials.sources.url_env import IndexCredentialsSource
    client = "ghp_ClientSentTokenAsUser0123456789abcXYZ"
    prog = script(tmp_path, f"print({TOKEN!r})")
    for ix in (index([str(prog)]), index([str(prog)], username=None)):
        detail = TokenCommandSource([ix]).lookup(URL, client, ix).detail
        assert client not in detail and "****" in detail, detail
    netrc = tmp_path / "netrc"
    netrc.write_text("machine codeartifact.test login aws password pw\n")
    netrc.chmod(0o600)
    detail = NetrcSource({"NETRC": str(netrc)}).lookup(URL, client, None).detail
    assert client not in detail, detail
    env_ix = Index.from_url("https://aws:pw@codeartifact.test/pypi/repo/simple/", name="ca")
    detail = IndexCredentialsSource([env_ix], {}).lookup(URL, client, env_ix).detail
    assert client not in detail, detail
