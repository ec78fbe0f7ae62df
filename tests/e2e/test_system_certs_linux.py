"""Issue 11 point 4 on Linux: `serve --system-certs` verifies upstream servers with the CA
installed in the OS's OpenSSL store (the bundle or the hashed directory), and `doctor` says
which roots are in use and how many.

The store is the real one at OpenSSL's default paths (/usr/lib/ssl/cert.pem and
/usr/lib/ssl/certs, links into /etc/ssl/certs on Debian): the proxy runs in a private mount
namespace (`unshare -rm`) where a temporary directory is mounted over /etc/ssl/certs, so the
test CA is "installed" for that process only and nothing of this machine changes."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.helpers.clients import client_env, curl
from tests.helpers.proxy import CREDPROXY, hermetic_env, proxy_env

STORE = "/etc/ssl/certs"


def _unshare_works() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    try:
        proc = subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare failed: {e}"
    if proc.returncode != 0:
        return "unprivileged user+mount namespaces are not allowed here: " + proc.stderr.decode(errors="replace")
    v = ssl.get_default_verify_paths()
    if not os.path.realpath(v.openssl_cafile).startswith(STORE + "/") or os.path.realpath(v.openssl_capath) != STORE:
        return f"OpenSSL's default store ({v.openssl_cafile}, {v.openssl_capath}) is not in {STORE} on this system"
    return None


pytestmark = pytest.mark.skipif(_unshare_works() is not None, reason=str(_unshare_works()))


def _link(store: Path, pem: Path, name: str) -> None:
    shutil.copy(pem, store / name)
    h = subprocess.run(["openssl", "x509", "-noout", "-subject_hash", "-in", str(pem)],
                       capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    (store / f"{h}.0").symlink_to(name)


def _install(tmp_path: Path, ca_pem: Path, *, bundle: bool, hashed: bool, other: Path | None = None) -> Path:
    """A stand-in for /etc/ssl/certs holding the test CA the way update-ca-certificates does:
    in ca-certificates.crt (the bundle) and/or as a `<subject hash>.0` link. `other`: another
    CA present as a hashed link (the directory is populated, just not with our CA)."""
    store = tmp_path / "os-store"
    store.mkdir()
    if bundle:
        shutil.copy(ca_pem, store / "ca-certificates.crt")
    if hashed:
        _link(store, ca_pem, "test-ca.pem")
    if other is not None:
        _link(store, other, "other-ca.pem")
    return store


def _in_namespace(store: Path) -> list[str]:
    """A command prefix: mount `store` over /etc/ssl/certs, then exec the rest."""
    return ["unshare", "-rm", "sh", "-c", f'mount --bind "$0" {STORE} && exec "$@"', str(store)]


def _get(proxy, url: str, tmp_path: Path) -> tuple[int, str]:
    env = client_env(tmp_path, proxy_url=proxy.url, ca_bundle=proxy.ca_cert)
    out = curl("-w", "\n%{http_code}", url, env=env)
    body, _, status = out.stdout.rpartition("\n")
    return int(status or 0), body


@pytest.mark.parametrize("bundle, hashed, other", [(True, False, False), (False, True, False), (True, True, False),
                                                   (True, False, True)],
                         ids=["bundle", "hashed-dir", "both", "appended-to-bundle-only"])
def test_serve_system_certs_trusts_a_ca_installed_in_the_os_store(tmp_path, tls_certs, echo_factory,
                                                                   credproxy_factory, bundle, hashed, other):
    """`appended-to-bundle-only`: the company CA was appended to ca-certificates.crt (a common
    recipe) without re-hashing the directory, which holds other CAs: the bundle must count
    too, not only the directory."""
    server = echo_factory(host="mirror.test")
    (tmp_path / "credproxy-config.toml").write_text('intercept-hosts = ["mirror.test"]\n')
    store = _install(tmp_path, tls_certs.ca_pem, bundle=bundle, hashed=hashed,
                     other=tls_certs.untrusted_ca_pem if other else None)
    proxy = credproxy_factory("--system-certs", env=proxy_env(tmp_path),
                              command=[*_in_namespace(store), str(CREDPROXY), "serve"])
    status, body = _get(proxy, server.url, tmp_path)
    assert status == 200, body + proxy.stderr()
    assert [r.path for r in server.requests] == ["/"]


def test_without_the_ca_in_the_store_the_upstream_is_refused(tmp_path, tls_certs, echo_factory, credproxy_factory):
    """The same set-up with a store that lacks the CA: the check above is not vacuous."""
    server = echo_factory(host="mirror.test")
    (tmp_path / "credproxy-config.toml").write_text('intercept-hosts = ["mirror.test"]\n')
    store = _install(tmp_path, tls_certs.untrusted_ca_pem, bundle=True, hashed=True)
    proxy = credproxy_factory("--system-certs", env=proxy_env(tmp_path),
                              command=[*_in_namespace(store), str(CREDPROXY), "serve"])
    status, body = _get(proxy, server.url, tmp_path)
    assert status == 502 and "unknown issuer" in body
    assert "add the CA to the OS store" in body
    assert server.requests == []


def test_doctor_names_the_os_store_and_counts_its_roots(tmp_path, tls_certs):
    store = _install(tmp_path, tls_certs.ca_pem, bundle=True, hashed=True)
    env = hermetic_env(tmp_path, UV_SYSTEM_CERTS="1")
    out = subprocess.run([*_in_namespace(store), str(CREDPROXY), "doctor"], env=env, capture_output=True,
                         text=True, timeout=60)
    section = out.stdout.split("Upstream trust", 1)[1].split("\n\n", 1)[0]
    assert "the OS trust store, 1 distinct certificate(s)" in section, out.stdout
    v = ssl.get_default_verify_paths()
    assert f"OpenSSL bundle {v.openssl_cafile}: 1" in section
    assert f"OpenSSL directory {v.openssl_capath}: 1" in section

    plain = subprocess.run([str(CREDPROXY), "doctor"], env=hermetic_env(tmp_path), capture_output=True,
                           text=True, timeout=60)
    assert "upstream roots: certifi's Mozilla roots" in plain.stdout
