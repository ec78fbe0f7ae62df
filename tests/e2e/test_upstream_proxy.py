"""Issue 11: `credproxy serve` behind a company proxy. A real authenticating CONNECT proxy on
127.0.0.1 (tests/helpers/company_proxy.py) sits between credproxy and the registries; real
pip, uv and curl go through credproxy, which chains to it."""

from __future__ import annotations

import base64
import subprocess
import time
from urllib.parse import quote

import pytest

from credproxy.credentials.model import secret_forms
from tests.e2e.test_proxy_clients import (
    client_bundle, proxy_environment, run_client, write_netrc,
)
from tests.helpers.clients import client_env, curl, installed, pip_install, uv_pip_install
from tests.helpers.company_proxy import CompanyProxy, PlainOrigin
from tests.helpers.loopback import read_head
from tests.helpers.proxy import credproxy_cmd, start_credproxy
from tests.helpers.servers import TEST_HOSTS

pytestmark = pytest.mark.e2e

PROXY_USER = "corp\\alice"
# URL-special characters: the proxy URL must be percent-decoded, the password never shown
PROXY_PASSWORD = "c0rp-Pr0xy:p@ss/%w0rd"
PROXY_CREDS = (PROXY_USER, PROXY_PASSWORD)
RESOLVE = ",".join(f"{n}=127.0.0.1" for n in TEST_HOSTS + ("proxy.test",))


@pytest.fixture
def company():
    proxy = CompanyProxy.start(PROXY_CREDS)
    yield proxy
    proxy.stop()


def chained_env(tmp_path, tls_certs, index, company, *, creds=PROXY_CREDS, **extra) -> dict[str, str]:
    """credproxy's environment: the index credential in netrc, the company proxy in
    HTTPS_PROXY/HTTP_PROXY (with `creds` in the URL), test names resolved."""
    env = proxy_environment(tmp_path, tls_certs, CREDPROXY_TEST_RESOLVE=RESOLVE)
    write_netrc(env, f"machine pkgs.test login {index.username} password {index.password}\n")
    url = company.url_with(creds)
    env.update({"HTTPS_PROXY": url, "HTTP_PROXY": url})
    env.update(extra)
    return env


def start(tmp_path, env, *args, name="credproxy"):
    return start_credproxy(tmp_path, *args, env=env, name=name)


def fetch_private(tmp_path, proxy, tls_certs, private_index):
    """curl the private index's project page through the running proxy: (client env,
    curl's result, body, status)."""
    cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
    result = curl("-sS", "-o", "-", "-w", "\n%{http_code}", private_index.url + "private-pkg/", env=cenv)
    body, _, status = result.stdout.rpartition("\n")
    return cenv, result, body, status


def proxy_secret_forms() -> list[str]:
    forms = set(secret_forms(PROXY_PASSWORD, PROXY_USER))
    forms.add(quote(PROXY_PASSWORD, safe=""))
    forms.add(base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode())
    return sorted(forms)


def assert_no_proxy_password(*texts: str) -> None:
    for text in texts:
        for form in proxy_secret_forms():
            assert form not in text, f"proxy password form {form!r} leaked"


def install(client, tmp_path, index, cenv):
    n = len(list(tmp_path.glob(f"{client}-target-*")))
    if client == "pip":
        return pip_install(tmp_path / f"pip-target-{n}", "--index-url", index.url, "--retries", "0",
                           "private-pkg", env=cenv, timeout=120)
    return uv_pip_install(tmp_path / f"uv-target-{n}", "--index-url", index.url, "private-pkg",
                          env=cenv, timeout=120)


# --- the acceptance path -------------------------------------------------------------------------


def test_pip_and_uv_install_through_credproxy_chained_to_an_authenticating_company_proxy(
        tmp_path, private_index, tls_certs, company):
    env = chained_env(tmp_path, tls_certs, private_index, company)
    proxy = start(tmp_path, env)
    try:
        cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
        outputs = []
        for client in ("pip", "uv"):
            private_index.reset()
            company.reset()
            result = install(client, tmp_path, private_index, cenv)
            outputs.append(result.stdout + result.stderr)
            assert result.returncode == 0, f"{client}:\n{result.stdout}\n{result.stderr}\n{proxy.stderr()}"
            target = sorted(tmp_path.glob(f"{client}-target-*"))[-1]
            assert installed(target) == {"private-pkg": "1.0", "private-dep": "1.0"}
            # every tunnel to the index went through the company proxy, with its login
            tunnels = company.connects("pkgs.test")
            assert tunnels, company.records
            assert {r.auth for r in tunnels} == {"ok"}, tunnels
            assert all(r.target == f"pkgs.test:{private_index.port}" for r in tunnels)
            # the registry credential is credproxy's business, never the company proxy's
            assert all("Authorization" not in r.header_names for r in tunnels)
            assert private_index.count(200, auth=True) >= 1
            assert private_index.count(auth=False) == 0
    finally:
        proxy.stop()
    assert_no_proxy_password(proxy.stdout(), proxy.stderr(), *outputs)


def test_a_passthrough_host_also_goes_through_the_chain(tmp_path, private_index, tls_certs, company, echo_server):
    env = chained_env(tmp_path, tls_certs, private_index, company)
    proxy = start(tmp_path, env, "-v")
    try:
        # other.test has no credential source: credproxy relays its TLS untouched
        cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=tls_certs.ca_pem)
        result = curl("-sS", "-f", echo_server.url, env=cenv)
        assert result.returncode == 0, result.stderr + proxy.stderr()
        assert '"authorization": false' in result.stdout
        tunnels = company.connects("other.test")
        assert [(r.target, r.auth) for r in tunnels] == [(f"other.test:{echo_server.port}", "ok")]
        # the request log writes a tunnel's line when the client has gone
        deadline = time.monotonic() + 10
        while "passthrough" not in proxy.stderr() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "passthrough" in proxy.stderr()
    finally:
        proxy.stop()
    assert_no_proxy_password(proxy.stdout(), proxy.stderr())


def test_plain_http_goes_through_the_chain_and_the_proxy_login_stays_with_the_proxy(
        tmp_path, private_index, tls_certs, company):
    origin = PlainOrigin.start()
    try:
        env = chained_env(tmp_path, tls_certs, private_index, company)
        proxy = start(tmp_path, env)
        try:
            cenv = client_env(tmp_path, proxy_url=proxy.url)
            result = curl("-sS", "-f", f"http://other.test:{origin.port}/hello", env=cenv)
            assert result.returncode == 0, result.stderr + proxy.stderr()
            assert "plain origin says hello" in result.stdout
        finally:
            proxy.stop()
        assert [(r.method, r.auth) for r in company.records] == [("CONNECT", "ok")]
        assert company.records[0].target == f"other.test:{origin.port}"
        (request,) = origin.requests
        names = {n.lower() for n, _ in request.headers}
        assert not any(n.startswith("proxy-") for n in names), request.headers
        assert_no_proxy_password(repr(request.headers), proxy.stderr())
    finally:
        origin.stop()


def test_no_proxy_naming_the_index_sends_it_direct(tmp_path, private_index, tls_certs, company):
    env = chained_env(tmp_path, tls_certs, private_index, company, NO_PROXY="localhost,pkgs.test")
    proxy = start(tmp_path, env)
    try:
        cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
        result = install("pip", tmp_path, private_index, cenv)
        assert result.returncode == 0, result.stderr + proxy.stderr()
        assert private_index.count(200, auth=True) >= 1
    finally:
        proxy.stop()
    assert company.connects("pkgs.test") == []
    assert company.records == []


def test_a_wrong_proxy_password_is_reported_as_the_company_proxy_refusing(
        tmp_path, private_index, tls_certs, company):
    wrong = (PROXY_USER, PROXY_PASSWORD + "-old")
    env = chained_env(tmp_path, tls_certs, private_index, company, creds=wrong)
    proxy = start(tmp_path, env)
    try:
        cenv, result, body, status = fetch_private(tmp_path, proxy, tls_certs, private_index)
        pip = install("pip", tmp_path, private_index, cenv)
    finally:
        proxy.stop()
    # the client: a 502 that says the company proxy refused the login, and the fix
    assert status == "502", result.stdout + result.stderr
    assert "company proxy" in body and "407" in body and "not pkgs.test" in body
    assert "correct the password in the proxy URL (from HTTPS_PROXY)" in body
    assert f"{PROXY_USER}:****@127.0.0.1:{company.port}" in body
    assert pip.returncode != 0
    # the log: one warning naming the proxy (redacted) and the fix
    log = proxy.stderr()
    assert f"the company proxy http://{PROXY_USER}:****@127.0.0.1:{company.port}" in log
    assert "407 Proxy Authentication Required" in log and "Fix:" in log
    # the company proxy saw our wrong login; the registry saw nothing at all
    assert company.connects("pkgs.test") and {r.auth for r in company.connects("pkgs.test")} == {"wrong"}
    assert private_index.requests() == []
    assert_no_proxy_password(result.stdout, result.stderr, pip.stdout, pip.stderr, proxy.stdout(), log)
    for form in secret_forms(wrong[1], wrong[0]):
        assert form not in log + body + pip.stdout + pip.stderr


def test_no_login_for_a_proxy_that_demands_one_says_how_to_give_it(
        tmp_path, private_index, tls_certs, company):
    env = chained_env(tmp_path, tls_certs, private_index, company, creds=None)
    proxy = start(tmp_path, env)
    try:
        _cenv, result, body, status = fetch_private(tmp_path, proxy, tls_certs, private_index)
    finally:
        proxy.stop()
    assert status == "502"
    assert "demands a login" in body and "credproxy auth login https://127.0.0.1:" in body
    assert {r.auth for r in company.connects("pkgs.test")} == {"missing"}


def test_the_proxy_login_can_come_from_netrc_for_the_proxy_host(tmp_path, private_index, tls_certs):
    company = CompanyProxy.start(("alice", PROXY_PASSWORD))  # netrc has no `\` escapes
    env = chained_env(tmp_path, tls_certs, private_index, company, creds=None)
    env["HTTPS_PROXY"] = env["HTTP_PROXY"] = f"http://proxy.test:{company.port}"
    write_netrc(env, f"machine pkgs.test login {private_index.username} password {private_index.password}\n"
                     f"machine proxy.test login alice password {PROXY_PASSWORD}\n")
    proxy = start(tmp_path, env, "-v")
    try:
        cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
        result = install("uv", tmp_path, private_index, cenv)
        assert result.returncode == 0, result.stderr + proxy.stderr()
    finally:
        proxy.stop()
        company.stop()
    assert {r.auth for r in company.connects("pkgs.test")} == {"ok"}
    assert "company proxy http://proxy.test:" in proxy.stderr() and "alice:**** from netrc" in proxy.stderr()
    assert_no_proxy_password(proxy.stdout(), proxy.stderr(), result.stdout, result.stderr)


def test_proxy_variable_pointing_at_credproxy_is_ignored_for_the_previous_value(
        tmp_path, private_index, tls_certs, company):
    """After `eval "$(credproxy env)"`, HTTPS_PROXY points at credproxy itself; `serve` started
    from that shell uses the value `credproxy env` replaced (CREDPROXY_PREVIOUS_HTTPS_PROXY)."""
    env = chained_env(tmp_path, tls_certs, private_index, company)
    env["CREDPROXY_PREVIOUS_HTTPS_PROXY"] = env["HTTPS_PROXY"]
    env.pop("HTTP_PROXY")
    env["HTTPS_PROXY"] = "http://127.0.0.1:8899"  # what `credproxy env` exports
    proxy = start(tmp_path, env)
    try:
        cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
        result = install("pip", tmp_path, private_index, cenv)
        assert result.returncode == 0, result.stderr + proxy.stderr()
    finally:
        proxy.stop()
    assert {r.auth for r in company.connects("pkgs.test")} == {"ok"}
    log = proxy.stderr()
    assert "credproxy: warning: ignored HTTPS_PROXY=http://127.0.0.1:8899: it points at credproxy itself" in log
    assert "using CREDPROXY_PREVIOUS_HTTPS_PROXY" in log
    assert_no_proxy_password(log)


def test_no_upstream_proxy_flag_overrides_the_environment(tmp_path, private_index, tls_certs, company):
    env = chained_env(tmp_path, tls_certs, private_index, company)
    proxy = start(tmp_path, env, "--no-upstream-proxy")
    try:
        cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
        result = run_client("curl", tmp_path, private_index, cenv)
        assert result.returncode == 0 and result.stdout.strip() == "200", result.stderr
    finally:
        proxy.stop()
    assert company.records == []


def test_upstream_proxy_flag_overrides_the_environment(tmp_path, private_index, tls_certs, company):
    other = CompanyProxy.start(("flag-user", "flag-pass"))
    try:
        env = chained_env(tmp_path, tls_certs, private_index, company)
        proxy = start(tmp_path, env, "--upstream-proxy", other.url_with(("flag-user", "flag-pass")))
        try:
            cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
            result = run_client("curl", tmp_path, private_index, cenv)
            assert result.returncode == 0 and result.stdout.strip() == "200", result.stderr + proxy.stderr()
        finally:
            proxy.stop()
        assert company.records == []
        assert {r.auth for r in other.connects("pkgs.test")} == {"ok"}
        assert "flag-pass" not in proxy.stderr()
    finally:
        other.stop()


def test_saved_flows_hold_no_proxy_password(tmp_path, private_index, tls_certs, company):
    env = chained_env(tmp_path, tls_certs, private_index, company)
    flows = tmp_path / "flows.mitm"
    proxy = start(tmp_path, env, "--save-flows", str(flows), "-vv")
    try:
        cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
        result = run_client("curl", tmp_path, private_index, cenv)
        assert result.returncode == 0, result.stderr
    finally:
        proxy.stop()
    assert {r.auth for r in company.connects("pkgs.test")} == {"ok"}  # the password was in use
    data = flows.read_bytes()
    assert data, "no flow saved"
    for form in proxy_secret_forms():
        assert form.encode() not in data
    assert_no_proxy_password(proxy.stdout(), proxy.stderr())


# --- explain and doctor -----------------------------------------------------------------------------


def cli(tmp_path, env, *args, timeout=60):
    return subprocess.run(credproxy_cmd(*args), env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=tmp_path)


def test_explain_says_via_which_proxy_and_why(tmp_path, private_index, tls_certs, company):
    env = chained_env(tmp_path, tls_certs, private_index, company)
    out = cli(tmp_path, env, "explain", private_index.url)
    assert out.returncode == 0, out.stderr
    assert f"via http://{PROXY_USER}:****@127.0.0.1:{company.port} (from HTTPS_PROXY)" in out.stdout
    assert "proxy login:" in out.stdout and "from the proxy URL" in out.stdout
    env["NO_PROXY"] = ".test"
    out = cli(tmp_path, env, "explain", private_index.url)
    assert "direct (NO_PROXY entry '.test' matches)" in out.stdout
    env.pop("NO_PROXY")
    env["CREDPROXY_PREVIOUS_HTTPS_PROXY"] = env["HTTPS_PROXY"]
    env["HTTPS_PROXY"] = "http://127.0.0.1:8899"
    out = cli(tmp_path, env, "explain", private_index.url)
    assert "CREDPROXY_PREVIOUS_HTTPS_PROXY (HTTPS_PROXY points at credproxy itself)" in out.stdout
    assert "ignored HTTPS_PROXY=http://127.0.0.1:8899" in out.stdout
    assert_no_proxy_password(out.stdout, out.stderr)


def test_doctor_probes_whether_the_company_proxy_demands_and_accepts_our_login(
        tmp_path, private_index, tls_certs, company):
    env = chained_env(tmp_path, tls_certs, private_index, company)
    out = cli(tmp_path, env, "doctor", private_index.url)
    text = out.stdout + out.stderr
    assert "demands a login (407, Basic)" in text, text
    assert "accepted credproxy's login" in text
    assert_no_proxy_password(text)
    wrong = chained_env(tmp_path, tls_certs, private_index, company, creds=(PROXY_USER, "nope"))
    out = cli(tmp_path, wrong, "doctor", private_index.url)
    text = out.stdout + out.stderr
    assert out.returncode == 1
    assert "refused credproxy's login" in text and "correct the password in the proxy URL" in text
    assert_no_proxy_password(text)
    assert "nope" not in text


def test_plain_http_with_a_wrong_proxy_password_is_logged_as_the_company_proxy_refusing(
        tmp_path, private_index, tls_certs, company):
    origin = PlainOrigin.start()
    try:
        env = chained_env(tmp_path, tls_certs, private_index, company, creds=(PROXY_USER, "wrong-pw"))
        proxy = start(tmp_path, env)
        try:
            cenv = client_env(tmp_path, proxy_url=proxy.url)
            result = curl("-sS", "-o", "-", "-w", "\n%{http_code}", f"http://other.test:{origin.port}/", env=cenv)
        finally:
            proxy.stop()
        body, _, status = result.stdout.rpartition("\n")
        assert status == "502"
        assert "407" in body
        assert origin.requests == []
        log = proxy.stderr()
        assert f"the company proxy http://{PROXY_USER}:****@127.0.0.1:{company.port}" in log
        assert "correct the password in the proxy URL" in log
        assert "wrong-pw" not in log + body
    finally:
        origin.stop()


def _raw_connect(port: int, target: str, headers: dict[str, str], then: bytes = b"") -> bytes:
    """CONNECT by hand; with `then`, send it into the tunnel and read what comes back."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{extra}\r\n".encode())
        head = read_head(sock, chunk=4096)
        if then and head.startswith(b"HTTP/1.1 200"):
            sock.sendall(then)
            try:
                head += sock.recv(4096)
            except OSError:
                pass
    return head


def test_a_stranger_cannot_use_the_chain_or_the_proxy_login(tmp_path, private_index, tls_certs, company):
    """A CONNECT without the owner's proxy token is refused before anything reaches the
    company proxy: nobody else rides on the user's proxy login."""
    env = chained_env(tmp_path, tls_certs, private_index, company)
    proxy = start(tmp_path, env)
    try:
        target = f"pkgs.test:{private_index.port}"
        head = _raw_connect(proxy.port, target, {})
        assert head.startswith(b"HTTP/1.1 407"), head
        assert company.records == []
        owner = proxy.auth_headers()
        assert owner, "the proxy must require its owner's token"
        # the tunnel to the company proxy opens when the client speaks through it (as in
        # mitmproxy's upstream mode)
        head = _raw_connect(proxy.port, target, owner, then=f"GET / HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        assert head.startswith(b"HTTP/1.1 200"), head
    finally:
        proxy.stop()
    assert [r.auth for r in company.connects("pkgs.test")] == ["ok"]
    assert_no_proxy_password(proxy.stderr())


# --- Negotiate / NTLM (the `negotiate` extra) ----------------------------------------------------


NTLM_PASSWORD = "ntlm-Pa55/%w0rd@x"  # pyspnego's user file cannot hold a `:` in a password


@pytest.fixture
def ntlm_company(tmp_path, monkeypatch):
    """A company proxy that accepts Negotiate/NTLM only (pyspnego's acceptor, a test user file)."""
    pytest.importorskip("spnego", reason="the `negotiate` extra (pyspnego) is not installed: "
                                         "pip install 'credproxy[negotiate]'")
    users = tmp_path / "ntlm-users"
    users.write_text("CORP:alice:" + NTLM_PASSWORD + "\n")
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    proxy = CompanyProxy.start(negotiate=True)
    yield proxy
    proxy.stop()


def test_negotiate_ntlm_login_to_a_company_proxy_that_refuses_basic(tmp_path, private_index, tls_certs, ntlm_company):
    env = chained_env(tmp_path, tls_certs, private_index, ntlm_company, creds=("CORP\\alice", NTLM_PASSWORD))
    proxy = start(tmp_path, env, "-v")
    try:
        cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
        for client in ("pip", "uv"):
            result = install(client, tmp_path, private_index, cenv)
            assert result.returncode == 0, result.stderr + proxy.stderr()
    finally:
        proxy.stop()
    records = ntlm_company.connects("pkgs.test")
    opened = [r for r in records if r.auth == "ok"]
    assert opened and all(r.auth_scheme == "Negotiate" and r.status == 200 for r in opened), records
    # after the first refusal of Basic, the proxy never again sees the password in Basic form
    basic = [r for r in records if r.auth_scheme == "Basic"]
    assert len(basic) <= 1, records
    assert not any(r.auth == "wrong" and r.auth_scheme != "Basic" for r in records), records
    for form in secret_forms(NTLM_PASSWORD, "CORP\\alice") + [quote(NTLM_PASSWORD, safe="")]:
        assert form not in proxy.stdout() + proxy.stderr()


def test_a_wrong_password_for_a_negotiate_proxy_is_reported(tmp_path, private_index, tls_certs, ntlm_company):
    env = chained_env(tmp_path, tls_certs, private_index, ntlm_company, creds=("CORP\\alice", "not-it"))
    proxy = start(tmp_path, env)
    try:
        _cenv, result, body, status = fetch_private(tmp_path, proxy, tls_certs, private_index)
    finally:
        proxy.stop()
    assert status == "502", result.stdout + result.stderr
    assert "It rejected the Negotiate login credproxy sent (from the proxy URL)" in body, body
    assert "correct the password in the proxy URL" in body
    assert any(r.auth == "wrong" for r in ntlm_company.connects("pkgs.test"))
    assert private_index.requests() == []
    assert "not-it" not in body + proxy.stderr()


def test_a_proxy_login_added_to_netrc_while_serve_runs_is_used(tmp_path, private_index, tls_certs):
    """The first install is refused by the company proxy (no login anywhere); the user adds
    `machine proxy.test` to ~/.netrc; the running proxy reloads it and the next install goes
    through, without a restart (the chain asks the new resolver, and a login it never found is
    asked for again)."""
    company = CompanyProxy.start(("alice", PROXY_PASSWORD))
    env = chained_env(tmp_path, tls_certs, private_index, company, creds=None)
    env["HTTPS_PROXY"] = env["HTTP_PROXY"] = f"http://proxy.test:{company.port}"
    index_line = f"machine pkgs.test login {private_index.username} password {private_index.password}\n"
    write_netrc(env, index_line)
    proxy = start(tmp_path, env, "-v")
    try:
        cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
        assert install("pip", tmp_path, private_index, cenv).returncode != 0
        assert {r.auth for r in company.connects("pkgs.test")} == {"missing"}
        write_netrc(env, index_line + f"machine proxy.test login alice password {PROXY_PASSWORD}\n")
        deadline = time.monotonic() + 15
        while "reloaded" not in proxy.stderr() and time.monotonic() < deadline:
            time.sleep(0.1)
        result = install("pip", tmp_path, private_index, cenv)
        assert result.returncode == 0, result.stderr + proxy.stderr()
    finally:
        proxy.stop()
        company.stop()
    assert "ok" in {r.auth for r in company.connects("pkgs.test")}
    assert_no_proxy_password(proxy.stdout(), proxy.stderr(), result.stdout, result.stderr)
