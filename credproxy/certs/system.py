"""The OS trust store as PEM roots for mitmproxy's own OpenSSL context (`system-certs`).

mitmproxy verifies upstream servers with a pyOpenSSL context of its own, so truststore's patch
of `ssl.SSLContext` does not reach it: it needs a PEM file and/or a hashed directory. This
module turns each OS's store into that:

- Linux/BSD: OpenSSL's default bundle and hashed directory (`ssl.get_default_verify_paths()`,
  never the SSL_CERT_FILE/SSL_CERT_DIR overrides, which credproxy interprets as custom roots),
  then the usual distribution bundle paths.
- macOS: the keychains as `security find-certificate -a -p` prints them (the system roots,
  the System keychain, the login keychain) filtered by the admin and user trust settings from
  `security trust-settings-export` (Apple's documented plist, TrustSettingsSchema): a
  certificate marked "Never Trust" is left out; a certificate outside the system roots
  keychain counts only when a trust setting makes it a root.
- Windows: `ssl.enum_certificates("ROOT")` and `("CA")`, X.509 entries trusted for all
  purposes or for server authentication (what `ssl.create_default_context()` loads).

The parsing is pure functions over command output and enumerated tuples (unit-tested with
recorded outputs); `load_store()` is the thin layer that runs the commands. No secrets pass
through here: certificates are public."""

from __future__ import annotations

import base64
import hashlib
import os
import plistlib
import re
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from ..credentials.sources.process import run_bounded
from ..paths import platform_name

_PEM_CERT = re.compile(rb"-----BEGIN (?:TRUSTED )?CERTIFICATE-----\s*(.+?)\s*-----END (?:TRUSTED )?CERTIFICATE-----",
                       re.S)

# Linux/BSD: the bundles distributions ship, after OpenSSL's compiled-in default
DISTRO_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian/Ubuntu/Alpine/Gentoo
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora/RHEL
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # RHEL/CentOS 7+
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # Alpine, BSD
)
DISTRO_DIRS = ("/etc/ssl/certs", "/etc/pki/tls/certs")

# macOS keychains holding roots (the login keychain is added per user)
MACOS_SYSTEM_ROOTS = "/System/Library/Keychains/SystemRootCertificates.keychain"
MACOS_SYSTEM_KEYCHAIN = "/Library/Keychains/System.keychain"

# trust settings (SecTrustSettings.h)
_RESULT_TRUST_ROOT, _RESULT_TRUST_AS_ROOT, _RESULT_DENY, _RESULT_UNSPECIFIED = 1, 2, 3, 4
_APPLE_SSL_POLICY_OID = bytes.fromhex("2a864886f763640103")  # 1.2.840.113635.100.1.3 (kSecPolicyAppleSSL)
_SSL_POLICY_NAMES = {"sslServer", "SSL"}

SERVER_AUTH_OID = "1.3.6.1.5.5.7.3.1"

# bounds for what the `security` tool prints (a keychain of roots is ~300 KB)
MAX_COMMAND_OUTPUT = 32 * 1024 * 1024
COMMAND_TIMEOUT = 20.0
TOOL_FAILED = -1  # _run's status for a tool killed (time, output) or not started


@dataclass
class Origin:
    """One place roots came from: 'macOS keychain /System/...: 150' in doctor."""

    name: str
    count: int


@dataclass
class SystemStore:
    """The OS store as mitmproxy takes it: a PEM file (ca_file) and/or a hashed directory
    (ca_dir). For macOS/Windows the roots are collected into `pem` and written to a file by
    the caller (credproxy's data dir); on Linux the OS's own file and directory are used."""

    platform: str  # "linux" | "macos" | "windows"
    origins: list[Origin] = field(default_factory=list)
    ca_file: str | None = None
    ca_dir: str | None = None
    pem: bytes | None = None
    warnings: list[str] = field(default_factory=list)
    distrusted: int = 0  # macOS: certificates left out because a trust setting denies them
    count: int = 0  # distinct roots over all origins

    @property
    def where(self) -> str:
        text = "; ".join(f"{o.name}: {o.count}" for o in self.origins) or "nothing found"
        return text + (f"; {self.distrusted} marked as not trusted left out" if self.distrusted else "")


# --- PEM / DER helpers ----------------------------------------------------------------------------


def pem_to_ders(data: bytes | str) -> list[bytes]:
    """Every certificate in PEM text (what `security find-certificate -p` prints), as DER."""
    if isinstance(data, str):
        data = data.encode("ascii", "replace")
    ders = []
    for m in _PEM_CERT.finditer(data):
        try:
            ders.append(base64.b64decode(b"".join(m.group(1).split()), validate=True))
        except ValueError:
            continue  # a damaged block is skipped, not fatal
    return ders


def ders_to_pem(ders: Iterable[bytes]) -> bytes:
    return b"".join(ssl.DER_cert_to_PEM_cert(d).encode("ascii") for d in ders)


def _unique(ders: Iterable[bytes]) -> list[bytes]:
    seen: set[bytes] = set()
    out = []
    for d in ders:
        key = hashlib.sha256(d).digest()
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def count_in_file(path: str | Path) -> int:
    try:
        return len(pem_to_ders(Path(path).read_bytes()))
    except OSError:
        return 0


def ders_in_dir(path: str | Path) -> list[bytes]:
    """Certificates in an OpenSSL hashed directory: the `<hash>.<n>` entries."""
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return []
    ders = []
    for n in names:
        if re.fullmatch(r"[0-9a-f]{8}\.\d+", n):
            try:
                ders += pem_to_ders(Path(path, n).read_bytes())
            except OSError:
                continue
    return ders


def count_in_dir(path: str | Path) -> int:
    return len(ders_in_dir(path))


# --- Linux / BSD ----------------------------------------------------------------------------------


def linux_store(verify_paths=None, bundles: Sequence[str] = DISTRO_BUNDLES,
                dirs: Sequence[str] = DISTRO_DIRS) -> SystemStore:
    """OpenSSL's compiled-in bundle and directory, else the first distribution path found.
    Both the file and the directory are given to mitmproxy (OpenSSL reads both)."""
    v = verify_paths or ssl.get_default_verify_paths()
    store = SystemStore("linux")
    ca_dir = next((d for d in (v.openssl_capath, *dirs) if d and count_in_dir(d)), None)
    ca_file = next((f for f in (v.openssl_cafile, *bundles) if f and os.path.isfile(f) and count_in_file(f)), None)
    if ca_file:
        store.ca_file = ca_file
        store.origins.append(Origin(f"OpenSSL bundle {ca_file}", count_in_file(ca_file)))
    if ca_dir:
        store.ca_dir = ca_dir
        store.origins.append(Origin(f"OpenSSL directory {ca_dir}", count_in_dir(ca_dir)))
    union = (pem_to_ders(Path(ca_file).read_bytes()) if ca_file else []) + (ders_in_dir(ca_dir) if ca_dir else [])
    store.count = len(_unique(union))
    if not (ca_file or ca_dir):
        store.warnings.append("system-certs: no OpenSSL bundle or hashed directory found (looked at "
                              + ", ".join(x for x in (v.openssl_cafile, v.openssl_capath, *bundles) if x)
                              + "); install your distribution's ca-certificates package")
    return store


# --- macOS ----------------------------------------------------------------------------------------


def parse_trust_settings(plist_data: bytes) -> dict[str, int]:
    """`security trust-settings-export` output -> {SHA-1 hex (upper case): result} where result
    is the verdict for TLS server use: 1/2 trusted as a root, 3 denied, 4 unspecified.

    A certificate's entry is an array of usage constraints; an empty array means "always
    trust as root". Only constraints that apply to TLS matter: no policy, or the SSL policy;
    constraints limited to one application are not ours. Deny wins over trust."""
    if not plist_data.strip():
        return {}
    try:
        doc = plistlib.loads(plist_data)
    except Exception:  # plistlib raises several types on damaged input
        return {}
    verdicts: dict[str, int] = {}
    trust_list = doc.get("trustList", {}) if isinstance(doc, dict) else {}
    for sha1, entry in (trust_list.items() if isinstance(trust_list, dict) else []):
        settings = entry.get("trustSettings") if isinstance(entry, dict) else None
        if settings is None:
            continue
        if settings == []:
            verdicts[sha1.upper()] = _RESULT_TRUST_ROOT
            continue
        verdict = _RESULT_UNSPECIFIED
        for constraint in settings:
            if not isinstance(constraint, dict) or "kSecTrustSettingsApplication" in constraint:
                continue
            policy = constraint.get("kSecTrustSettingsPolicy")
            name = constraint.get("kSecTrustSettingsPolicyName")
            if policy is not None and bytes(policy) != _APPLE_SSL_POLICY_OID and name not in _SSL_POLICY_NAMES:
                continue
            result = constraint.get("kSecTrustSettingsResult", _RESULT_TRUST_ROOT)
            if result == _RESULT_DENY:
                verdict = _RESULT_DENY
                break
            if result in (_RESULT_TRUST_ROOT, _RESULT_TRUST_AS_ROOT):
                verdict = result
        verdicts[sha1.upper()] = verdict
    return verdicts


def macos_roots(keychains: Sequence[tuple[str, str | bytes]],
                trust_domains: Sequence[tuple[str, bytes]]) -> tuple[list[bytes], list[Origin], int]:
    """(roots as DER, origins, how many were left out as distrusted).

    keychains: (path, `security find-certificate -a -p PATH` output); the first path that is
    the system roots keychain is trusted by default. trust_domains: (name, export) in order
    of precedence, lowest first (admin, then user): the later domain's verdict wins."""
    verdicts: dict[str, int] = {}
    for _name, data in trust_domains:
        for sha1, verdict in parse_trust_settings(data).items():
            if verdict != _RESULT_UNSPECIFIED:
                verdicts[sha1] = verdict
    roots: list[bytes] = []
    origins: list[Origin] = []
    denied = 0
    seen: set[bytes] = set()
    for path, output in keychains:
        default_trusted = path == MACOS_SYSTEM_ROOTS
        count = 0
        for der in pem_to_ders(output):
            sha1 = hashlib.sha1(der).hexdigest().upper()
            verdict = verdicts.get(sha1, _RESULT_TRUST_ROOT if default_trusted else _RESULT_UNSPECIFIED)
            if verdict == _RESULT_DENY:
                denied += 1
                continue
            if verdict not in (_RESULT_TRUST_ROOT, _RESULT_TRUST_AS_ROOT) or der in seen:
                continue
            seen.add(der)
            roots.append(der)
            count += 1
        origins.append(Origin(f"macOS keychain {path}", count))
    return roots, origins, denied


def _run(argv: list[str]) -> tuple[int, bytes]:
    """Run a store tool with the runner every credential helper uses
    (credentials/sources/process.py): read as it comes, at most MAX_COMMAND_OUTPUT bytes
    and COMMAND_TIMEOUT seconds. (returncode, stdout); (TOOL_FAILED, why) when it was killed
    (over the limit: never a cut PEM parsed as if whole) or could not start."""
    outcome = run_bounded(argv, env=None, timeout=COMMAND_TIMEOUT, limit=MAX_COMMAND_OUTPUT)
    if not outcome.exited:
        return TOOL_FAILED, f"{os.path.basename(argv[0])}: {outcome.problem}".encode()
    return outcome.returncode or 0, outcome.stdout


def _failure(argv: list[str], code: int, out: bytes) -> str:
    why = out.decode("utf-8", "replace") if code == TOOL_FAILED else f"exit {code}"
    return f"system-certs: `{' '.join(argv[:3])} {argv[-1]}` failed ({why}); its certificates are left out"


def macos_store(run: Callable[[list[str]], tuple[int, bytes]] = _run, home: str | None = None) -> SystemStore:
    store = SystemStore("macos")
    home = home or os.path.expanduser("~")
    paths = [MACOS_SYSTEM_ROOTS, MACOS_SYSTEM_KEYCHAIN, os.path.join(home, "Library/Keychains/login.keychain-db")]
    keychains = []
    for path in paths:
        argv = ["security", "find-certificate", "-a", "-p", path]
        code, out = run(argv)
        if code == 0:
            keychains.append((path, out))
        elif path == MACOS_SYSTEM_ROOTS or code == TOOL_FAILED:
            store.warnings.append(_failure(argv, code, out))
    domains = []
    for name, flag in (("admin", ["-d"]), ("user", [])):
        # the tool writes the plist to a file; a domain without settings exits non-zero
        with tempfile.TemporaryDirectory(prefix="credproxy-trust-") as tmp:
            target = os.path.join(tmp, "trust.plist")
            argv = ["security", "trust-settings-export", *flag, target]
            code, out = run(argv)
            if code == TOOL_FAILED:
                store.warnings.append(_failure(argv, code, out))
            elif code == 0 and os.path.isfile(target):
                with open(target, "rb") as f:
                    plist = f.read(MAX_COMMAND_OUTPUT + 1)
                if len(plist) > MAX_COMMAND_OUTPUT:
                    store.warnings.append(f"system-certs: the {name} trust settings are larger than "
                                          f"{MAX_COMMAND_OUTPUT >> 20} MiB; left out")
                else:
                    domains.append((name, plist))
    roots, origins, denied = macos_roots(keychains, domains)
    store.origins, store.distrusted, store.count = origins, denied, len(roots)
    store.pem = ders_to_pem(roots)
    return store


# --- Windows --------------------------------------------------------------------------------------


def windows_roots(stores: Mapping[str, Sequence[tuple[bytes, str, object]]]) -> tuple[list[bytes], list[Origin]]:
    """`ssl.enum_certificates(name)` per store name -> (roots as DER, origins). Keeps X.509
    entries trusted for all purposes (True) or for server authentication, as the ssl module
    does for its default context."""
    roots: list[bytes] = []
    origins: list[Origin] = []
    seen: set[bytes] = set()
    for name, entries in stores.items():
        count = 0
        for der, encoding, trust in entries:
            if encoding != "x509_asn":
                continue
            if trust is not True and SERVER_AUTH_OID not in (trust or ()):
                continue
            if der in seen:
                continue
            seen.add(der)
            roots.append(der)
            count += 1
        origins.append(Origin(f"Windows certificate store {name}", count))
    return roots, origins


def windows_store(enum: Callable[[str], list] | None = None) -> SystemStore:
    enum = enum or getattr(ssl, "enum_certificates")
    store = SystemStore("windows")
    stores = {}
    for name in ("ROOT", "CA"):
        try:
            stores[name] = enum(name)
        except (OSError, PermissionError) as e:
            store.warnings.append(f"system-certs: cannot read the Windows store {name}: {e}")
    roots, store.origins = windows_roots(stores)
    store.count = len(roots)
    store.pem = ders_to_pem(roots)
    return store


# --- dispatch -------------------------------------------------------------------------------------


def load_store(platform: str | None = None) -> SystemStore:
    """The OS store for this platform (Linux/BSD, macOS, Windows)."""
    name = platform_name(platform)
    if name == "macos":
        return macos_store()
    if name == "windows":
        return windows_store()
    return linux_store()


def write_pem(pem: bytes, directory: Path) -> Path:
    """Write collected roots (macOS/Windows) as `system-roots.pem` in `directory`, atomically,
    world-readable like any public certificate file; return its path."""
    from .. import paths

    return paths.write_atomic(directory / "system-roots.pem", pem, 0o644)
