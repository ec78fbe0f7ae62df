"""The request log as a user reads it on `credproxy serve`'s stderr: one line per request, one
per passthrough tunnel, failed CONNECTs and clients that refuse the proxy's certificate."""

from __future__ import annotations

import json
import re

import pytest

from tests.helpers.proxy_client import client_context, get
from tests.helpers.servers import free_port

from .observe_setup import SECRET, USER, World, leaks

pytestmark = pytest.mark.e2e

NETRC = f"machine pkgs.test login {USER} password {SECRET}\ndefault login {USER} password {SECRET}\n"
CONFIG = """
[[index]]
name = "retry"
url = "https://retry.test:{port}/private/simple/"
"""
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def drive(world: World) -> int:
    """Every kind of line once; returns the closed port used for the failed CONNECT."""
    assert world.get("pkgs.test", "/private/simple/a/").status == 200
    assert world.get("retry.test", "/private/simple/b/").status == 200
    assert world.get("other.test", "/public/c").status == 200  # nobody knows other.test: passthrough
    with pytest.raises(OSError):  # a client that does not trust the proxy's CA
        get(world.proxy, world.url("pkgs.test", "/private/simple/d/"), client_context(str(world.ca_pem)))
    dead = free_port()
    with pytest.raises(OSError):
        get(world.proxy, f"https://other.test:{dead}/e", world.context)
    return dead


def test_text_log_lines(tmp_path):
    with World(tmp_path, netrc=NETRC, config_extra=CONFIG) as world:
        world.start("-v")
        dead = drive(world)
        stderr = world.stop()
    port = world.port
    lines = stderr.splitlines()

    def line_for(fragment: str) -> str:
        found = [line for line in lines if fragment in line and re.match(TIME, line)]
        assert len(found) == 1, (fragment, stderr)
        return found[0]

    assert re.fullmatch(
        TIME + rf" GET https://pkgs\.test:{port}/private/simple/a/ 200 source=netrc auth=preemptive"
        r" upstream=\d+ms bytes=11", line_for("/private/simple/a/"))
    assert re.fullmatch(
        TIME + rf" GET https://retry\.test:{port}/private/simple/b/ 200 source=netrc auth=retry"
        r" upstream=\d+ms bytes=11", line_for("/private/simple/b/"))
    assert re.fullmatch(TIME + rf" CONNECT other\.test:{port} - tunnel=passthrough duration=\d+ms",
                        line_for(f"CONNECT other.test:{port}"))
    tls = line_for("tunnel=client-tls-failed")
    assert f"CONNECT pkgs.test:{port} -" in tls and "does not trust the proxy's certificate" in tls
    failed = line_for(f"CONNECT other.test:{dead}")
    assert " 502 tunnel=connect-failed " in failed and "Cannot connect to" in failed
    assert leaks(stderr) == []


def test_json_log_one_object_per_line_and_verbose_reason(tmp_path):
    with World(tmp_path, netrc=NETRC, config_extra=CONFIG) as world:
        world.start("--log-format", "json", "-v")
        drive(world)
        assert world.get("pkgs.test", "/public/f").status == 200
        stderr = world.stop()
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    by_url = {r["url"].rsplit("/", 2)[-2] if r["method"] != "CONNECT" else r["url"]: r for r in records}
    first = by_url["a"]
    assert first["source"] == "netrc" and first["auth"] == "preemptive" and first["status"] == 200
    assert isinstance(first["upstream_ms"], int) and first["bytes"] == 11
    assert by_url["b"]["auth"] == "retry"
    tunnels = [r for r in records if r["method"] == "CONNECT"]
    assert {r["tunnel"] for r in tunnels} == {"passthrough", "client-tls-failed", "connect-failed"}
    assert leaks(stderr) == []


def test_verbose_explains_why_no_credential_was_sent(tmp_path):
    with World(tmp_path, netrc="", config_extra=CONFIG) as world:
        world.start("-v")
        assert world.get("retry.test", "/private/simple/g/").status == 401
        stderr = world.stop()
        world.start()
        assert world.get("retry.test", "/private/simple/g/").status == 401
        quiet = world.stop()
    [line] = [line for line in stderr.splitlines() if "/private/simple/g/" in line]
    assert " 401 source=none auth=-" in line and 'reason="upstream answered 401; not re-sent: ' in line
    [plain] = [line for line in quiet.splitlines() if "/private/simple/g/" in line]
    assert "reason=" not in plain
