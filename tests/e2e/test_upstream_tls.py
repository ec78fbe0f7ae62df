"""Issue 4 acceptance: upstream TLS through the real `credproxy serve` — private CAs,
allow-insecure-host per host, client certificates (global, per host, wildcard), and pip
installing from an index that needs a client certificate and Basic auth, configured with
nothing but `credproxy env`. Real servers on 127.0.0.1 (trustme), real curl and pip."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from credproxy.credentials.model import secret_forms
from tests.helpers.clients import client_env, curl, installed, pip_install, run
from tests.helpers.proxy import CREDPROXY, proxy_env
from tests.helpers.servers import PrivateIndex

from .conftest import INDEX_PASSWORD, INDEX_USERNAME


def _config(tmp_path: Path, text: str) -> None:
    (tmp_path / "credproxy-config.toml").write_text(text)


def _toml_str(value) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _get(proxy, url: str, tmp_path: Path) -> tuple[int, str]:
    env = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=proxy.ca_cert)
    out = curl("-w", "\n%{http_code}", url, env=env)
    body, _, status = out.stdout.rpartition("\n")
    return int(status or 0), body


def _warnings_for(proxy, host: str) -> int:
    return proxy.stderr().count(f"TLS to upstream {host}:")


def test_private_ca_fails_with_default_roots_then_works_with_ssl_cert_file(
        tmp_path, tls_certs, echo_factory, credproxy_factory):
    server = echo_factory(host="mirror.test")
    _config(tmp_path, 'intercept-hosts = ["mirror.test"]\n')
    default_roots = credproxy_factory(env=proxy_env(tmp_path))  # no SSL_CERT_FILE: certifi
    status, body = _get(default_roots, server.url, tmp_path)
    status2, _ = _get(default_roots, server.url_for(path="/again"), tmp_path)
    assert status == 502 and status2 == 502
    assert f"mirror.test:{server.port}" in body and "unknown issuer" in body
    assert "SSL_CERT_FILE" in body and "system-certs" in body and "allow-insecure-host" in body
    assert server.requests == []  # nothing reached the server's HTTP layer
    default_roots.stop()
    assert _warnings_for(default_roots, "mirror.test") == 1, default_roots.stderr()

    with_ca = credproxy_factory(env=proxy_env(tmp_path, upstream_ca=tls_certs.ca_pem))
    status, body = _get(with_ca, server.url, tmp_path)
    assert status == 200, body
    assert json.loads(body)["path"] == "/"


@pytest.mark.parametrize("how", ["SSL_CERT_DIR", "ca-bundle"])
def test_ssl_cert_dir_and_config_ca_bundle_replace_the_roots(tmp_path, tls_certs, echo_factory,
                                                             credproxy_factory, how):
    server = echo_factory(host="mirror.test")
    env = proxy_env(tmp_path)
    if how == "SSL_CERT_DIR":
        certs = tmp_path / "certs"
        certs.mkdir()
        (certs / "corp.crt").write_bytes(tls_certs.ca_pem.read_bytes())
        (certs / "notes.txt").write_text("not a certificate")
        env["SSL_CERT_DIR"] = f"{certs}:{tmp_path / 'missing'}"
        _config(tmp_path, 'intercept-hosts = ["mirror.test"]\n')
    else:
        _config(tmp_path, f'intercept-hosts = ["mirror.test"]\nca-bundle = {_toml_str(tls_certs.ca_pem)}\n')
        env["SSL_CERT_FILE"] = str(tls_certs.untrusted_ca_pem)  # ca-bundle wins, like uv's --cert
    proxy = credproxy_factory(env=env)
    status, body = _get(proxy, server.url, tmp_path)
    assert status == 200, body + proxy.stderr()


@pytest.mark.parametrize("given_by", ["config", "flag", "UV_INSECURE_HOST"])
def test_allow_insecure_host_skips_only_that_host(tmp_path, tls_certs, echo_factory, credproxy_factory, given_by):
    listed = echo_factory(host="mirror.test", untrusted=True)
    unlisted = echo_factory(host="other.test", untrusted=True)
    # upstream roots: certifi + the test CA (not the untrusted CA)
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem)
    args = []
    if given_by == "config":
        _config(tmp_path, 'allow-insecure-host = ["mirror.test"]\nintercept-hosts = ["other.test"]\n')
    else:
        _config(tmp_path, 'intercept-hosts = ["other.test"]\n')
        if given_by == "flag":
            args = ["--allow-insecure-host", "mirror.test"]
        else:
            env["UV_INSECURE_HOST"] = f"mirror.test:{listed.port} elsewhere.test"
    proxy = credproxy_factory(*args, env=env)
    first = _get(proxy, listed.url, tmp_path)
    failed = _get(proxy, unlisted.url, tmp_path)
    again = _get(proxy, listed.url_for(path="/again"), tmp_path)
    assert first[0] == 200, first
    assert failed[0] == 502 and "other.test" in failed[1] and "unknown issuer" in failed[1]
    assert again[0] == 200
    assert [r.path for r in listed.requests] == ["/", "/again"]
    assert unlisted.requests == []


@pytest.mark.parametrize("args, env_extra", [(["--system-certs"], {}), ([], {"UV_SYSTEM_CERTS": "1"}),
                                              (["--native-tls"], {})])
def test_system_certs_switch_to_the_os_store(tmp_path, echo_factory, credproxy_factory, args, env_extra):
    server = echo_factory(host="mirror.test")  # the test CA is not in the OS store
    _config(tmp_path, 'intercept-hosts = ["mirror.test"]\n')
    proxy = credproxy_factory(*args, env=proxy_env(tmp_path, extra=env_extra))
    status, body = _get(proxy, server.url, tmp_path)
    assert status == 502 and "unknown issuer" in body
    assert "add the CA to the OS store" in body  # the roots in use are the OS store's
    if args == ["--native-tls"]:
        assert "deprecated" in proxy.stderr()


def test_ssl_client_cert_for_all_hosts(tmp_path, tls_certs, echo_factory, credproxy_factory):
    server = echo_factory(host="mtls.test", client_ca=tls_certs.client_ca_pem)
    _config(tmp_path, 'intercept-hosts = ["mtls.test"]\n')
    without = credproxy_factory()
    status, body = _get(without, server.url, tmp_path)
    assert status == 502, body
    assert "client certificate required" in body and "SSL_CLIENT_CERT" in body and "mtls.test" in body

    _config(tmp_path, "")  # the certificate alone makes the proxy intercept (to present it)
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem,
                    extra={"SSL_CLIENT_CERT": str(tls_certs.client_combined_pem)})
    with_cert = credproxy_factory(env=env)
    status, body = _get(with_cert, server.url, tmp_path)
    assert status == 200, body + with_cert.stderr()
    assert json.loads(body)["client_cert"] is True


def test_per_host_client_certs_and_wildcard(tmp_path, tls_certs, echo_factory, credproxy_factory):
    """Two servers that each accept only their own client CA: the exact entry sends one
    certificate to mtls.test, the wildcard entry the other to pkgs.test."""
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(tls_certs.other_client_key_pem.read_bytes() + tls_certs.other_client_cert_pem.read_bytes())
    a = echo_factory(host="mtls.test", client_ca=tls_certs.client_ca_pem)
    b = echo_factory(host="pkgs.test", client_ca=tls_certs.untrusted_ca_pem)
    _config(tmp_path, f"""
[[client-cert]]
host = "*.test"
cert = {_toml_str(stranger)}

[[client-cert]]
host = "mtls.test"
cert = {_toml_str(tls_certs.client_combined_pem)}
""")
    proxy = credproxy_factory()
    ra = _get(proxy, a.url, tmp_path)
    rb = _get(proxy, b.url, tmp_path)
    assert ra[0] == 200, ra[1] + proxy.stderr()
    assert rb[0] == 200, rb[1] + proxy.stderr()
    assert a.requests[0].client_cert and b.requests[0].client_cert


def test_invalid_client_cert_in_config_stops_start_naming_the_file(tmp_path, tls_certs):
    bad = tmp_path / "broken.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    _config(tmp_path, f'[[client-cert]]\nhost = "pkgs.test"\ncert = {_toml_str(bad)}\n')
    env = proxy_env(tmp_path, extra={"CREDPROXY_DATA_DIR": str(tmp_path / "data")})
    out = run([CREDPROXY, "serve", "--port", "0"], env=env, timeout=30)
    assert out.returncode == 2
    assert str(bad) in out.stderr and "pkgs.test" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "credproxy listening" not in out.stdout


# --- pip through the proxy to an index that needs a client certificate and Basic auth


@pytest.fixture
def mtls_index(tmp_path, tls_certs, index_wheels):
    """pypiserver behind gunicorn --cert-reqs 2 --ca-certs <client CA>, Basic auth."""
    index = PrivateIndex.start(tmp_path / "mtls-index", tls_certs, username=INDEX_USERNAME,
                               password=INDEX_PASSWORD, wheels=list(index_wheels.values()),
                               client_ca=tls_certs.client_ca_pem, client_cert=tls_certs.client_combined_pem)
    yield index.port
    index.stop()


def _env_from_credproxy_env(base: dict[str, str], proxy, proxy_process_env: dict[str, str]) -> dict[str, str]:
    """What `eval "$(credproxy env --port P)"` would export, applied to `base`."""
    out = run([CREDPROXY, "env", "--port", str(proxy.port)],
              env={**proxy_process_env, "CREDPROXY_DATA_DIR": str(proxy.data_dir)}, timeout=30)
    assert out.returncode == 0, out.stderr
    env = dict(base)
    for line in out.stdout.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    assert env.get("HTTPS_PROXY") == proxy.url and "PIP_CERT" in env
    return env


def test_pip_installs_from_mtls_index_with_basic_auth_via_credproxy_env(
        tmp_path, tls_certs, mtls_index, credproxy_factory):
    index_url = f"https://pkgs.test:{mtls_index}/simple/"
    _config(tmp_path, f"""
[[index]]
name = "private"
url = {_toml_str(index_url)}

[[client-cert]]
host = "pkgs.test"
cert = {_toml_str(tls_certs.client_combined_pem)}
""")
    penv = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem,
                     extra={"UV_INDEX_PRIVATE_USERNAME": INDEX_USERNAME,
                            "UV_INDEX_PRIVATE_PASSWORD": INDEX_PASSWORD})
    proxy = credproxy_factory(env=penv)
    env = _env_from_credproxy_env(client_env(tmp_path), proxy, penv)
    target = tmp_path / "target"
    result = pip_install(target, "--index-url", index_url, "private-pkg", env=env)
    assert result.returncode == 0, result.stdout + result.stderr + proxy.stderr()
    assert set(installed(target)) >= {"private-pkg", "private-dep"}
    # the proxy supplied the certificate and the credential: pip alone had neither
    direct = pip_install(tmp_path / "direct", "--index-url", index_url, "private-pkg",
                         env=client_env(tmp_path, ca_bundle=tls_certs.ca_pem), timeout=60)
    assert direct.returncode != 0
    for form in secret_forms(INDEX_PASSWORD, INDEX_USERNAME):
        assert form not in proxy.stderr() and form not in proxy.stdout()


def test_explain_shows_the_tls_settings_for_the_host(tmp_path, tls_certs):
    _config(tmp_path, f"""
allow-insecure-host = ["mirror.test:8443"]

[[client-cert]]
host = "*.corp.test"
cert = {_toml_str(tls_certs.client_combined_pem)}
""")
    env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_pem, extra={"CREDPROXY_DATA_DIR": str(tmp_path / "data")})
    mirror = run([CREDPROXY, "explain", "https://mirror.test:8443/simple/"], env=env, timeout=60)
    corp = run([CREDPROXY, "explain", "https://pkgs.corp.test/simple/"], env=env, timeout=60)
    assert mirror.returncode == 0 and corp.returncode == 0, mirror.stderr + corp.stderr
    assert "tls verify:      NO (allow-insecure-host entry 'mirror.test:8443')" in mirror.stdout
    assert f"SSL_CERT_FILE={tls_certs.ca_pem}" in mirror.stdout and "tls roots:" in mirror.stdout
    assert f"tls client cert: {tls_certs.client_combined_pem} (pattern '*.corp.test'" in corp.stdout
    assert "tls verify:      yes" in corp.stdout
    key_body = tls_certs.client_combined_pem.read_text().split("-----")[2].strip()[:40]
    assert key_body not in corp.stdout + corp.stderr
