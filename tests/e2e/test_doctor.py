"""`credproxy doctor [URL]` as a user runs it: real proxy, real upstream, real shell variables."""

from __future__ import annotations

import shlex

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.helpers.servers import free_port

from .observe_setup import SECRET, USER, World, leaks

pytestmark = pytest.mark.e2e

INDEX = """
[[index]]
name = "private"
url = "https://pkgs.test:{port}/private/simple/"
"""


def exported(env_output: str) -> dict[str, str]:
    """The variables `credproxy env` (bash) sets."""
    result = {}
    for line in env_output.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
            result[name] = shlex.split(value)[0]
    return result


def test_doctor_without_a_proxy_lists_each_problem_with_its_fix(tmp_path):
    with World(tmp_path, config_extra=INDEX) as world:
        port = free_port()
        result = world.cli("doctor", "--port", str(port))
    out = result.stdout
    assert result.returncode == 1
    assert f"✗ no proxy is running on http://127.0.0.1:{port}" in out
    assert f"fix: start it: credproxy serve --port {port}" in out
    assert "no CA certificate yet" in out
    assert "no HTTPS_PROXY/https_proxy points at credproxy" in out and 'fix: eval "$(credproxy env)"' in out
    # the index is still described: the source, username, redacted secret and TLS settings
    assert "✓ private (https://pkgs.test:" in out and "netrc answers: username alice, secret ****" in out
    assert f"ca-bundle={world.ca_pem}" in out
    assert leaks(out + result.stderr) == []


def test_doctor_with_the_proxy_and_its_env_is_clean_and_checks_the_url(tmp_path):
    with World(tmp_path, config_extra=INDEX) as world:
        proxy = world.start()
        env_out = world.cli("env", "--port", str(proxy.port))
        assert env_out.returncode == 0, env_out.stderr
        shell = {**world.env, **exported(env_out.stdout)}
        url = world.url("pkgs.test", "/private/simple/demo/")
        result = world.cli("doctor", "--port", str(proxy.port), url, env=shell)
        world.stop()
    out = result.stdout
    assert result.returncode == 0, out
    assert f"✓ proxy listening on http://127.0.0.1:{proxy.port}" in out
    cert = x509.load_pem_x509_certificate(open(world.proxy_ca, "rb").read())
    fingerprint = cert.fingerprint(hashes.SHA256()).hex().upper()
    assert f"SHA-256 {':'.join(fingerprint[i:i + 2] for i in range(0, 64, 2))}" in out
    assert f"✓ HTTPS_PROXY=http://credproxy:****@127.0.0.1:{proxy.port} points at credproxy" in out
    assert "✓ SSL_CERT_FILE=" in out and "trusts credproxy's CA" in out
    assert f"✓ GET {url} through the proxy: 200" in out
    assert out.rstrip().endswith("No problems found.")
    assert result.stderr == ""  # no library warnings (cryptography on public roots) either
    assert leaks(out + result.stderr) == []


def test_doctor_url_without_a_proxy_asks_directly_and_names_a_rejected_credential(tmp_path):
    # no proxy: the test names only resolve inside one, so talk to 127.0.0.1 (in the cert's SANs)
    netrc = f"machine 127.0.0.1 login {USER} password wrong-{SECRET}\n"
    with World(tmp_path, netrc=netrc, config_extra=INDEX.replace("pkgs.test", "127.0.0.1")) as world:
        url = world.url("127.0.0.1", "/private/simple/demo/")
        result = world.cli("doctor", "--port", str(free_port()), url)
        unknown = world.url("pkgs.test", "/private/simple/demo/")
        unreachable = world.cli("doctor", "--port", str(free_port()), unknown)
    out = result.stdout
    assert result.returncode == 1
    assert f"✗ GET {url} direct (no proxy running): 403" in out
    assert "the upstream rejected the credential from netrc" in out
    # the netrc comes before the store in the chain: the fix is the netrc entry itself
    assert "fix: edit the password of 'machine 127.0.0.1' in your netrc file ($NETRC or ~/.netrc)" in out
    assert leaks(out + result.stderr) == [] and leaks(out, f"wrong-{SECRET}") == []
    assert unreachable.returncode == 1 and "Traceback" not in unreachable.stderr
    assert f"✗ GET {unknown} direct (no proxy running) failed: " in unreachable.stdout
