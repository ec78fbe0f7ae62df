"""Issue 5 §4: each bad input gives a clear message and the proxy keeps serving.

Every test asserts the message a user would see (proxy stderr, an HTTP error body, a CLI
error) and then that a normal request through the same proxy still succeeds. The "normal
request" needs a credential from a source that is not the broken one: the index's
UV_INDEX_PRIVATE_USERNAME/PASSWORD variables."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import pytest

from tests.helpers.keyring_script import read_calls, read_pids, write_keyring_script
from tests.helpers.upstream import wait_for

from .observe_setup import SECRET, USER, World, leaks

pytestmark = pytest.mark.e2e

INDEX = """
[[index]]
name = "private"
url = "https://pkgs.test:{port}/private/simple/"
"""
ENV_CREDS = {"UV_INDEX_PRIVATE_USERNAME": USER, "UV_INDEX_PRIVATE_PASSWORD": SECRET}


def normal_request_succeeds(world: World) -> None:
    reply = world.get("pkgs.test", "/private/simple/demo/", timeout=15)
    assert reply.status == 200, (reply.status, reply.text)
    assert reply.body == b"private ok\n"


def assert_no_leak(*texts: str) -> None:
    for text in texts:
        assert leaks(text) == []


# --- credential sources ----------------------------------------------------------------


def test_malformed_netrc_is_reported_and_other_sources_still_work(tmp_path):
    netrc = "machine pkgs.test login alice password\n  }}} garbage here\n"
    with World(tmp_path, netrc=netrc, config_extra=INDEX, extra_env=ENV_CREDS) as world:
        world.start()
        # a host only the netrc could know: the proxy reads it, reports it, passes through
        reply = world.get("other.test", "/private/simple/x/")
        assert reply.status == 401
        normal_request_succeeds(world)
        stderr = world.stop()
    assert f"cannot parse netrc file {world.netrc_path}" in stderr
    assert "netrc ignored" in stderr
    assert_no_leak(stderr)


def test_malformed_store_toml_is_reported_and_other_sources_still_work(tmp_path):
    with World(tmp_path, netrc="", config_extra=INDEX, extra_env=ENV_CREDS) as world:
        store = Path(world.env["CREDPROXY_CREDENTIALS_DIR"]) / "credentials.toml"
        store.parent.mkdir(parents=True, exist_ok=True)
        store.write_text('[[credential]\nservice = "https://pkgs.test/"\npassword = "oops\n')
        world.start()
        # a host only the store could know: the proxy reads it, reports it, passes through
        reply = world.get("other.test", "/private/simple/x/")
        assert reply.status == 401
        normal_request_succeeds(world)
        stderr = world.stop()
    assert f"cannot parse credentials file {store}" in stderr
    assert store.read_text().startswith("[[credential]\n"), "a corrupt store is never overwritten"


def test_malformed_config_toml_names_the_file_and_a_fixed_one_serves(tmp_path):
    with World(tmp_path, config_extra=INDEX, extra_env=ENV_CREDS) as world:
        good = world.config.read_text()
        world.config.write_text(good + "\n[[index]\nname = 'broken'\n")
        result = world.cli("serve", "--port", "0", timeout=30)
        assert result.returncode != 0
        assert str(world.config) in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        world.config.write_text(good)
        world.start()
        normal_request_succeeds(world)


@pytest.mark.parametrize(
    "answer, message, explained",
    [
        # exit 1 means "no entry" to keyring, so a non-zero exit is not a warning of ours: the
        # keyring's own stderr reaches the user, and `explain` names the exit status
        ({"exit": 3, "stderr": "backend exploded\n"}, "backend exploded", "exit 3"),
        ({"stdout": "\x00\x01garbage-without-newline", "exit": 0},
         "expected username and password on two lines", "expected username and password on two lines"),
    ],
    ids=["exits-non-zero", "prints-garbage"],
)
def test_broken_keyring_is_reported_and_the_proxy_keeps_serving(tmp_path, answer, message, explained):
    bin_dir = tmp_path / "bin"
    log = tmp_path / "keyring-calls.jsonl"
    # asked for the other index (no username: --mode creds), never for "private"
    write_keyring_script(bin_dir, {(f"https://other.test:{{port}}/kr/simple/", None): answer}, log=log)
    config = 'keyring-provider = "subprocess"\n' + INDEX + """
[[index]]
name = "kr"
url = "https://other.test:{port}/kr/simple/"
"""
    with World(tmp_path, netrc="", config_extra=config, extra_env=ENV_CREDS) as world:
        script = bin_dir / "keyring"
        script.write_text(script.read_text().replace("{port}", str(world.port)))
        world.env["PATH"] = f"{bin_dir}:{world.env['PATH']}"
        world.start("-v")
        reply = world.get("other.test", "/kr/simple/demo/")
        assert reply.status in (401, 403, 404)  # no credential: the upstream's answer
        normal_request_succeeds(world)
        again = world.get("other.test", "/kr/simple/again/")  # within the 60 s negative cache
        stderr = world.stop()
        proxy_calls = read_calls(log)
        explain = world.cli("explain", world.url("other.test", "/kr/simple/demo/"))
    assert message in stderr, stderr
    assert "Traceback" not in stderr
    # -v says why nothing was sent, and that the keyring's "nothing" is remembered for a while
    [first] = [line for line in stderr.splitlines() if "/kr/simple/demo/" in line]
    [second] = [line for line in stderr.splitlines() if "/kr/simple/again/" in line]
    assert "source=none" in first and "keyring answered nothing" in first, first
    assert again.status == reply.status and "(remembered; asked again after " in second, second
    # one lookup for both requests (uv's order: the index URL, then the realm)
    assert [c[1] for c in proxy_calls] == [f"https://other.test:{world.port}/kr/simple/", f"other.test:{world.port}"]
    assert explained in explain.stdout, explain.stdout


def test_hanging_keyring_is_killed_and_the_proxy_keeps_serving(tmp_path):
    bin_dir = tmp_path / "bin"
    log = tmp_path / "keyring-calls.jsonl"
    write_keyring_script(bin_dir, {}, log=log, sleep=3600)
    config = 'keyring-provider = "subprocess"\n' + INDEX + """
[[index]]
name = "kr"
url = "https://other.test:{port}/kr/simple/"
"""
    with World(tmp_path, netrc="", config_extra=config, extra_env={**ENV_CREDS, "CREDPROXY_KEYRING_TIMEOUT": "3"}) as world:
        world.env["PATH"] = f"{bin_dir}:{world.env['PATH']}"
        world.start("-v")
        # while the keyring hangs for one request, others are served
        import threading

        result: dict = {}
        hung = threading.Thread(target=lambda: result.update(r=world.get("other.test", "/kr/simple/x/", timeout=60)))
        started = time.monotonic()
        hung.start()
        assert wait_for(lambda: read_pids(log), timeout=20), "keyring was never asked"
        normal_request_succeeds(world)
        hung.join(60)
        elapsed = time.monotonic() - started
        assert "r" in result and result["r"].status in (401, 403, 404)
        assert elapsed < 20, f"the hanging keyring held the request {elapsed:.0f}s"
        stderr = world.stop()
    assert "no answer within 3s, killed" in stderr and "keyring get" in stderr, stderr
    for pid in read_pids(log):
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


# --- clients and upstreams (one proxy for all of them) -----------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    with World(tmp, netrc="", config_extra=INDEX, extra_env=ENV_CREDS) as world:
        world.start("-v")
        yield world


def test_client_sending_a_malformed_request_gets_400_and_others_are_served(served):
    with socket.create_connection(("127.0.0.1", served.proxy.port), timeout=10) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\x00\x01\r\n\r\n")
        answer = sock.recv(65536).decode("latin-1")
    assert answer.startswith("HTTP/1.1 400"), answer
    normal_request_succeeds(served)


def test_client_disconnecting_mid_download_is_logged_and_others_are_served(served):
    context = served.context
    raw = socket.create_connection(("127.0.0.1", served.proxy.port), timeout=10)
    auth = "".join(f"{k}: {v}\r\n" for k, v in served.proxy.auth_headers().items())
    raw.sendall(f"CONNECT pkgs.test:{served.port} HTTP/1.1\r\nHost: pkgs.test:{served.port}\r\n{auth}\r\n".encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    tls = context.wrap_socket(raw, server_hostname="pkgs.test")
    tls.sendall(f"GET /big?n={200 << 20}&delay=0.01 HTTP/1.1\r\nHost: pkgs.test:{served.port}\r\n\r\n".encode())
    received = 0
    while received < (256 << 10):
        chunk = tls.recv(65536)
        assert chunk
        received += len(chunk)
    tls.close()  # gone mid-download
    normal_request_succeeds(served)
    assert wait_for(lambda: "/big?n=" in served.proxy.stderr(), timeout=15)
    line = next(line for line in served.proxy.stderr().splitlines() if "/big?n=" in line)
    assert "error=" in line and "disconnect" in line.lower(), line


@pytest.mark.parametrize("path, words", [("/reset", ("reset", "closed")), ("/garbage", ("invalid", "malformed", "bad"))],
                         ids=["resets", "answers-garbage"])
def test_upstream_fault_is_a_502_that_says_why_and_others_are_served(served, path, words):
    reply = served.get("pkgs.test", path, timeout=15)
    assert reply.status == 502, (reply.status, reply.text)
    assert any(w in reply.text.lower() for w in words), reply.text
    normal_request_succeeds(served)


def test_stalled_upstream_does_not_hold_up_other_requests(served):
    import threading

    outcome: dict = {}

    def stalled() -> None:
        try:
            outcome["reply"] = served.get("pkgs.test", "/stall?s=20", timeout=3)
        except (TimeoutError, socket.timeout, ssl.SSLError, OSError) as e:
            outcome["error"] = e

    started = time.monotonic()
    thread = threading.Thread(target=stalled)
    thread.start()
    time.sleep(0.5)
    normal_request_succeeds(served)  # while the other one is stuck upstream
    thread.join(10)
    assert "error" in outcome, "the client's own timeout bounds a stalled upstream"
    assert time.monotonic() - started < 10
    normal_request_succeeds(served)


# --- start-up --------------------------------------------------------------------------


def test_port_in_use_names_the_port_and_how_to_choose_another(tmp_path):
    with World(tmp_path, config_extra=INDEX, extra_env=ENV_CREDS) as world:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            env = {k: v for k, v in world.env.items() if k != "CREDPROXY_TEST_RESOLVE"}  # its notice is a 2nd line
            result = world.cli("serve", "--port", str(port), timeout=30, env=env)
        assert result.returncode != 0
        assert f"port {port}" in result.stderr and "--port" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        world.start()
        normal_request_succeeds(world)


def test_unwritable_save_flows_file_is_a_one_line_start_up_error(tmp_path):
    with World(tmp_path, config_extra=INDEX, extra_env=ENV_CREDS) as world:
        env = {k: v for k, v in world.env.items() if k != "CREDPROXY_TEST_RESOLVE"}
        missing = tmp_path / "no-such-dir" / "flows.mitm"
        result = world.cli("serve", "--port", "0", "--save-flows", str(missing), timeout=30, env=env)
        assert result.returncode == 2
        assert result.stderr.strip() == f"credproxy: error: cannot write {missing}: No such file or directory"
        world.start("--save-flows", str(tmp_path / "flows.mitm"))
        normal_request_succeeds(world)
