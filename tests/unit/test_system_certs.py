"""The OS trust store per platform (credproxy.certs.system), from recorded tool output.

macOS and Windows cannot run here, so their stores are given as those tools hand them over:
`security find-certificate -a -p` prints concatenated PEM blocks, `security
trust-settings-export` writes Apple's trust-settings plist (trustList keyed by the
certificate's SHA-1), `ssl.enum_certificates` returns (bytes, encoding, trust) tuples. The
certificates are real ones generated with trustme; the fixtures are built from them in the
shapes the tools produce."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import plistlib
import ssl
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import trustme

from credproxy.certs import system
from credproxy.certs.system import (MACOS_SYSTEM_KEYCHAIN, MACOS_SYSTEM_ROOTS, SERVER_AUTH_OID, linux_store,
                                    macos_roots, macos_store, parse_trust_settings, pem_to_ders, windows_roots,
                                    windows_store)

SSL_POLICY = bytes.fromhex("2a864886f763640103")  # 1.2.840.113635.100.1.3, as the plist stores it
CODE_SIGNING_POLICY = bytes.fromhex("2a864886f763640109")  # another Apple policy OID


def _cas(n: int) -> list[trustme.CA]:
    return [trustme.CA(organization_name=f"Test Root {i}") for i in range(n)]


def _der(ca: trustme.CA) -> bytes:
    return ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode())


def _sha1(ca: trustme.CA) -> str:
    return hashlib.sha1(_der(ca)).hexdigest().upper()


def _security_output(cas: list[trustme.CA]) -> bytes:
    """What `security find-certificate -a -p KEYCHAIN` prints: PEM blocks back to back."""
    return b"".join(ca.cert_pem.bytes() for ca in cas)


def _trust_export(entries: dict[str, list[dict]]) -> bytes:
    """A `security trust-settings-export` file: Apple's XML plist (TrustSettingsSchema)."""
    return plistlib.dumps({
        "trustList": {sha1: {"issuerName": b"0\x00", "serialNumber": b"\x01",
                             "modDate": datetime.datetime(2024, 5, 1, 12, 0, 0),
                             "trustSettings": settings}
                      for sha1, settings in entries.items()},
        "trustVersion": 1,
    }, fmt=plistlib.FMT_XML)


# --- macOS --------------------------------------------------------------------------------------


def test_trust_settings_verdicts_for_tls():
    data = _trust_export({
        "AA" * 20: [],  # empty array: always trust as root
        "BB" * 20: [{"kSecTrustSettingsPolicy": SSL_POLICY, "kSecTrustSettingsPolicyName": "sslServer",
                     "kSecTrustSettingsResult": 3}],  # "Never Trust" for SSL
        "CC" * 20: [{"kSecTrustSettingsPolicy": CODE_SIGNING_POLICY, "kSecTrustSettingsPolicyName": "CodeSigning",
                     "kSecTrustSettingsResult": 3}],  # denied for code signing only: no TLS verdict
        "DD" * 20: [{"kSecTrustSettingsResult": 2}],  # trust as root, every policy
        "EE" * 20: [{"kSecTrustSettingsApplication": b"app", "kSecTrustSettingsResult": 1}],  # one app only
        "ff" * 20: [{"kSecTrustSettingsPolicy": SSL_POLICY, "kSecTrustSettingsResult": 1},
                    {"kSecTrustSettingsResult": 3}],  # a deny constraint wins
    })
    assert parse_trust_settings(data) == {"AA" * 20: 1, "BB" * 20: 3, "CC" * 20: 4, "DD" * 20: 2,
                                          "EE" * 20: 4, "FF" * 20: 3}


@pytest.mark.parametrize("data", [b"", b"not a plist", plistlib.dumps(["a list"]), plistlib.dumps({"trustList": 3})])
def test_trust_settings_damaged_or_empty_export_gives_no_verdicts(data):
    assert parse_trust_settings(data) == {}


def test_macos_roots_follow_keychains_and_trust_settings():
    apple_a, apple_b, distrusted_root, company, stray, user_ca = _cas(6)
    keychains = [
        (MACOS_SYSTEM_ROOTS, _security_output([apple_a, apple_b, distrusted_root])),
        (MACOS_SYSTEM_KEYCHAIN, _security_output([company, stray])),  # stray: an intermediate, no setting
        ("/Users/me/Library/Keychains/login.keychain-db", _security_output([user_ca, company])),
    ]
    admin = _trust_export({_sha1(company): [{"kSecTrustSettingsPolicy": SSL_POLICY, "kSecTrustSettingsResult": 1}],
                           _sha1(user_ca): [{"kSecTrustSettingsResult": 3}]})
    user = _trust_export({_sha1(distrusted_root): [{"kSecTrustSettingsPolicy": SSL_POLICY,
                                                    "kSecTrustSettingsResult": 3}],
                          _sha1(user_ca): []})  # the user domain overrides the admin deny
    roots, origins, denied = macos_roots(keychains, [("admin", admin), ("user", user)])
    assert roots == [_der(apple_a), _der(apple_b), _der(company), _der(user_ca)]
    assert [(o.name.split()[-1], o.count) for o in origins] == [
        (MACOS_SYSTEM_ROOTS, 2), (MACOS_SYSTEM_KEYCHAIN, 1), ("/Users/me/Library/Keychains/login.keychain-db", 1)]
    assert denied == 1


def test_macos_store_runs_security_and_writes_pem(tmp_path):
    apple, company = _cas(2)
    calls = []

    def run(argv):
        calls.append(argv)
        if argv[1] == "find-certificate":
            return 0, {MACOS_SYSTEM_ROOTS: _security_output([apple]),
                       MACOS_SYSTEM_KEYCHAIN: _security_output([company])}.get(argv[-1], b"")
        if argv[1] == "trust-settings-export":
            if "-d" in argv:  # admin domain: the company CA was made a root (MDM profile)
                Path(argv[-1]).write_bytes(_trust_export({_sha1(company): []}))
                return 0, b""
            return 1, b""  # "No Trust Settings were found." for the user domain
        raise AssertionError(argv)

    store = macos_store(run=run, home="/Users/me")
    assert [c[:3] for c in calls[:3]] == [["security", "find-certificate", "-a"]] * 3
    assert calls[0][-1] == MACOS_SYSTEM_ROOTS and calls[2][-1] == "/Users/me/Library/Keychains/login.keychain-db"
    assert store.platform == "macos" and store.count == 2 and store.ca_dir is None
    assert pem_to_ders(store.pem) == [_der(apple), _der(company)]
    path = system.write_pem(store.pem, tmp_path / "data")
    ctx = ssl.create_default_context(cafile=str(path))  # OpenSSL reads what we wrote
    assert len(ctx.get_ca_certs()) == 2


def test_macos_store_reports_a_failing_security_tool():
    store = macos_store(run=lambda argv: (-1, b"No such file or directory: 'security'"), home="/Users/me")
    assert store.count == 0 and store.pem == b""
    assert any("security find-certificate" in w for w in store.warnings)


def test_run_reads_a_real_tool_up_to_the_limit_and_no_further():
    """certs/system.py `_run` is the credential helpers' bounded runner: exactly
    MAX_COMMAND_OUTPUT bytes are an answer; one byte more is a failed tool, not a cut answer."""
    limit = system.MAX_COMMAND_OUTPUT
    prints = "import sys; sys.stdout.buffer.write(b'x' * {}); sys.stdout.flush(); import time; time.sleep({})"
    code, out = system._run([sys.executable, "-c", prints.format(limit, 0)])
    assert code == 0 and len(out) == limit
    started = time.monotonic()
    code, out = system._run([sys.executable, "-c", prints.format(limit + 1, 60)])
    assert time.monotonic() - started < 15  # killed at the limit, not at its exit
    assert code == system.TOOL_FAILED and out.decode() == f"{Path(sys.executable).name}: printed more than 32 MiB on stdout, killed"


def test_a_keychain_over_the_limit_is_left_out_with_a_warning_never_cut(tmp_path, monkeypatch):
    """A real `security` program on PATH (macOS cannot run here) through the real `_run`:
    the system roots print a PEM; the System keychain prints a valid PEM and then more than
    the limit. The first is loaded; the second is no keychain at all (its first, whole
    certificate is not taken from a cut output), and the warning names the limit."""
    apple, company = _cas(2)
    outputs = {MACOS_SYSTEM_ROOTS: _security_output([apple]),
               MACOS_SYSTEM_KEYCHAIN: _security_output([company]) + b"\n" * system.MAX_COMMAND_OUTPUT}
    data = tmp_path / "outputs.json"
    data.write_text(json.dumps({k: v.decode() for k, v in outputs.items()}))
    tool = tmp_path / "bin" / "security"
    tool.parent.mkdir()
    tool.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"outputs = json.load(open({str(data)!r}))\n"
                    "if sys.argv[1] != 'find-certificate': sys.exit(1)  # no trust settings\n"
                    "sys.stdout.write(outputs.get(sys.argv[-1], ''))\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ['PATH']}")
    store = macos_store(home=str(tmp_path))
    assert pem_to_ders(store.pem) == [_der(apple)]
    [warning] = store.warnings
    assert MACOS_SYSTEM_KEYCHAIN in warning and "more than 32 MiB on stdout" in warning, warning
    assert "left out" in warning


# --- Windows ------------------------------------------------------------------------------------


def test_windows_roots_keep_server_auth_x509_entries():
    root, ca_inter, code_only, pkcs7, dup = _cas(5)
    stores = {
        "ROOT": [(_der(root), "x509_asn", True),  # trusted for all purposes
                 (_der(code_only), "x509_asn", {"1.3.6.1.5.5.7.3.3"}),  # code signing only: left out
                 (_der(pkcs7), "pkcs_7_asn", True),  # not an X.509 entry: left out
                 (_der(dup), "x509_asn", {SERVER_AUTH_OID, "1.3.6.1.5.5.7.3.2"})],
        "CA": [(_der(ca_inter), "x509_asn", {SERVER_AUTH_OID}),
               (_der(root), "x509_asn", True)],  # the same certificate again counts once
    }
    roots, origins = windows_roots(stores)
    assert roots == [_der(root), _der(dup), _der(ca_inter)]
    assert [(o.name, o.count) for o in origins] == [("Windows certificate store ROOT", 2),
                                                    ("Windows certificate store CA", 1)]


def test_windows_store_enumerates_root_and_ca():
    root, = _cas(1)
    seen = []

    def enum(name):
        seen.append(name)
        if name == "CA":
            raise PermissionError("access denied")
        return [(_der(root), "x509_asn", True)]

    store = windows_store(enum=enum)
    assert seen == ["ROOT", "CA"]
    assert store.count == 1 and pem_to_ders(store.pem) == [_der(root)]
    assert any("CA" in w and "access denied" in w for w in store.warnings)


# --- Linux --------------------------------------------------------------------------------------


def _hashed_dir(tmp_path: Path, cas: list[trustme.CA]) -> Path:
    d = tmp_path / "certs"
    d.mkdir()
    for i, ca in enumerate(cas):
        f = d / f"ca{i}.pem"
        ca.cert_pem.write_to_path(str(f))
        h = subprocess.run(["openssl", "x509", "-noout", "-subject_hash", "-in", str(f)],
                           capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        (d / f"{h}.0").symlink_to(f.name)
    return d


def test_linux_store_uses_openssl_bundle_and_directory(tmp_path):
    a, b, c = _cas(3)
    bundle = tmp_path / "cert.pem"
    bundle.write_bytes(_security_output([a, b]))
    d = _hashed_dir(tmp_path, [b, c])
    paths = SimpleNamespace(openssl_cafile=str(bundle), openssl_capath=str(d))
    store = linux_store(paths, bundles=(), dirs=())
    assert (store.ca_file, store.ca_dir) == (str(bundle), str(d))
    assert store.count == 3  # b is in both
    assert [(o.name, o.count) for o in store.origins] == [(f"OpenSSL bundle {bundle}", 2),
                                                          (f"OpenSSL directory {d}", 2)]


def test_linux_store_falls_back_to_distribution_paths(tmp_path):
    a, = _cas(1)
    distro = tmp_path / "ca-bundle.crt"
    distro.write_bytes(_security_output([a]))
    paths = SimpleNamespace(openssl_cafile=str(tmp_path / "missing.pem"), openssl_capath=str(tmp_path / "nodir"))
    store = linux_store(paths, bundles=(str(distro),), dirs=(str(tmp_path / "nodir2"),))
    assert store.ca_file == str(distro) and store.ca_dir is None and store.count == 1


def test_linux_store_names_the_fix_when_nothing_is_found(tmp_path):
    paths = SimpleNamespace(openssl_cafile=str(tmp_path / "a.pem"), openssl_capath=str(tmp_path / "d"))
    store = linux_store(paths, bundles=(), dirs=())
    assert store.count == 0 and store.ca_file is None and store.ca_dir is None
    assert "ca-certificates" in store.warnings[0] and str(tmp_path / "a.pem") in store.warnings[0]


def test_pem_parsing_skips_damaged_blocks():
    a, = _cas(1)
    text = a.cert_pem.bytes() + b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"
    assert pem_to_ders(text) == [_der(a)]


@pytest.mark.parametrize("platform, expected", [("darwin", "macos"), ("win32", "windows"), ("linux", "linux"),
                                                ("freebsd14", "linux")])
def test_platform_dispatch(platform, expected):
    assert system.platform_name(platform) == expected
