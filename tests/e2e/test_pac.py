"""Issue 11 point 3: `--upstream-proxy pac+…` chooses the company proxy per host with a PAC file
(credproxy/pac.py). A real authenticating company proxy on 127.0.0.1 logs every CONNECT; real
curl goes through a real `credproxy serve`; the company proxy's login comes from ~/.netrc."""

from __future__ import annotations

import threading
import time

import pytest

from credproxy.pac import EVAL_TIMEOUT

from tests.e2e.test_proxy_clients import client_bundle, proxy_environment, write_netrc
from tests.e2e.test_upstream_proxy import PROXY_PASSWORD, RESOLVE, cli, install, proxy_secret_forms
from tests.helpers.clients import client_env, curl, installed
from tests.helpers.company_proxy import CompanyProxy
from tests.helpers.loopback import LoopbackServer, canned_handler
from tests.helpers.proxy import start_credproxy

pytest.importorskip("pypac", reason="the `pac` extra (make test installs it)")
pytestmark = pytest.mark.e2e

PROXY_USER = "alice"  # netrc has no `\\` escapes


@pytest.fixture
def company():
    proxy = CompanyProxy.start((PROXY_USER, PROXY_PASSWORD))
    yield proxy
    proxy.stop()


def assert_no_proxy_password(*texts: str) -> None:
    for text in texts:
        for form in proxy_secret_forms():
            if PROXY_USER not in form or ":" in form or len(form) > len(PROXY_USER):
                assert form not in text, f"proxy password form {form!r} leaked"
        assert PROXY_PASSWORD not in text


def pac_script(via_host: str, port: int) -> str:
    return ("function FindProxyForURL(url, host) {\n"
            f"  if (host == \"{via_host}\") return \"PROXY proxy.test:{port}; DIRECT\";\n"
            "  if (host == \"boom.test\") throw new Error(\"broken rule\");\n"
            "  return \"DIRECT\";\n}\n")


def pac_env(tmp_path, tls_certs, index) -> dict[str, str]:
    """The index login and the company proxy's login in netrc; no HTTPS_PROXY."""
    env = proxy_environment(tmp_path, tls_certs, CREDPROXY_TEST_RESOLVE=RESOLVE)
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(name, None)
    write_netrc(env, f"machine pkgs.test login {index.username} password {index.password}\n"
                     f"machine proxy.test login {PROXY_USER} password {PROXY_PASSWORD}\n")
    return env


def fetch_both(tmp_path, proxy, tls_certs, index, echo_server):
    cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
    a = curl("-sS", "-f", "-o", "/dev/null", index.url, env=cenv)
    b = curl("-sS", "-f", echo_server.url, env=cenv)
    return a, b


def test_a_pac_file_sends_one_host_through_the_company_proxy_and_the_other_direct(
        tmp_path, private_index, tls_certs, company, echo_server):
    pac = tmp_path / "proxy.pac"
    pac.write_text(pac_script("pkgs.test", company.port))
    env = pac_env(tmp_path, tls_certs, private_index)
    proxy = start_credproxy(tmp_path, "-v", "--upstream-proxy", f"pac+file://{pac}", env=env)
    try:
        a, b = fetch_both(tmp_path, proxy, tls_certs, private_index, echo_server)
        assert a.returncode == 0, a.stderr + proxy.stderr()
        assert b.returncode == 0, b.stderr + proxy.stderr()
        # pkgs.test went through the company proxy, logged in from netrc; other.test did not
        assert {r.auth for r in company.connects("pkgs.test")} == {"ok"}, company.records
        assert company.connects("other.test") == []
        # and real pip, through the same PAC choice
        company.reset()
        cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
        result = install("pip", tmp_path, private_index, cenv)
        assert result.returncode == 0, result.stdout + result.stderr + proxy.stderr()
        assert installed(sorted(tmp_path.glob("pip-target-*"))[-1]) == {"private-pkg": "1.0", "private-dep": "1.0"}
        assert company.connects("pkgs.test") and {r.auth for r in company.connects("pkgs.test")} == {"ok"}
    finally:
        proxy.stop()
    assert f"chosen per host by the PAC file file://{pac}" in proxy.stderr()
    assert "alice:**** from netrc" in proxy.stderr()
    assert_no_proxy_password(proxy.stdout(), proxy.stderr(), a.stderr, b.stdout, b.stderr, result.stdout, result.stderr)
    # explain says the same, by the same code path
    config = tmp_path / "credproxy.toml"
    config.write_text(f'upstream-proxy = "pac+file://{pac}"\n')
    out = cli(tmp_path, env, "explain", private_index.url, "--config", str(config))
    assert out.returncode == 0, out.stderr
    assert (f"via http://proxy.test:{company.port} (PAC file file://{pac}, rule result "
            f"'PROXY proxy.test:{company.port}; DIRECT')") in out.stdout
    out2 = cli(tmp_path, env, "explain", echo_server.url, "--config", str(config))
    assert "direct (PAC said DIRECT" in out2.stdout, out2.stdout + out2.stderr
    assert_no_proxy_password(out.stdout, out.stderr, out2.stdout, out2.stderr)


@pytest.fixture
def pac_server(company):
    """The PAC file over http from 127.0.0.1: other.test through the company proxy."""
    body = pac_script("other.test", company.port).encode()
    with LoopbackServer(canned_handler(200, body, "application/x-ns-proxy-autoconfig")) as server:
        yield server.url("/proxy.pac")


def test_a_pac_file_served_over_http_is_fetched_once_and_honoured(
        tmp_path, private_index, tls_certs, company, echo_server, pac_server):
    env = pac_env(tmp_path, tls_certs, private_index)
    proxy = start_credproxy(tmp_path, "--upstream-proxy", f"pac+{pac_server}", env=env)
    try:
        a, b = fetch_both(tmp_path, proxy, tls_certs, private_index, echo_server)
        assert a.returncode == 0, a.stderr + proxy.stderr()
        assert b.returncode == 0, b.stderr + proxy.stderr()
        assert company.connects("pkgs.test") == []
        assert [r.auth for r in company.connects("other.test")] == ["ok"], company.records
    finally:
        proxy.stop()
    assert_no_proxy_password(proxy.stdout(), proxy.stderr())


def test_a_pac_script_that_throws_goes_direct_with_a_warning(tmp_path, private_index, tls_certs, company):
    pac = tmp_path / "proxy.pac"
    pac.write_text(pac_script("pkgs.test", company.port).replace('host == "boom.test"', "true"))
    env = pac_env(tmp_path, tls_certs, private_index)
    proxy = start_credproxy(tmp_path, "--upstream-proxy", f"pac+file://{pac}", env=env)
    try:
        cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
        a = curl("-sS", "-f", "-o", "/dev/null", private_index.url, env=cenv)
        assert a.returncode == 0, a.stderr + proxy.stderr()
        assert company.records == []
    finally:
        proxy.stop()
    assert "broken rule" in proxy.stderr() and "going DIRECT" in proxy.stderr()


def test_a_missing_pac_file_is_a_start_up_error_that_names_the_fix(tmp_path, private_index, tls_certs):
    env = pac_env(tmp_path, tls_certs, private_index)
    out = cli(tmp_path, env, "serve", "--port", "0", "--upstream-proxy", f"pac+file://{tmp_path}/nope.pac",
              timeout=60)
    assert out.returncode != 0
    assert "cannot read the PAC file" in out.stderr and "Fix: correct the path" in out.stderr, out.stderr


def test_a_pac_script_that_hangs_is_cut_off_and_goes_direct_while_other_hosts_are_served(
        tmp_path, private_index, tls_certs, company, echo_server):
    pac = tmp_path / "proxy.pac"
    pac.write_text("function FindProxyForURL(url, host) {\n"
                   "  if (host == \"pkgs.test\") { while (true) {} }\n"
                   f"  return \"PROXY proxy.test:{company.port}\";\n}}\n")
    env = pac_env(tmp_path, tls_certs, private_index)
    proxy = start_credproxy(tmp_path, "--upstream-proxy", f"pac+file://{pac}", env=env)
    try:
        cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
        results = {}

        def fetch_index():
            results["index"] = curl("-sS", "-f", "-o", "/dev/null", private_index.url, env=cenv)

        t = threading.Thread(target=fetch_index)
        t.start()
        time.sleep(0.5)  # the index's evaluation is now hanging in its worker
        started = time.monotonic()
        other = curl("-sS", "-f", echo_server.url, env=cenv)
        other_took = time.monotonic() - started
        t.join(60)
        assert other.returncode == 0, other.stderr + proxy.stderr()
        assert other_took < EVAL_TIMEOUT, "a hanging PAC evaluation stalled another host"
        assert results["index"].returncode == 0, results["index"].stderr + proxy.stderr()
        assert company.connects("pkgs.test") == []  # DIRECT after the time limit
        assert [r.auth for r in company.connects("other.test")] == ["ok"]
    finally:
        proxy.stop()
    assert f"did not answer within {EVAL_TIMEOUT:g} s; going DIRECT" in proxy.stderr()


def test_without_the_pac_extra_a_pac_value_is_a_start_up_error_naming_the_install(tmp_path, private_index, tls_certs):
    # pypac not importable, as on a machine without the extra: a package of that name that fails to import
    shadow = tmp_path / "no-pypac"
    (shadow / "pypac").mkdir(parents=True)
    (shadow / "pypac" / "__init__.py").write_text("raise ImportError('No module named pypac')\n")
    env = pac_env(tmp_path, tls_certs, private_index)
    env["PYTHONPATH"] = str(shadow)
    out = cli(tmp_path, env, "serve", "--port", "0", "--upstream-proxy", "pac+https://wpad.corp.example/proxy.pac")
    assert out.returncode != 0
    assert "pip install 'credproxy[pac]'" in out.stderr, out.stderr
