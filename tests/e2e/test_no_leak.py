"""Acceptance of issue 5: with a known secret sent through every path, no output contains it.

Paths: pre-emptive injection (netrc), retry after a challenge (netrc `default` entry), the
client's own credential, an upstream that echoes the Authorization header, upstream faults
(error bodies), `authenticate = always` without a credential (the proxy's own error body),
the store (`auth login` with the secret on stdin, read by the proxy). Outputs scanned: the request log (text and json,
with -v), the proxy's whole stderr, the saved flow file (raw bytes and every field read back
with mitmproxy's FlowReader), `doctor URL`, `explain URL`, every response body the proxy
wrote. Forms: raw, URL-encoded, base64 of user:secret (credentials.model.secret_forms)."""

from __future__ import annotations

import base64
import json

import pytest
from mitmproxy import io as mio

from .observe_setup import SECRET, USER, World, leaks
from .proxy_client import get

pytestmark = pytest.mark.e2e

NETRC = (
    "machine pkgs.test login {user} password {secret}\n"
    "default login {user} password {secret}\n"
).format(user=USER, secret=SECRET)
CONFIG = """
[[index]]
name = "retry"
url = "https://retry.test:{port}/private/simple/"

[[index]]
name = "strict"
url = "https://other.test:{port}/strict/simple/"
authenticate = "always"
"""


def scan(label: str, text: str) -> None:
    found = leaks(text, SECRET, USER)
    assert found == [], f"{label} contains {found}"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_output_contains_the_secret(tmp_path, log_format):
    flows_file = tmp_path / "flows.mitm"
    with World(tmp_path, netrc=NETRC, config_extra=CONFIG,
               names=("pkgs.test", "other.test", "retry.test", "store.test")) as world:
        login = _login(world)
        assert login.returncode == 0, login.stderr
        scan("auth login output", login.stdout + login.stderr)

        world.start("--log-format", log_format, "--save-flows", str(flows_file), "-v")
        bodies = []
        own = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
        replies = {
            "preemptive": world.get("pkgs.test", "/private/simple/a/"),
            "retry": world.get("retry.test", "/private/simple/b/"),
            "client's own": world.get("retry.test", "/private/simple/c/", headers={"Authorization": own}),
            "echo": world.get("pkgs.test", "/echo"),
            "reset": world.get("pkgs.test", "/reset"),
            "garbage": world.get("pkgs.test", "/garbage"),
            "always without credential": world.get("other.test", "/strict/simple/d/"),
            "store": world.get("store.test", "/private/simple/e/"),
        }
        assert replies["preemptive"].status == 200
        assert replies["retry"].status == 200
        assert replies["client's own"].status == 200
        assert replies["store"].status == 200
        assert replies["reset"].status == 502 and replies["garbage"].status == 502
        assert replies["always without credential"].status >= 400
        # the echo upstream really reflected the credential: the saved flow must not keep it
        assert "authorization: basic" in replies["echo"].text.lower()
        for name, reply in replies.items():
            if name != "echo":  # that body is the upstream's own reflection, not ours
                bodies.append((name, reply.text))

        proxy_env = {**world.env, "HTTPS_PROXY": world.proxy.url, "SSL_CERT_FILE": world.proxy_ca}
        doctor = world.cli("doctor", "--port", str(world.proxy.port),
                           world.url("pkgs.test", "/private/simple/a/"), env=proxy_env)
        explain = world.cli("explain", world.url("pkgs.test", "/private/simple/a/"))
        explain_retry = world.cli("explain", world.url("retry.test", "/private/simple/b/"))
        stderr = world.stop()

    for name, body in bodies:
        scan(f"response body ({name})", body)
    scan("doctor output", doctor.stdout + doctor.stderr)
    assert "netrc" in doctor.stdout  # it did describe the credential, redacted
    for result in (explain, explain_retry):
        assert result.returncode == 0, result.stderr
        scan("explain output", result.stdout + result.stderr)
    assert "netrc" in explain.stdout

    scan("proxy stderr / request log", stderr)
    lines = [line for line in stderr.splitlines() if "/private/simple/" in line]
    if log_format == "json":
        records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
        by_path = {r["url"].split("/private/simple/")[-1]: r for r in records if "/private/simple/" in r["url"]}
        assert by_path["a/"]["source"] == "netrc" and by_path["a/"]["auth"] == "preemptive"
        assert by_path["b/"]["auth"] == "retry"
        assert by_path["c/"]["source"] == "client"
        assert by_path["e/"]["source"] == "store"
    else:
        assert any("source=netrc auth=preemptive" in line for line in lines), stderr
        assert any("auth=retry" in line for line in lines), stderr
    assert len(lines) >= 4

    raw = flows_file.read_bytes()
    scan("saved flow file (raw)", raw.decode("latin-1"))
    with open(flows_file, "rb") as f:
        flows = list(mio.FlowReader(f).stream())
    assert len(flows) >= 7
    for flow in flows:
        state = repr(flow.get_state())
        scan(f"saved flow {flow.request.url}", state)
        text = ""
        for message in (flow.request, flow.response):
            if message is not None:
                text += str(message.headers) + (message.get_text(strict=False) or "")
        scan(f"saved flow {flow.request.url} (decoded)", text)
    echo = next(f for f in flows if f.request.path == "/echo")
    assert "[redacted by credproxy]" in echo.request.headers["Authorization"]


def _login(world: World):
    import subprocess

    from .proxy_process import credproxy_cmd

    return subprocess.run(
        credproxy_cmd("auth", "login", f"https://store.test:{world.port}/", "--username", USER, "--password", "-"),
        input=SECRET + "\n", env=world.env, capture_output=True, text=True, timeout=30,
    )
