"""Issue 3 acceptance: real pip, uv and curl with no credentials of their own install from a
real pypiserver (TLS, Basic auth) through `credproxy serve`; the proxy finds the credential in
netrc, its store, UV_INDEX_<NAME>_* or a `keyring` command."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from credproxy.credentials.model import secret_forms
from tests.helpers.clients import client_env, curl, installed, pip_install, uv_pip_install
from tests.helpers.h2server import H2Server
from tests.helpers.keyring_script import read_calls, write_keyring_script
from tests.helpers.proxy import credproxy_cmd, proxy_env


pytestmark = pytest.mark.e2e

CLIENTS = ("pip", "uv", "curl")
SOURCES = ("netrc", "store", "env", "keyring")


# --- set-up helpers ---------------------------------------------------------------------------


def proxy_environment(tmp_path, tls_certs, **extra) -> dict[str, str]:
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem, extra=extra)
    env["CREDPROXY_DATA_DIR"] = str(tmp_path / "proxy-data")
    # proxy_env names this file; an explicitly named config must exist (credproxy/config/load.py)
    config = Path(env["CREDPROXY_CONFIG"])
    if not config.exists():
        config.write_text("")
    return env


def write_netrc(env: dict[str, str], text: str) -> None:
    netrc = Path(env["HOME"]) / ".netrc"
    netrc.write_text(text)
    netrc.chmod(0o600)


def write_config(tmp_path, text: str) -> None:
    (tmp_path / "credproxy-config.toml").write_text(text)


def index_config(index, *, username: str | None = None, keyring: bool = False) -> str:
    lines = []
    if keyring:
        lines.append('keyring-provider = "subprocess"')
    lines += ["[[index]]", 'name = "private"', f'url = "{index.url}"']
    if username:
        lines.append(f'username = "{username}"')
    return "\n".join(lines) + "\n"


def configure_source(source: str, tmp_path, env: dict[str, str], index) -> Path | None:
    """Put the index's credential in `source`; returns the keyring call log for `keyring`."""
    if source == "netrc":
        write_netrc(env, f"machine pkgs.test login {index.username} password {index.password}\n")
    elif source == "store":
        service = f"https://pkgs.test:{index.port}/"
        result = subprocess.run(
            credproxy_cmd("auth", "login", service, "--username", index.username, "--password", "-"),
            env=env, input=index.password + "\n", capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    elif source == "env":
        write_config(tmp_path, index_config(index))
        env["UV_INDEX_PRIVATE_USERNAME"] = index.username
        env["UV_INDEX_PRIVATE_PASSWORD"] = index.password
    elif source == "keyring":
        write_config(tmp_path, index_config(index, username=index.username, keyring=True))
        log = tmp_path / "keyring-calls.jsonl"
        bin_dir = tmp_path / "keyring-bin"
        answers = {(index.url.rstrip("/"), index.username): index.password,
                   (index.url, index.username): index.password,
                   (f"pkgs.test:{index.port}", index.username): index.password,
                   ("pkgs.test", index.username): index.password}
        write_keyring_script(bin_dir, answers, log=log)
        env["PATH"] = f"{bin_dir}:{env['PATH']}"
        return log
    else:
        raise AssertionError(source)
    return None


def legacy_pip_setup(env: dict[str, str], index) -> None:
    """The user's pip.conf names the index (no credentials in it); the only credential is
    the netrc `default` entry, which is used on a challenge only. The index makes the proxy
    intercept the host (a `default` entry alone does not: sources/netrc.py knows_host)."""
    pip_conf = Path(env["XDG_CONFIG_HOME"]) / "pip" / "pip.conf"
    pip_conf.parent.mkdir(parents=True, exist_ok=True)
    pip_conf.write_text(f"[global]\nindex-url = {index.url}\n")
    write_netrc(env, f"default login {index.username} password {index.password}\n")


def client_bundle(tmp_path, proxy, tls_certs) -> Path:
    """What `credproxy env` gives clients, for these tests: the proxy CA (intercepted hosts)
    plus the test CA (hosts passed through untouched)."""
    bundle = tmp_path / "client-bundle.pem"
    bundle.write_text(proxy.ca_cert.read_text() + "\n" + tls_certs.ca_pem.read_text())
    return bundle


def run_client(client: str, tmp_path, index, env: dict[str, str], *, url: str | None = None):
    url = url or index.url
    if client == "pip":
        return pip_install(tmp_path / f"pip-target-{len(list(tmp_path.glob('pip-target-*')))}",
                           "--index-url", url, "--retries", "0", "private-pkg", env=env, timeout=90)
    if client == "uv":
        return uv_pip_install(tmp_path / f"uv-target-{len(list(tmp_path.glob('uv-target-*')))}",
                              "--index-url", url, "private-pkg", env=env, timeout=90)
    if client == "curl":  # no -L: a redirect would show as a failure
        return curl("-f", "-o", "/dev/null", "-w", "%{http_code}", url.rstrip("/") + "/private-pkg/",
                    env=env, timeout=30)
    raise AssertionError(client)


def assert_client_succeeded(client: str, result, tmp_path) -> None:
    assert result.returncode == 0, f"{client} failed:\n{result.stdout}\n{result.stderr}"
    if client == "curl":
        assert result.stdout.strip() == "200"
    else:
        target = sorted(tmp_path.glob(f"{client}-target-*"))[-1]
        assert installed(target) == {"private-pkg": "1.0", "private-dep": "1.0"}


def assert_no_secret(text: str, index) -> None:
    for form in secret_forms(index.password, index.username):
        assert form not in text


# --- acceptance ---------------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_clients_install_through_the_proxy_with_credentials_from(
        source, tmp_path, private_index, tls_certs, credproxy_factory):
    env = proxy_environment(tmp_path, tls_certs)
    keyring_log = configure_source(source, tmp_path, env, private_index)
    proxy = credproxy_factory(env=env)
    cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))

    for client in CLIENTS:
        private_index.reset()
        result = run_client(client, tmp_path, private_index, cenv)
        assert_client_succeeded(client, result, tmp_path)
        assert_no_secret(result.stdout + result.stderr, private_index)
        # credentials went up front: no request reached the index bare
        assert private_index.count(auth=False) == 0, private_index.requests()
        assert private_index.count(200, auth=True) >= 1

    if keyring_log is not None:
        calls = read_calls(keyring_log)
        assert len(calls) == 1, f"keyring ran {len(calls)} times for the session: {calls}"
    assert proxy.alive()
    assert_no_secret(proxy.stdout() + proxy.stderr(), private_index)


@pytest.mark.parametrize("client", CLIENTS)
def test_same_command_without_the_proxy_gets_401(client, tmp_path, private_index, tls_certs):
    env = client_env(tmp_path, ca_bundle=tls_certs.ca_pem)
    url = private_index.url_ip  # without the proxy the test names do not resolve
    result = run_client(client, tmp_path, private_index, env, url=url)
    assert result.returncode != 0
    assert private_index.count(401, auth=False) >= 1
    assert private_index.count(200) == 0


@pytest.mark.parametrize("client", CLIENTS)
def test_challenge_path_with_netrc_default_only(client, tmp_path, private_index, tls_certs, credproxy_factory):
    env = proxy_environment(tmp_path, tls_certs)
    legacy_pip_setup(env, private_index)
    proxy = credproxy_factory(env=env)
    cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))

    result = run_client(client, tmp_path, private_index, cenv)
    assert_client_succeeded(client, result, tmp_path)
    # the first request goes out bare (netrc default is for challenges only), is challenged
    # once, re-sent with the credential; everything after is authenticated up front
    assert private_index.count(401) == 1, private_index.requests()
    assert private_index.count(auth=False) == 1
    assert_no_secret(result.stdout + result.stderr + proxy.stderr(), private_index)


def test_one_pip_install_of_two_packages_causes_at_most_one_401(
        tmp_path, private_index, tls_certs, credproxy_factory):
    env = proxy_environment(tmp_path, tls_certs)
    legacy_pip_setup(env, private_index)
    proxy = credproxy_factory(env=env)
    cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
    result = pip_install(tmp_path / "target", "--index-url", private_index.url, "private-pkg", "private-dep",
                         env=cenv, timeout=90)
    assert result.returncode == 0, result.stderr
    assert private_index.count(401) <= 1, private_index.requests()
    # a second install in the same proxy session: no 401 at all
    private_index.reset()
    result = pip_install(tmp_path / "target2", "--index-url", private_index.url, "private-pkg",
                         env=cenv, timeout=90)
    assert result.returncode == 0, result.stderr
    assert private_index.count(401) == 0


def test_keyring_runs_once_per_session_however_many_requests(
        tmp_path, private_index, tls_certs, credproxy_factory):
    env = proxy_environment(tmp_path, tls_certs)
    log = configure_source("keyring", tmp_path, env, private_index)
    proxy = credproxy_factory(env=env)
    cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
    for client in ("pip", "uv", "pip"):
        assert_client_succeeded(client, run_client(client, tmp_path, private_index, cenv), tmp_path)
    assert private_index.count(200, auth=True) >= 8
    assert len(read_calls(log)) == 1


@pytest.mark.parametrize("intercept_all", [False, True])
def test_second_host_gets_no_authorization(
        intercept_all, tmp_path, private_index, tls_certs, credproxy_factory, echo_server):
    env = proxy_environment(tmp_path, tls_certs)
    configure_source("env", tmp_path, env, private_index)
    proxy = credproxy_factory(*(["--intercept-all"] if intercept_all else []), env=env)
    cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
    # the private index works through this proxy...
    assert run_client("curl", tmp_path, private_index, cenv).stdout.strip() == "200"
    # ...and another host, even with the index's host in its Host header, gets nothing: passed
    # through untouched, or (intercepted) refused with 421 because Host names another host
    for extra, status in (([], "200"), (["-H", f"Host: pkgs.test:{private_index.port}"],
                                        "421" if intercept_all else "200")):
        result = curl(*extra, "-o", "/dev/null", "-w", "%{http_code}", echo_server.url_for(path="/x"), env=cenv)
        assert result.stdout.strip() == status, result.stderr
    assert len(echo_server.requests) == (1 if intercept_all else 2)
    assert all(r.authorization is None for r in echo_server.requests)


@pytest.fixture
def h2_server(tls_certs):
    server = H2Server.start(tls_certs)
    yield server
    server.stop()


def test_http2_client_and_upstream_get_the_credential(tmp_path, tls_certs, credproxy_factory, h2_server):
    """HTTP/2 end to end (mitmproxy >= 12; with 11 the proxy speaks HTTP/1.1 to the client):
    the credential is injected into h2 requests too, on every stream of one connection."""
    import mitmproxy.version

    env = proxy_environment(tmp_path, tls_certs)
    write_netrc(env, "machine other.test login bob password h2-s3cret\n")
    proxy = credproxy_factory(env=env)
    cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
    url = f"https://other.test:{h2_server.port}"
    result = curl("--http2", "-w", "%{http_version} %{http_code}\n", "-o", "/dev/null", f"{url}/a",
                  "-w", "%{http_version} %{http_code}\n", "-o", "/dev/null", f"{url}/b", env=cenv)
    h2 = int(mitmproxy.version.VERSION.split(".")[0]) >= 12
    assert result.stdout.split("\n")[:2] == [f"{'2' if h2 else '1.1'} 200"] * 2, result.stderr
    # the server speaks h2 whenever it is offered: the proxy chose the version per its mitmproxy
    expected = "Basic " + base64.b64encode(b"bob:h2-s3cret").decode()
    version = "2" if h2 else "1.1"
    assert [(r.path, r.authorization, r.http_version) for r in h2_server.requests] == [
        ("/a", expected, version), ("/b", expected, version)]
    text = result.stdout + result.stderr + proxy.stderr()
    assert not [form for form in secret_forms("h2-s3cret", "bob") if form in text]


def test_200_mb_response_streams_with_flat_memory(tmp_path, tls_certs, credproxy_factory, echo_factory):
    # an intercepted host with credentials injected, so the body really passes through the
    # proxy's HTTP layer (not a raw TLS passthrough)
    server = echo_factory(host="other.test", credentials=("bob", "big-secret"))
    env = proxy_environment(tmp_path, tls_certs)
    write_netrc(env, "machine other.test login bob password big-secret\n")
    proxy = credproxy_factory(env=env)
    cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
    size = 200 * 1024 * 1024
    result = curl("-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                  server.url_for(path=f"/big/{size}"), env=cenv, timeout=120)
    assert result.stdout.strip() == f"200 {size}", result.stderr
    assert server.requests[-1].authorization is not None
    peak_mb = proxy.rss_peak_kb() / 1024
    print(f"proxy peak RSS {peak_mb:.0f} MB for a 200 MB response")  # shown with pytest -s
    assert peak_mb < 150, f"proxy peak RSS {peak_mb:.0f} MB for a 200 MB response"


# --- the re-send after a challenge: bodies and sizes ----------------------------------------------


@pytest.fixture
def challenged_echo(tmp_path, tls_certs, credproxy_factory, echo_factory):
    """other.test requires Basic bob:...; the proxy knows it only from the netrc `default`
    entry (used on a challenge), and other.test is a configured index so it is intercepted."""
    server = echo_factory(host="other.test", credentials=("bob", "echo-secret"))
    env = proxy_environment(tmp_path, tls_certs)
    write_netrc(env, "default login bob password echo-secret\n")
    Path(env["CREDPROXY_CONFIG"]).write_text(
        f'[[index]]\nname = "echo"\nurl = "https://other.test:{server.port}/"\n')
    proxy = credproxy_factory(env=env)
    cenv = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=client_bundle(tmp_path, proxy, tls_certs))
    return server, proxy, cenv


def test_challenged_upload_is_re_sent_with_its_body(tmp_path, challenged_echo):
    server, proxy, cenv = challenged_echo
    body = tmp_path / "upload.bin"
    body.write_bytes(b"u" * (3 << 20))  # larger than the streaming threshold: tee'd
    result = curl("-o", "/dev/null", "-w", "%{http_code}", "--data-binary", f"@{body}",
                  server.url_for(path="/upload"), env=cenv, timeout=60)
    assert result.stdout.strip() == "200", result.stderr
    first, second = server.requests
    assert (first.status, first.authorization is None) == (401, True)
    assert second.status == 200 and second.authorization is not None
    assert second.headers.get("Content-Length") == str(3 << 20)


def test_challenged_download_within_the_buffer_limit_reaches_curl_without_L(challenged_echo):
    server, proxy, cenv = challenged_echo
    size = 5 << 20
    result = curl("-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                  server.url_for(path=f"/big/{size}"), env=cenv, timeout=60)
    assert result.stdout.strip() == f"200 {size}", result.stderr
    assert [r.status for r in server.requests] == [401, 200]


def test_challenged_download_over_the_buffer_limit_becomes_a_redirect_then_streams(challenged_echo):
    server, proxy, cenv = challenged_echo
    size = 100 << 20
    url = server.url_for(path=f"/big/{size}")
    # not held in memory: the client is told to repeat the request...
    result = curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", url, env=cenv, timeout=60)
    assert result.stdout.strip() == f"307 {url}", result.stderr
    # ...which is now authenticated up front (the credential was cached) and streams
    result = curl("-o", "/dev/null", "-w", "%{http_code} %{size_download}", url, env=cenv, timeout=120)
    assert result.stdout.strip() == f"200 {size}", result.stderr
    assert server.requests[-1].authorization is not None
    assert server.count(401) == 1
    assert proxy.rss_peak_kb() / 1024 < 150
