"""Acceptance of issue 5: with a known secret sent through every path, no output contains it.

Paths: pre-emptive injection (netrc), retry after a challenge (netrc `default` entry), the
client's own credential, an upstream that echoes the Authorization header (of a pre-emptive
request, and of the re-send after a challenge, in its body and in a response header), upstream faults
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
            # first to retry.test, so it is the re-send after a challenge (later ones use the cache)
            "retry echo": world.get("retry.test", "/private/simple/g/?echo=1"),
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
        assert replies["retry echo"].status == 200 and leaks(replies["retry echo"].text)
        assert leaks(replies["retry echo"].headers["x-echo-authorization"])
        for name, reply in replies.items():
            if "echo" not in name:  # those bodies are the upstream's own reflection, not ours
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
        assert by_path["g/?echo=1"]["auth"] == "retry"
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
    assert len(flows) >= 8
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
    # the re-send's credential, echoed back: masked in the saved response's header and body
    retry_echo = next(f for f in flows if f.request.path.startswith("/private/simple/g/"))
    assert retry_echo.response.headers["X-Echo-Authorization"] == "Basic ****"
    assert "Basic ****" in retry_echo.response.get_text()


def _login(world: World):
    import subprocess

    from tests.helpers.proxy import credproxy_cmd

    return subprocess.run(
        credproxy_cmd("auth", "login", f"https://store.test:{world.port}/", "--username", USER, "--password", "-"),
        input=SECRET + "\n", env=world.env, capture_output=True, text=True, timeout=30,
    )


def test_real_pip_and_uv_through_the_proxy_leave_no_secret_anywhere(tmp_path, private_index, credproxy_factory):
    """Real clients against the testbed's pypiserver: the credential comes from the proxy's
    netrc; pip's and uv's output, the JSON request log and the saved flows stay clean."""
    from credproxy.credentials.model import secret_forms
    from tests.helpers.clients import client_env, installed, pip_install, uv_pip_install

    from .conftest import INDEX_PASSWORD, INDEX_USERNAME

    def clean(label: str, text: str) -> None:
        found = [f for f in secret_forms(INDEX_PASSWORD, INDEX_USERNAME) if f in text]
        assert found == [], f"{label} contains {found}"

    netrc = tmp_path / "proxy-home" / ".netrc"
    netrc.parent.mkdir(parents=True, exist_ok=True)
    netrc.write_text(f"machine pkgs.test login {INDEX_USERNAME} password {INDEX_PASSWORD}\n")
    netrc.chmod(0o600)
    (tmp_path / "credproxy-config.toml").write_text("")  # proxy_env names it; it must exist
    flows_file = tmp_path / "pip-uv.mitm"
    proxy = credproxy_factory("--log-format", "json", "--save-flows", str(flows_file), "-v")
    env = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=proxy.ca_cert)
    index_url = private_index.url_for("pkgs.test")

    pip = pip_install(tmp_path / "pip-target", "--index-url", index_url, "private-pkg", env=env)
    assert pip.returncode == 0, pip.stderr
    uv = uv_pip_install(tmp_path / "uv-target", "--index-url", index_url, "--no-cache", "private-pkg", env=env)
    assert uv.returncode == 0, uv.stderr
    assert "private-pkg" in installed(tmp_path / "pip-target")
    proxy.stop()

    clean("pip output", pip.stdout + pip.stderr)
    clean("uv output", uv.stdout + uv.stderr)
    log = proxy.stderr()
    clean("request log", log)
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    index_records = [r for r in records if r.get("url", "").startswith(f"https://pkgs.test:{private_index.port}/")]
    assert len(index_records) >= 4 and {r["source"] for r in index_records} == {"netrc"}
    clean("saved flows (raw)", flows_file.read_bytes().decode("latin-1"))
    with open(flows_file, "rb") as f:
        flows = list(mio.FlowReader(f).stream())
    assert len(flows) == len(index_records)
    for flow in flows:
        clean(f"saved flow {flow.request.url}", repr(flow.get_state()))
        assert flow.request.headers.get("Authorization") == "Basic [redacted by credproxy]"
