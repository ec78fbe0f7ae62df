"""State that crosses a reload: a request that is under way while `credproxy serve` reloads
its settings must not mix what the old settings allowed with the new resolver.

Each test makes the interleaving deterministic against a real `credproxy serve -v` and real
curl: the upstream holds its answer (EchoServer's `/held-any/NAME/`, which holds a 401 too),
the test changes a file, waits for the proxy's "reloaded settings and credentials" line, and
releases the answer.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from credproxy.credentials.model import secret_forms
from tests.e2e.conftest import credproxy_factory, echo_factory, proxied_env, tls_certs  # noqa: F401 (fixtures)
from tests.helpers.clients import curl
from tests.helpers.proxy import proxy_env
from tests.helpers.timing import until

pytestmark = pytest.mark.e2e

SECRET = "dflt-pw-Kq7Rw2"
RELOADED = "reloaded settings and credentials"


def _status(proxied, url: str) -> str:
    r = curl("-o", "/dev/null", "-w", "%{http_code}", url, env=proxied)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _seen(check, what: str, proxy) -> None:
    try:
        until(check, what, within=15.0)
    except BaseException:
        print(f"--- proxy log ---\n{proxy.stderr()}")
        raise


def _no_secret(proxy, secret: str) -> None:
    text = proxy.stderr() + proxy.stdout()
    for form in secret_forms(secret):
        assert form not in text, "a secret leaked into the proxy's output"


def test_a_challenge_answered_after_the_index_was_removed_gets_no_netrc_default_entry(
        tmp_path, tls_certs, echo_factory, credproxy_factory, proxied_env):
    """The netrc `default` entry answers configured indexes only (netrc-default = "indexes").
    A request to an index went out bare; while it was upstream the user removed the index
    from the config. Its 401 came back after the reload: the re-send must be decided by the
    new settings (no index: the default entry does not answer), not by the index the old
    decision carried — before, the new resolver took that stale index and re-sent the
    request with the default entry's credential to a host no configuration names any more."""
    echo = echo_factory(host="other.test", credentials=("dora", SECRET))
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem)
    netrc = Path(env["HOME"]) / ".netrc"
    netrc.write_text(f"default login dora password {SECRET}\n")
    netrc.chmod(0o600)
    config = Path(env["CREDPROXY_CONFIG"])
    config.write_text(f'[[index]]\nname = "private"\nurl = "https://other.test:{echo.port}/"\n')
    proxy = credproxy_factory("-v", env=env)
    proxied = proxied_env(proxy)

    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(_status, proxied, echo.url_for(path="/held-any/rm/simple/pkg/"))
        _seen(lambda: any(r.path.startswith("/held-any/rm/") for r in echo.requests), "the request upstream", proxy)
        config.write_text("# the private index was removed\n")
        _seen(lambda: RELOADED in proxy.stderr(), "the reload", proxy)
        echo.release("rm")
        status = held.result(timeout=30)
    assert [r.authorization for r in echo.requests] == [None], (
        "the netrc default entry was sent to a host that is no longer an index\n" + proxy.stderr())
    assert status == "401"
    # what the new settings say, for a fresh request: no credential either
    assert _status(proxied, echo.url_for(path="/simple/pkg/")) == "401"
    assert all(r.authorization is None for r in echo.requests)
    _no_secret(proxy, SECRET)


def test_a_company_proxy_login_looked_up_across_a_reload_is_not_kept_after_it(
        tmp_path, tls_certs, echo_factory, credproxy_factory, proxied_env):
    """The company proxy's login comes from the keyring (proxy URL `http://alice@proxy.test:P`).
    While the first CONNECT's keyring lookup was running, the user turned the keyring off
    (`keyring-provider = "disabled"`); the proxy reloaded and forgot the logins it had. The
    lookup then finished — and before, its answer was stored into the chain's fresh login
    cache, so every later connection carried a login from a source the user had turned off,
    for as long as the proxy ran. A new connection must follow the new settings."""
    from credproxy.credentials.sources.keyring_subprocess import keyring_services
    from tests.helpers.company_proxy import CompanyProxy
    from tests.helpers.keyring_script import read_calls, write_keyring_script
    from tests.helpers.servers import TEST_HOSTS

    company = CompanyProxy.start(("alice", SECRET))
    try:
        proxy_url = f"http://proxy.test:{company.port}/"
        gate, log = tmp_path / "keyring-gate", tmp_path / "keyring-calls.jsonl"
        bin_dir = tmp_path / "keyring-bin"
        write_keyring_script(bin_dir, {(s, "alice"): SECRET for s in keyring_services(proxy_url, None)},
                             log=log, gate=gate)
        env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem, extra={
            "CREDPROXY_TEST_RESOLVE": ",".join(f"{n}=127.0.0.1" for n in (*TEST_HOSTS, "proxy.test")),
            "HTTPS_PROXY": f"http://alice@proxy.test:{company.port}",
            "PATH": f"{bin_dir}:/usr/bin:/bin",
        })
        config = Path(env["CREDPROXY_CONFIG"])
        config.write_text('keyring-provider = "subprocess"\nkeyring-timeout = 60\n')
        echo = echo_factory(host="other.test")
        proxy = credproxy_factory("-v", env=env)
        proxied = proxied_env(proxy)

        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(_status, proxied, echo.url_for(path="/first"))
            _seen(lambda: read_calls(log), "the keyring asked for the proxy login", proxy)
            config.write_text('keyring-provider = "disabled"\nkeyring-timeout = 60\n')
            _seen(lambda: RELOADED in proxy.stderr(), "the reload", proxy)
            gate.touch()
            assert first.result(timeout=60) == "200"  # it went with the login it started with
        assert [r.auth for r in company.connects("other.test")] == ["ok"]

        # a new connection after the reload: the keyring is off, so no login is sent
        # (a passthrough tunnel: the company proxy's 407 ends the client's TLS handshake)
        second = curl("-o", "/dev/null", "-w", "%{http_code}", echo.url_for(path="/second"), env=proxied)
        auths = [r.auth for r in company.connects("other.test")]
        assert auths[1:] and set(auths[1:]) == {"missing"}, (
            "a login from the keyring the user turned off was sent\n" + proxy.stderr())
        assert second.stdout != "200"
        assert [r.path for r in echo.requests] == ["/first"]
        _no_secret(proxy, SECRET)
    finally:
        company.stop()


def test_a_lookup_under_way_during_a_reload_finishes_with_the_sources_it_started_with(
        tmp_path, tls_certs, echo_factory, credproxy_factory, proxied_env):
    """A reload closes the old resolver while a request is in the middle of its lookups
    (reload.py: "requests already under way finish with what they started with"). The
    index's token-command was running (it fails; the netrc entry after it answers). The
    lookups after it must still be answered — before, the closed resolver's worker pool
    refused them and the client got a 502 "credential lookup failed (RuntimeError)"."""
    import sys

    echo = echo_factory(host="other.test", credentials=("nora", SECRET))
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem)
    netrc = Path(env["HOME"]) / ".netrc"
    netrc.write_text(f"machine other.test login nora password {SECRET}\n")
    netrc.chmod(0o600)
    gate, started = tmp_path / "token-gate", tmp_path / "token-started"
    command = tmp_path / "token-command.py"
    command.write_text(
        "import os, sys, time\n"
        f"open({str(started)!r}, 'w').close()\n"
        "for _ in range(750):\n"
        f"    if os.path.exists({str(gate)!r}):\n"
        "        break\n"
        "    time.sleep(0.02)\n"
        "sys.exit('the token service is down')\n")
    config = Path(env["CREDPROXY_CONFIG"])
    config.write_text(f'keyring-timeout = 60\n[[index]]\nname = "private"\nurl = "https://other.test:{echo.port}/"\n'
                      f'username = "nora"\ntoken-command = [{sys.executable!r}, {str(command)!r}]\n')
    proxy = credproxy_factory("-v", env=env)
    proxied = proxied_env(proxy)

    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(_status, proxied, echo.url_for(path="/simple/pkg/"))
        _seen(started.exists, "the token command running", proxy)
        netrc.write_text(f"machine other.test login nora password {SECRET}\n# edited\n")
        _seen(lambda: RELOADED in proxy.stderr(), "the reload", proxy)
        gate.touch()
        status = held.result(timeout=60)
    assert status == "200", proxy.stderr()
    assert [r.status for r in echo.requests] == [200]
    _no_secret(proxy, SECRET)


def test_a_ca_removed_from_the_ca_bundle_is_not_trusted_after_a_reload(
        tmp_path, tls_certs, echo_factory, credproxy_factory, proxied_env):
    """The user stops trusting a CA (a company inspection CA after leaving that network, one
    added by mistake): removed from the `ca-bundle` file, SIGHUP. A new upstream connection
    must be verified against the file as it is now — before, mitmproxy's cached TLS context
    for that unchanged path kept the removed CA, and a server with a certificate from it
    still received the registry credential until a restart."""
    import certifi
    import os
    import signal

    echo = echo_factory(host="other.test", credentials=("nora", SECRET))
    bundle = tmp_path / "roots.pem"
    bundle.write_bytes(Path(tls_certs.ca_plus_certifi_pem).read_bytes())
    env = proxy_env(tmp_path, upstream_ca=None)
    netrc = Path(env["HOME"]) / ".netrc"
    netrc.write_text(f"machine other.test login nora password {SECRET}\n")
    netrc.chmod(0o600)
    Path(env["CREDPROXY_CONFIG"]).write_text(f'ca-bundle = "{bundle}"\n')
    proxy = credproxy_factory("-v", env=env)
    proxied = proxied_env(proxy)
    assert _status(proxied, echo.url_for(path="/simple/a/")) == "200"

    bundle.write_bytes(Path(certifi.where()).read_bytes())  # the test CA is no longer trusted
    os.kill(proxy.pid, signal.SIGHUP)
    _seen(lambda: RELOADED in proxy.stderr(), "the reload", proxy)
    echo.reset()
    assert _status(proxied, echo.url_for(path="/simple/b/")) == "502", proxy.stderr()
    assert echo.requests == [], "the credential went to a server whose CA is no longer trusted"
    _no_secret(proxy, SECRET)


def test_a_company_proxy_removed_from_the_config_is_not_used_after_the_reload(
        tmp_path, tls_certs, echo_factory, credproxy_factory, proxied_env):
    """`upstream-proxy` is a config key like the others: after the user removes it (the
    company proxy is gone, or must no longer see this traffic) and the proxy reloads, new
    connections go direct. Before, the egress plan was built once at start-up and a reload
    kept sending every new connection, and the proxy's login, to the old company proxy."""
    from tests.helpers.company_proxy import CompanyProxy

    company = CompanyProxy.start(("corp", SECRET))
    try:
        echo = echo_factory(host="other.test")
        env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem)
        config = Path(env["CREDPROXY_CONFIG"])
        config.write_text(f'upstream-proxy = "{company.url_with(("corp", SECRET))}"\n')
        proxy = credproxy_factory("-v", env=env)
        proxied = proxied_env(proxy)
        assert _status(proxied, echo.url_for(path="/via-company")) == "200"
        assert [r.auth for r in company.connects("other.test")] == ["ok"]

        config.write_text("# the company proxy is gone\n")
        _seen(lambda: RELOADED in proxy.stderr(), "the reload", proxy)
        assert _status(proxied, echo.url_for(path="/direct")) == "200"
        assert len(company.connects("other.test")) == 1, "a new connection went to the removed company proxy"
        assert [r.path for r in echo.requests] == ["/via-company", "/direct"]
        assert proxy.stderr().count("upstream proxy: none (direct)") == 1  # the new route, announced
        _no_secret(proxy, SECRET)
    finally:
        company.stop()


def test_a_credential_is_not_remembered_for_an_index_set_to_never_during_the_reload(
        tmp_path, tls_certs, echo_factory, credproxy_factory, proxied_env):
    """`serve --remember` never stores a credential for an index with `authenticate = never`.
    The client's own credential was accepted; while the proxy checked whether a source had it
    already (the keyring, for the index's username), the user set the index to `never` and the
    proxy reloaded. The store must stay empty — before, the place was decided with the old
    settings and the credential was written after the reload all the same."""
    from tests.helpers.keyring_script import read_calls, write_keyring_script

    echo = echo_factory(host="other.test", credentials=("rita", SECRET))
    gate, log = tmp_path / "keyring-gate", tmp_path / "keyring-calls.jsonl"
    bin_dir = tmp_path / "keyring-bin"
    write_keyring_script(bin_dir, {}, log=log, gate=gate)  # it knows nothing, slowly
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem, extra={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    config = Path(env["CREDPROXY_CONFIG"])
    index = f'[[index]]\nname = "private"\nurl = "https://other.test:{echo.port}/"\nusername = "rita"\n'
    config.write_text('keyring-provider = "subprocess"\nkeyring-timeout = 60\n' + index)
    proxy = credproxy_factory("--remember", "-v", env=env)
    proxied = proxied_env(proxy)
    store = Path(env["CREDPROXY_CREDENTIALS_DIR"]) / "credentials.toml"

    with ThreadPoolExecutor(1) as pool:
        url = echo.url_for(path="/simple/pkg/").replace("://", f"://rita:{SECRET}@")
        answered = pool.submit(_status, proxied, url)
        _seen(lambda: read_calls(log), "the keyring asked whether it has the credential", proxy)
        config.write_text('keyring-provider = "subprocess"\nkeyring-timeout = 60\n'
                          + index + 'authenticate = "never"\n')
        _seen(lambda: RELOADED in proxy.stderr(), "the reload", proxy)
        gate.touch()
        assert answered.result(timeout=60) == "200"
    assert "remembered " not in proxy.stderr()
    assert not store.exists() or SECRET not in store.read_text(), "stored for an index set to `never`"
    _no_secret(proxy, SECRET)
