"""PAC fall-through: `PROXY a:1; PROXY b:2; DIRECT` is a list, tried in order as browsers do.

A real `credproxy serve` with a PAC file; "dead" proxies are closed ports (or a listener that
never accepts) on 127.0.0.1; the live one is the authenticating company proxy of
tests/helpers/company_proxy.py, its login in ~/.netrc. Real curl and pip are the clients."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.e2e.test_pac import PROXY_USER, assert_no_proxy_password, pac_env
from tests.e2e.test_proxy_clients import client_bundle, write_netrc
from tests.e2e.test_upstream_proxy import PROXY_PASSWORD, cli, install
from tests.helpers.clients import client_env, curl, installed, pip_install
from tests.helpers.company_proxy import CompanyProxy, PlainOrigin
from tests.helpers.proxy import start_credproxy

pytest.importorskip("pypac", reason="the `pac` extra (make test installs it)")
pytestmark = pytest.mark.e2e


@pytest.fixture
def company():
    proxy = CompanyProxy.start((PROXY_USER, PROXY_PASSWORD))
    yield proxy
    proxy.stop()


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound, then closed: connecting is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_pac(tmp_path, answer: str) -> str:
    pac = tmp_path / "proxy.pac"
    pac.write_text("function FindProxyForURL(url, host) {\n"
                   "  if (isPlainHostName(host) || host == \"127.0.0.1\") return \"DIRECT\";\n"
                   f"  return \"{answer}\";\n}}\n")
    return f"pac+file://{pac}"


def cenv_for(tmp_path, proxy, tls_certs):
    return client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))


def status_bad_proxies(env) -> dict:
    """The marks the running proxy wrote to its status file (what explain/doctor read)."""
    from pathlib import Path

    out = {}
    for path in (Path(env["CREDPROXY_DATA_DIR"]) / "status").glob("*.json"):
        out.update(json.loads(path.read_text()).get("bad_proxies") or {})
    return out


def test_a_dead_first_proxy_falls_through_to_the_company_proxy_for_the_same_request(
        tmp_path, private_index, tls_certs, company, echo_server):
    dead = closed_port()
    value = write_pac(tmp_path, f"PROXY 127.0.0.1:{dead}; PROXY proxy.test:{company.port}; DIRECT")
    env = pac_env(tmp_path, tls_certs, private_index)
    proxy = start_credproxy(tmp_path, "--upstream-proxy", value, env=env)
    try:
        cenv = cenv_for(tmp_path, proxy, tls_certs)
        first = curl("-sS", "-f", "-o", "/dev/null", private_index.url, env=cenv)
        assert first.returncode == 0, first.stderr + proxy.stderr()
        # the very request went through the second entry, with the proxy's login from netrc
        assert [(r.target, r.auth) for r in company.connects("pkgs.test")] == \
            [(f"pkgs.test:{private_index.port}", "ok")], company.records
        # real pip, and a passthrough host: the dead proxy is remembered as bad, not tried again
        result = install("pip", tmp_path, private_index, cenv)
        assert result.returncode == 0, result.stdout + result.stderr + proxy.stderr()
        assert installed(sorted(tmp_path.glob("pip-target-*"))[-1]) == {"private-pkg": "1.0", "private-dep": "1.0"}
        other = curl("-sS", "-f", echo_server.url, env=cenv)
        assert other.returncode == 0, other.stderr + proxy.stderr()
        assert company.connects("other.test"), company.records
        assert {r.auth for r in company.connects()} == {"ok"}
        # explain (another process) shows the list and the mark, from the running proxy's status file
        deadline = time.monotonic() + 10
        while not status_bad_proxies(env) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list(status_bad_proxies(env)) == [f"http://127.0.0.1:{dead}"], status_bad_proxies(env)
        config = tmp_path / "credproxy.toml"
        config.write_text(f'upstream-proxy = "{value}"\n')
        out = cli(tmp_path, env, "explain", private_index.url, "--config", str(config))
        status = cli(tmp_path, env, "status")
    finally:
        proxy.stop()
    log = proxy.stderr()
    assert log.count(f"company proxy http://127.0.0.1:{dead} (from the PAC file") == 1, log
    assert "cannot be connected to" in log and f"trying http://proxy.test:{company.port}" in log
    assert f"PAC proxy http://127.0.0.1:{dead} marked bad until" in status.stdout, status.stdout + status.stderr
    assert out.returncode == 0, out.stderr
    assert f"via http://proxy.test:{company.port}" in out.stdout, out.stdout
    assert f"skipped http://127.0.0.1:{dead} (marked bad until" in out.stdout, out.stdout
    assert (f"pac entries:     1. http://127.0.0.1:{dead} (marked bad until") in out.stdout, out.stdout
    assert f"2. http://proxy.test:{company.port}\n" in out.stdout and "3. DIRECT" in out.stdout, out.stdout
    assert_no_proxy_password(proxy.stdout(), log, first.stderr, result.stdout, result.stderr, other.stderr,
                             out.stdout, out.stderr, json.dumps(status_bad_proxies(env)))


def test_only_dead_proxies_then_direct_goes_direct(tmp_path, private_index, tls_certs, company):
    dead1, dead2 = closed_port(), closed_port()
    value = write_pac(tmp_path, f"PROXY 127.0.0.1:{dead1}; PROXY 127.0.0.1:{dead2}; DIRECT")
    env = pac_env(tmp_path, tls_certs, private_index)
    proxy = start_credproxy(tmp_path, "--upstream-proxy", value, env=env)
    try:
        cenv = cenv_for(tmp_path, proxy, tls_certs)
        result = install("pip", tmp_path, private_index, cenv)
        assert result.returncode == 0, result.stdout + result.stderr + proxy.stderr()
        assert private_index.count(200, auth=True) >= 1  # reached directly, with credproxy's login
        deadline = time.monotonic() + 10
        while len(status_bad_proxies(env)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        config = tmp_path / "credproxy.toml"
        config.write_text(f'upstream-proxy = "{value}"\n')
        doctor = cli(tmp_path, env, "doctor", private_index.url, "--config", str(config))
    finally:
        proxy.stop()
    assert company.records == []
    # doctor: the list with the running proxy's marks, then its own connects, and the route that follows
    text = doctor.stdout + doctor.stderr
    assert (f"PAC entries, in order: 1. http://127.0.0.1:{dead1} (marked bad until") in text, text
    assert f"2. http://127.0.0.1:{dead2} (marked bad until" in text and "3. DIRECT" in text, text
    assert "Connection refused" in text
    assert f"{private_index.url}: direct (PAC entry DIRECT" in text, text
    assert "no company proxy" not in text
    log = proxy.stderr()
    # each dead proxy was tried once: after that it is marked bad and DIRECT comes first
    assert log.count(f"company proxy http://127.0.0.1:{dead1} (from the PAC file") == 1, log
    assert log.count(f"company proxy http://127.0.0.1:{dead2} (from the PAC file") == 1, log
    assert "trying DIRECT" in log


def test_only_dead_proxies_and_no_direct_is_a_502_naming_the_proxies_tried(
        tmp_path, private_index, tls_certs, company):
    dead1, dead2 = closed_port(), closed_port()
    value = write_pac(tmp_path, f"PROXY 127.0.0.1:{dead1}; PROXY 127.0.0.1:{dead2}")
    env = pac_env(tmp_path, tls_certs, private_index)
    origin = PlainOrigin.start()
    proxy = start_credproxy(tmp_path, "--upstream-proxy", value, env=env)
    try:
        cenv = cenv_for(tmp_path, proxy, tls_certs)
        https = curl("-sS", "-v", "-o", "/dev/null", "-w", "%{http_connect}", private_index.url, env=cenv)
        plain = curl("-sS", "-o", "-", "-w", "\n%{http_code}", f"http://other.test:{origin.port}/", env=cenv)
        # one retry: pip shows the proxy error in its retry warning
        pip = pip_install(tmp_path / "pip-target", "--index-url", private_index.url, "--retries", "1",
                          "private-pkg", env=cenv, timeout=120)
    finally:
        proxy.stop()
        origin.stop()
    names = f"http://127.0.0.1:{dead1}, http://127.0.0.1:{dead2}"
    # https: the CONNECT is answered 502, its status line names the proxies tried
    assert https.returncode != 0 and https.stdout.strip() == "502", https.stdout + https.stderr
    assert f"502 Bad Gateway: credproxy cannot connect to the company proxy {names}" in https.stderr
    # plain http: the request is answered 502 with the whole message and the fix
    body, _, status = plain.stdout.rpartition("\n")
    assert status == "502", plain.stdout + plain.stderr
    assert f"credproxy could not connect to any company proxy for other.test:{origin.port}" in body
    assert f"http://127.0.0.1:{dead1} (" in body and f"http://127.0.0.1:{dead2} (" in body
    assert "has no DIRECT entry" in body and "Fix:" in body
    # pip shows the status line, naming them too
    assert pip.returncode != 0
    assert "credproxy cannot connect to the company proxy" in pip.stdout + pip.stderr, pip.stdout + pip.stderr
    # nothing went direct, nothing reached the company proxy
    assert private_index.requests() == [] and origin.requests == [] and company.records == []
    assert "could not connect to any company proxy" in proxy.stderr()


def test_a_proxy_that_answers_407_is_not_a_reason_to_fall_through(tmp_path, private_index, tls_certs, company):
    """Only a failed connect moves to the next entry: a proxy that answered (here: a wrong
    login) said something the next entry would not fix; DIRECT is not taken."""
    value = write_pac(tmp_path, f"PROXY proxy.test:{company.port}; DIRECT")
    env = pac_env(tmp_path, tls_certs, private_index)
    write_netrc(env, f"machine pkgs.test login {private_index.username} password {private_index.password}\n"
                     f"machine proxy.test login {PROXY_USER} password wrong-{PROXY_PASSWORD}\n")
    proxy = start_credproxy(tmp_path, "--upstream-proxy", value, env=env)
    try:
        cenv = cenv_for(tmp_path, proxy, tls_certs)
        result = curl("-sS", "-o", "-", "-w", "\n%{http_code}", private_index.url + "private-pkg/", env=cenv)
    finally:
        proxy.stop()
    body, _, status = result.stdout.rpartition("\n")
    assert status == "502", result.stdout + result.stderr
    assert "407" in body and "company proxy" in body
    assert {r.auth for r in company.connects("pkgs.test")} == {"wrong"}
    assert private_index.requests() == []  # not DIRECT
    assert "cannot be connected to" not in proxy.stderr()
    assert_no_proxy_password(proxy.stderr(), body)


@pytest.fixture
def unanswered_listener():
    """A listener on 127.0.0.1 whose accept queue is full: a further connect gets no answer
    (the SYN is dropped), as with a proxy behind a firewall that drops packets."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    port = listener.getsockname()[1]
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.2)
    probe = socket.socket()
    probe.settimeout(1.0)
    try:
        probe.connect(("127.0.0.1", port))
        pytest.fail("the listener still accepts connections; cannot simulate a dropped SYN here")
    except (TimeoutError, socket.timeout):
        pass
    finally:
        probe.close()
    yield port
    for s in fillers:
        s.close()
    listener.close()


def test_a_proxy_that_never_answers_is_given_up_after_the_connect_timeout(
        tmp_path, private_index, tls_certs, company, unanswered_listener):
    value = write_pac(tmp_path, f"PROXY 127.0.0.1:{unanswered_listener}; PROXY proxy.test:{company.port}")
    env = pac_env(tmp_path, tls_certs, private_index)
    env["CREDPROXY_UPSTREAM_PROXY_CONNECT_TIMEOUT"] = "1.5"
    proxy = start_credproxy(tmp_path, "--upstream-proxy", value, env=env)
    try:
        cenv = cenv_for(tmp_path, proxy, tls_certs)
        started = time.monotonic()
        first = curl("-sS", "-f", "-o", "/dev/null", private_index.url, env=cenv)
        first_took = time.monotonic() - started
        started = time.monotonic()
        second = curl("-sS", "-f", "-o", "/dev/null", private_index.url, env=cenv)
        second_took = time.monotonic() - started
    finally:
        proxy.stop()
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr + proxy.stderr()
    assert 1.5 <= first_took < 15, first_took  # paid the connect timeout once...
    assert second_took < 1.5, second_took  # ...and not again: the proxy is marked bad
    assert "no connection within 1.5 s" in proxy.stderr()
    assert {r.auth for r in company.connects("pkgs.test")} == {"ok"}
