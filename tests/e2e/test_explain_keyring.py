"""The resolver with a REAL `keyring` command on PATH (tests/helpers/keyring_script.py), and
`credproxy explain` run as a user runs it. Nothing here talks to the network."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from credproxy.config import Settings
from credproxy.credentials.index import Index
from credproxy.credentials.model import secret_forms
from credproxy.credentials.resolver import Resolver
from tests.helpers.keyring_script import read_calls, read_pids, write_keyring_script

pytestmark = pytest.mark.e2e

SECRET = "kr-S3cret/+%="
INDEX_URL = "https://pkgs.test/simple"


def base_env(tmp_path: Path, bin_dir: Path) -> dict[str, str]:
    """An explicit environment: nothing from this machine's pip/uv/SSL settings."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin",
        "HOME": str(home),
        "CREDPROXY_DATA_DIR": str(tmp_path / "data"),
        "UV_NO_CONFIG": "1",
        "PIP_CONFIG_FILE": os.devnull,
        "LANG": "C.UTF-8",
    }


def assert_no_secret(text: str, username: str = "alice") -> None:
    for form in secret_forms(SECRET, username):
        assert form not in text, f"secret form {form!r} leaked"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False
    return True


def resolver_for(tmp_path, answers, *, username=None, sleep=0.0, timeout=10.0):
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    write_keyring_script(bin_dir, answers, log=log, sleep=sleep)
    env = base_env(tmp_path, bin_dir)
    settings = Settings(indexes=[Index.from_url(INDEX_URL, name="corp", username=username)],
                        keyring_provider="subprocess", keyring_timeout=timeout, env=env)
    return Resolver(settings), log


@pytest.mark.parametrize(
    "username, answers, argv",
    [
        (None, {(INDEX_URL, None): ("alice", SECRET)}, ["get", INDEX_URL, "--mode", "creds"]),
        ("alice", {(INDEX_URL, "alice"): SECRET}, ["get", INDEX_URL, "alice"]),
    ],
)
def test_fifty_concurrent_requests_run_one_keyring_command(tmp_path, username, answers, argv):
    resolver, log = resolver_for(tmp_path, answers, username=username, sleep=0.3)

    async def main():
        urls = [f"https://pkgs.test/simple/pkg{i % 5}/" for i in range(50)]
        return await asyncio.wait_for(asyncio.gather(*(resolver.aresolve(u) for u in urls)), 30)

    try:
        decisions = asyncio.run(main())
    finally:
        resolver.close()
    assert read_calls(log) == [argv]  # exactly one call, uv's argv (uv §11)
    expected = "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
    assert {d.header for d in decisions} == {expected}
    assert {(d.action, d.source, d.preemptive) for d in decisions} == {("inject", "keyring", True)}


def test_keyring_service_order_when_nothing_is_found(tmp_path):
    resolver, log = resolver_for(tmp_path, {}, username="alice")
    try:
        d = resolver.resolve("https://pkgs.test/simple/demo/")
    finally:
        resolver.close()
    assert d.action == "send"
    assert read_calls(log) == [["get", INDEX_URL, "alice"], ["get", "pkgs.test", "alice"]]


def test_hanging_keyring_is_cut_off_and_the_request_goes_on(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    resolver, log = resolver_for(tmp_path, {(INDEX_URL, "alice"): SECRET}, username="alice", sleep=3600, timeout=1.0)

    async def main():
        return await asyncio.wait_for(asyncio.gather(*(resolver.aresolve("https://pkgs.test/simple/x/") for _ in range(5))), 30)

    start = time.monotonic()
    try:
        decisions = asyncio.run(main())
    finally:
        resolver.close()
    elapsed = time.monotonic() - start
    assert all(d.action == "send" for d in decisions)
    assert elapsed < 15  # two services x 1 s timeout, plus slack for a busy machine
    assert "no answer within 1s, killed" in caplog.text
    assert "keyring get https://pkgs.test/simple alice" in caplog.text
    assert len(read_calls(log)) == 2  # one hang per service, once for all five requests
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in read_pids(log)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(p) for p in read_pids(log))


def run_cli(args, env, cwd, timeout=60):
    return subprocess.run([sys.executable, "-m", "credproxy.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def test_explain_command_names_the_keyring_and_prints_no_secret(tmp_path):
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    write_keyring_script(bin_dir, {(INDEX_URL, "alice"): SECRET}, log=log)
    env = base_env(tmp_path, bin_dir)
    config = tmp_path / "credproxy.toml"
    config.write_text(f'keyring-provider = "subprocess"\n\n[[index]]\nname = "corp"\nurl = "{INDEX_URL}"\nusername = "alice"\n')
    result = run_cli(["explain", "https://pkgs.test/simple/demo/", "--config", str(config)], env, tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert_no_secret(out)
    assert "corp (https://pkgs.test/simple)" in out
    lines = result.stdout.splitlines()
    keyring_line = next(line for line in lines if line.strip().startswith("keyring"))
    assert "answered [alice:****]" in keyring_line
    assert [line.split()[0] for line in lines if line.startswith("  ")] == ["index-url", "hf-token", "netrc", "store", "keyring"]
    assert "decision: inject from keyring" in out and "would send: alice:****" in out
    assert read_calls(log) == [["get", INDEX_URL, "alice"]]  # asked once, sent nothing upstream


def test_explain_command_with_netrc_and_username(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = base_env(tmp_path, bin_dir)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine other.test login alice password {SECRET}\n")
    netrc.chmod(0o600)
    env["NETRC"] = str(netrc)
    result = run_cli(["explain", "https://other.test/files/x.whl", "--username", "alice"], env, tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert_no_secret(out)
    assert "index:    none configured" in out
    assert "decision: inject from netrc" in out and "alice:****" in out


def test_explain_command_bad_url_is_one_line_without_secret(tmp_path):
    env = base_env(tmp_path, tmp_path)
    result = run_cli(["explain", f"https://alice:{SECRET}@pkgs.test/simple/"], env, tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("credproxy: error: invalid URL") and result.stderr.count("\n") == 1
    assert_no_secret(result.stdout + result.stderr)


def test_explain_says_a_host_known_only_to_the_netrc_default_is_not_intercepted(tmp_path):
    """The `default` entry answers every host on a challenge, but the proxy only sees the
    challenge of a host it intercepts; explain must not promise a retry it cannot make."""
    env = base_env(tmp_path, tmp_path)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"default login bob password {SECRET}\n")
    netrc.chmod(0o600)
    env["NETRC"] = str(netrc)
    result = run_cli(["explain", "https://pkgs.test/simple/demo/"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert_no_secret(result.stdout + result.stderr)
    line = next(l for l in result.stdout.splitlines() if l.startswith("intercepted:"))
    assert "NO (nothing names this host" in line and "intercept-hosts" in line

    config = tmp_path / "credproxy.toml"
    config.write_text(f'[[index]]\nname = "corp"\nurl = "{INDEX_URL}"\n')
    result = run_cli(["explain", "https://pkgs.test/simple/demo/", "--config", str(config)], env, tmp_path)
    line = next(l for l in result.stdout.splitlines() if l.startswith("intercepted:"))
    assert line.split()[1] == "yes", result.stdout
    assert "on 401:   retry once with bob:**** from netrc" in result.stdout
