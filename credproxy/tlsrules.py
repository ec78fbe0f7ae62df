"""Upstream TLS policy as pure data: which roots, which client certificate, which hosts skip
verification, and what to tell the user when a handshake fails.

No mitmproxy import: the addon (addons/upstream_tls.py), `credproxy explain` and `credproxy
doctor` all read the same `TlsPlan`, so what doctor shows is what the proxy does.

Rules follow uv (uv-auth-reference.md §14-§15) with these deliberate differences:
- `allow-insecure-host`: hosts are compared case-insensitively, `host:443` matches port 443
  (a proxy cannot tell an explicit default port from an implied one), and bracketed IPv6
  literals (`[::1]:8443`) are understood.
- client certificates: besides the global `SSL_CLIENT_CERT`, `[[client-cert]]` rules per host
  pattern; the most specific wins (host:port > host > longest `*.suffix` > global).
- the roots never collapse to credproxy's own exported bundle: if the proxy's own
  `SSL_CERT_FILE` is that bundle (someone ran `eval "$(credproxy env)"` before `serve`), it is
  ignored: the value `credproxy env` replaced (CREDPROXY_PREVIOUS_SSL_CERT_FILE) applies when
  there was one, else the default roots.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping
from urllib.parse import urlsplit

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import paths
from .config import ClientCertRule, ConfigError
from .config.values import shown_value as _shown  # a value in a message, userinfo masked

_TRUE = {"1", "true", "yes", "y", "on"}


def env_flag(value: str | None) -> bool:
    """uv's boolish environment values."""
    return value is not None and value.strip().lower() in _TRUE


def _setting(settings, name: str, env_name: str) -> str | None:
    """A settings field when the config layer has one, else the environment (empty = unset,
    as uv treats it)."""
    value = getattr(settings, name, None)
    if value:
        return str(value)
    value = settings.env.get(env_name)
    return value or None


def _norm_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def split_host_port(text: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]`, `[v6]:port`, bare `v6` -> (lower-case host, port).
    Raises ValueError for a bad port."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"unclosed '[' in {_shown(text)!r}")
        host, rest = text[1:end], text[end + 1 :]
        if not rest:
            return _norm_host(host), None
        if not rest.startswith(":"):
            raise ValueError(f"unexpected {_shown(rest)!r} after {_shown(host)!r}")
        return _norm_host(host), _port(rest[1:], text)
    if text.count(":") > 1:  # a bare IPv6 literal
        return _norm_host(text), None
    if ":" in text:
        host, port = text.split(":", 1)
        return _norm_host(host), _port(port, text)
    return _norm_host(text), None


def _port(value: str, whole: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"invalid port in {_shown(whole)!r}")
    return int(value)


# --- allow-insecure-host ---------------------------------------------------------------------


@dataclass(frozen=True)
class InsecureHost:
    """One `allow-insecure-host` entry: `*`, or optional scheme + host + optional port."""

    entry: str
    host: str  # "*" for everything
    port: int | None = None
    scheme: str | None = None

    @classmethod
    def parse(cls, entry: str) -> "InsecureHost":
        text = entry.strip()
        if text == "*":
            return cls(entry=entry, host="*")
        scheme = None
        for prefix in ("https://", "http://"):
            if text.lower().startswith(prefix):
                scheme, text = prefix[:-3], text[len(prefix) :]
                break
        netloc, slash, _path = text.partition("/")
        host, port = split_host_port(netloc)  # uv: `host:port/path` is an invalid port; so here
        if not host:
            raise ValueError(f"no host in {_shown(entry)!r}")
        return cls(entry=entry, host=host, port=port, scheme=scheme)

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if self.host == "*":
            return True
        if self.scheme is not None and self.scheme != scheme.lower():
            return False
        if self.host != _norm_host(host):
            return False
        return self.port is None or self.port == port


def parse_insecure_hosts(entries: Iterable[str], origin: str = "allow-insecure-host") -> list[InsecureHost]:
    out = []
    for entry in entries:
        try:
            out.append(InsecureHost.parse(entry))
        except ValueError as e:
            raise ConfigError(f"{origin}: {e} (expected host, host:port or https://host[:port])") from None
    return out


def insecure_match(entries: Iterable[InsecureHost], scheme: str, host: str, port: int) -> InsecureHost | None:
    return next((e for e in entries if e.matches(scheme, host, port)), None)


# --- client certificate patterns ---------------------------------------------------------------


@dataclass(frozen=True)
class HostPattern:
    """`host`, `host:port`, `[v6]:port`, `*.suffix`, `*.suffix:port`, or `*` (every host)."""

    text: str
    host: str  # for a wildcard: the suffix without "*."
    port: int | None
    wildcard: bool

    @classmethod
    def parse(cls, text: str) -> "HostPattern":
        raw = text.strip()
        if raw == "*":  # every host: a wildcard with an empty suffix
            return cls(text=text, host="", port=None, wildcard=True)
        wildcard = raw.startswith("*.")
        host, port = split_host_port(raw[2:] if wildcard else raw)
        if not host or "*" in host or "/" in host:
            raise ValueError(f"invalid host pattern {_shown(text)!r}")
        return cls(text=text, host=host, port=port, wildcard=wildcard)

    def matches(self, host: str, port: int) -> bool:
        host = _norm_host(host)
        if self.port is not None and self.port != port:
            return False
        if self.wildcard:
            return not self.host or host.endswith("." + self.host)
        return host == self.host

    def specificity(self) -> tuple:
        """Bigger is more specific: exact host:port, exact host, then wildcards by suffix
        length (a port on a wildcard breaks ties)."""
        if not self.wildcard:
            return (2 if self.port is not None else 1, 0, 0)
        return (0, len(self.host), 1 if self.port is not None else 0)


def parse_host_patterns(texts: Iterable[str], origin: str) -> list[HostPattern]:
    out = []
    for text in texts:
        try:
            out.append(HostPattern.parse(text))
        except ValueError as e:
            raise ConfigError(f"{origin}: {e} (expected host, *.suffix or host:port)") from None
    return out


# --- PEM validation ------------------------------------------------------------------------------

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.S)


class PemError(ValueError):
    pass


@dataclass(frozen=True)
class ClientPem:
    path: str
    subject: str
    chain_length: int  # certificates in the file, leaf included
    not_after: str


def load_client_pem(path: str) -> ClientPem:
    """Check a client PEM the way OpenSSL will use it (`use_privatekey_file` then
    `use_certificate_chain_file`): one unencrypted private key, the leaf as the first
    certificate and matching the key, any chain after it. Key and certificates in either
    order. Raises PemError with the reason (never the key material)."""
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as e:
        raise PemError(f"cannot read {path}: {e.strerror or e}") from None
    blocks = [(m.group(1).decode(), m.group(0)) for m in _PEM_BLOCK.finditer(data)]
    cert_blocks = [b for kind, b in blocks if kind in ("CERTIFICATE", "TRUSTED CERTIFICATE")]
    key_blocks = [(kind, b) for kind, b in blocks if kind.endswith("PRIVATE KEY")]
    if not cert_blocks:
        raise PemError(f"{path}: no certificate found (expected PEM with certificate and private key)")
    if not key_blocks:
        raise PemError(f"{path}: no private key found (expected PEM with certificate and private key)")
    if key_blocks[0][0] == "ENCRYPTED PRIVATE KEY" or b"ENCRYPTED" in key_blocks[0][1][:200]:
        raise PemError(f"{path}: the private key is encrypted; an unencrypted key is needed")
    try:
        key = serialization.load_pem_private_key(key_blocks[0][1], password=None)
    except (ValueError, TypeError) as e:
        raise PemError(f"{path}: the private key cannot be loaded ({type(e).__name__})") from None
    try:
        certs = [x509.load_pem_x509_certificate(b) for b in cert_blocks]
    except ValueError:
        raise PemError(f"{path}: a certificate cannot be parsed") from None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if certs[0].public_key().public_bytes(enc, pub) != key.public_key().public_bytes(enc, pub):
        raise PemError(f"{path}: the first certificate does not match the private key "
                       "(put the client certificate first, then its chain)")
    leaf = certs[0]
    not_after = getattr(leaf, "not_valid_after_utc", None) or leaf.not_valid_after
    return ClientPem(path=str(path), subject=leaf.subject.rfc4514_string(),
                     chain_length=len(certs), not_after=not_after.isoformat())


def count_pem_certs(path: Path) -> int:
    try:
        data = path.read_bytes()
    except OSError:
        return 0
    return sum(1 for m in _PEM_BLOCK.finditer(data) if m.group(1) in (b"CERTIFICATE", b"TRUSTED CERTIFICATE"))


# --- roots ---------------------------------------------------------------------------------------


@dataclass
class Roots:
    """What upstream certificates are verified against.

    kind: "certifi" | "system" | "custom" | "none". For mitmproxy: `ca_file` and `ca_dir`
    (both None = certifi, mitmproxy's own default). `files` lists the PEM files whose
    certificates were combined (custom roots)."""

    kind: str
    description: str
    ca_file: str | None = None
    ca_dir: str | None = None
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pem: bytes | None = None  # system roots collected from macOS keychains / Windows stores
    origins: list[tuple[str, int]] = field(default_factory=list)  # (where, how many) for doctor
    count: int = 0  # distinct system roots

    @property
    def fix_hint(self) -> str:
        return {
            "certifi": "set SSL_CERT_FILE or `ca-bundle` to your CA, or `system-certs = true` "
                       "(UV_SYSTEM_CERTS=1) to use the OS store",
            "system": "add the CA to the OS store, or set SSL_CERT_FILE / `ca-bundle` to it",
            "custom": "add the issuing CA to the file(s) given in SSL_CERT_FILE / SSL_CERT_DIR / `ca-bundle`",
            "none": "fix the SSL_CERT_FILE / SSL_CERT_DIR / `ca-bundle` path (no roots are trusted now)",
        }[self.kind]


def _own_exports(env: Mapping[str, str]) -> list[Path]:
    return [paths.bundle_path(env), paths.ca_dir(env) / "mitmproxy-ca-cert.pem"]


def _same_file(a: str | Path, b: Path) -> bool:
    try:
        return os.path.samefile(Path(a).expanduser(), b)
    except OSError:
        return Path(a).expanduser().absolute() == b.absolute()


@functools.cache
def system_store():
    """The OS trust store (credproxy.certs.system), read once per process: on macOS it runs
    `security`, and the roots are decided several times at start."""
    from .certs.system import load_store

    return load_store()


def _wants_system_certs(settings) -> tuple[bool, list[str]]:
    """settings.system_certs (config/CLI), else UV_SYSTEM_CERTS, else the deprecated
    UV_NATIVE_TLS (with a warning) -- UV_SYSTEM_CERTS wins over its alias, as in uv."""
    env = settings.env
    if getattr(settings, "system_certs", False):
        return True, []
    if env.get("UV_SYSTEM_CERTS", "").strip():
        return env_flag(env["UV_SYSTEM_CERTS"]), []
    if env_flag(env.get("UV_NATIVE_TLS")):
        return True, ["UV_NATIVE_TLS is deprecated; use UV_SYSTEM_CERTS (the system store is used)"]
    return False, []


def decide_roots(settings) -> Roots:
    """certifi by default; the OS store with system-certs; `ca-bundle` (config/CLI) or else
    SSL_CERT_FILE + SSL_CERT_DIR replace the roots, as uv's --cert / env vars do. A path that
    yields no certificate leaves no roots trusted, with a warning (uv's rule)."""
    env = settings.env
    warnings: list[str] = []
    sources: list[tuple[str, str]] = []  # (label, path)
    ca_bundle = getattr(settings, "ca_bundle", None)
    if ca_bundle:
        sources.append(("ca-bundle", str(ca_bundle)))
    else:
        cert_file = _setting(settings, "ssl_cert_file", "SSL_CERT_FILE")
        if cert_file and any(_same_file(cert_file, own) for own in _own_exports(env)):
            # `eval "$(credproxy env)"` ran in this shell: the user's own value is remembered
            previous = env.get("CREDPROXY_PREVIOUS_SSL_CERT_FILE") or None
            if previous and not any(_same_file(previous, own) for own in _own_exports(env)):
                warnings.append(f"SSL_CERT_FILE={cert_file} is credproxy's own exported bundle; upstream "
                                f"trust uses CREDPROXY_PREVIOUS_SSL_CERT_FILE={previous} (the value "
                                "`credproxy env` replaced)")
                cert_file = previous
            else:
                warnings.append(f"SSL_CERT_FILE={cert_file} is credproxy's own exported bundle; "
                                "ignored for upstream trust (the default roots apply)")
                cert_file = None
        if cert_file:
            sources.append(("SSL_CERT_FILE", cert_file))
        cert_dir = _setting(settings, "ssl_cert_dir", "SSL_CERT_DIR")
        if cert_dir:
            for d in cert_dir.split(os.pathsep):
                if d:
                    sources.append(("SSL_CERT_DIR", d))

    if sources:
        files: list[str] = []
        for label, p in sources:
            path = Path(p).expanduser()
            if label == "SSL_CERT_DIR":
                if not path.is_dir():
                    warnings.append(f"Invalid entries in SSL_CERT_DIR. The following directory "
                                    f"does not exist: {p}")
                    continue
                files += [str(f) for f in sorted(path.iterdir())
                          if f.is_file() and count_pem_certs(f.resolve())]
            elif not path.exists():
                warnings.append(f"Invalid {label}. Path does not exist: {p}.")
            elif not path.is_file():
                warnings.append(f"Invalid {label}. Path is not a file: {p}.")
            elif not count_pem_certs(path):
                warnings.append(f"Invalid {label}. No PEM certificates found in: {p}.")
            else:
                files.append(str(path))
        labels = ", ".join(dict.fromkeys(f"{label}={p}" for label, p in sources))
        if not files:
            warnings.append("No default certificates will be trusted: every upstream HTTPS "
                            "connection will fail verification until the path is fixed.")
            return Roots("none", f"none trusted ({labels} gave no certificates)", warnings=warnings)
        return Roots("custom", f"{labels} (replaces the default roots)",
                     ca_file=files[0] if len(files) == 1 else None, files=files, warnings=warnings)

    system, sys_warnings = _wants_system_certs(settings)
    warnings += sys_warnings
    if system:
        store = system_store()
        warnings += store.warnings
        if store.count:
            return Roots("system", f"the OS trust store ({store.platform}: {store.where})",
                         ca_file=store.ca_file, ca_dir=store.ca_dir, pem=store.pem,
                         origins=[(o.name, o.count) for o in store.origins], count=store.count,
                         warnings=warnings)
        warnings.append("system-certs: no root found in the OS trust store; using certifi's Mozilla roots")
    return Roots("certifi", f"certifi's Mozilla roots ({certifi.where()})", warnings=warnings)


# --- the plan -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertChoice:
    path: str
    origin: str  # "SSL_CLIENT_CERT", or the config file of the rule
    pattern: str | None  # None for the global certificate


@dataclass(frozen=True)
class HostTls:
    """The TLS settings for one upstream (host, port)."""

    host: str
    port: int
    roots: Roots
    insecure: InsecureHost | None
    client_cert: CertChoice | None

    @property
    def per_host(self) -> bool:
        """True when this host differs from the global options (needs the per-connection patch)."""
        return self.insecure is not None or (self.client_cert is not None and self.client_cert.pattern is not None)


@dataclass
class TlsPlan:
    roots: Roots
    insecure: list[InsecureHost]
    client_rules: list[tuple[HostPattern, ClientCertRule, ClientPem]]
    global_cert: ClientPem | None
    warnings: list[str]

    def client_cert_for(self, host: str, port: int) -> CertChoice | None:
        matching = [(p, r) for p, r, _ in self.client_rules if p.matches(host, port)]
        if matching:
            # max() keeps the first of equally specific rules: config order breaks ties
            pattern, rule = max(matching, key=lambda pr: pr[0].specificity())
            return CertChoice(path=rule.cert, origin=rule.origin, pattern=pattern.text)
        if self.global_cert is not None:
            return CertChoice(path=self.global_cert.path, origin="SSL_CLIENT_CERT", pattern=None)
        return None

    def for_host(self, host: str, port: int, scheme: str = "https") -> HostTls:
        return HostTls(host=_norm_host(host), port=port, roots=self.roots,
                       insecure=insecure_match(self.insecure, scheme, host, port),
                       client_cert=self.client_cert_for(host, port))

    def customises(self, host: str, port: int) -> bool:
        """Does the proxy have to terminate TLS to this host to apply the policy (insecure,
        a client certificate)? Passing such a host through would silently drop the policy.
        Roots alone do not count: `credproxy env` exports them to clients too."""
        return (insecure_match(self.insecure, "https", host, port) is not None
                or self.client_cert_for(host, port) is not None)


def _expiry_warning(pem: ClientPem, label: str) -> list[str]:
    """Servers reject an expired client certificate with a bare alert; say so up front."""
    import datetime

    not_after = datetime.datetime.fromisoformat(pem.not_after)
    if not_after.tzinfo is None:
        not_after = not_after.replace(tzinfo=datetime.timezone.utc)
    if not_after < datetime.datetime.now(datetime.timezone.utc):
        return [f"{label}: the client certificate {pem.path} expired on {pem.not_after[:10]}"]
    return []


def build_plan(settings) -> TlsPlan:
    """Validate everything once at start-up. ConfigError for bad config rules (naming the
    file); uv's warnings for bad environment values."""
    warnings: list[str] = []
    roots = decide_roots(settings)
    warnings += roots.warnings

    entries = list(getattr(settings, "allow_insecure_host", []) or [])
    env_hosts = settings.env.get("UV_INSECURE_HOST", "")
    entries += [e for e in env_hosts.split() if e not in entries]
    insecure = parse_insecure_hosts(entries)

    rules = []
    for rule in getattr(settings, "client_certs", []) or []:
        try:
            pattern = HostPattern.parse(rule.host)
        except ValueError as e:
            raise ConfigError(f"{rule.origin}: [[client-cert]] host: {e} "
                              "(expected host, *.suffix or host:port)") from None
        try:
            pem = load_client_pem(rule.cert)
        except PemError as e:
            raise ConfigError(f"{rule.origin}: [[client-cert]] for {_shown(rule.host)!r}: {e}") from None
        rules.append((pattern, rule, pem))
        warnings += _expiry_warning(pem, f"[[client-cert]] {_shown(rule.host)!r}")

    global_cert = None
    client_cert = _setting(settings, "ssl_client_cert", "SSL_CLIENT_CERT")
    if client_cert:
        try:
            global_cert = load_client_pem(client_cert)
            warnings += _expiry_warning(global_cert, "SSL_CLIENT_CERT")
        except PemError as e:
            # uv's behaviour: warn and connect without a client certificate
            warnings.append(f"Ignoring invalid SSL_CLIENT_CERT: {e}")
    return TlsPlan(roots=roots, insecure=insecure, client_rules=rules,
                   global_cert=global_cert, warnings=warnings)


# --- failures -------------------------------------------------------------------------------------

# OpenSSL X509_V_ERR_* codes
_UNKNOWN_ISSUER = {2, 18, 19, 20, 21, 27, 28}
_EXPIRED = {9, 10}  # not yet valid, expired
_HOSTNAME = {62, 63, 64}  # hostname, email, IP address mismatch
# TLS alert descriptions the server sends about our (missing) client certificate
_ALERT_CLIENT_CERT = {40, 42, 43, 44, 45, 46, 48, 116}


@dataclass(frozen=True)
class Failure:
    reason: str  # "unknown issuer", "expired", "hostname mismatch", "client certificate required", ...
    detail: str
    fix: str


def classify_failure(error: str | None, verify_code: int | None = None, alert: int | None = None,
                     sent_client_cert: bool = False, host_tls: HostTls | None = None) -> Failure:
    """Turn what OpenSSL/mitmproxy reported into a reason and the knob that fixes it."""
    text = (error or "").lower()
    roots_fix = host_tls.roots.fix_hint if host_tls else "set SSL_CERT_FILE / `ca-bundle` to the CA"
    insecure_fix = (f"or, to skip verification for this host only, allow-insecure-host = "
                    f"[\"{host_tls.host}\"] (UV_INSECURE_HOST)" if host_tls else
                    "or allow-insecure-host for this host")
    if verify_code in _UNKNOWN_ISSUER or any(s in text for s in (
            "unable to get local issuer", "self-signed", "self signed", "unable to get issuer",
            "certificate not trusted", "unable to verify the first")):
        return Failure("unknown issuer", error or "", f"{roots_fix}; {insecure_fix}")
    if verify_code in _EXPIRED or "has expired" in text or "not yet valid" in text:
        return Failure("expired", error or "",
                       f"renew the server's certificate (or check the clock); {insecure_fix}")
    if verify_code in _HOSTNAME or "mismatch" in text:
        return Failure("hostname mismatch", error or "",
                       f"use the host name the certificate is issued for; {insecure_fix}")
    cert_alert = alert in _ALERT_CLIENT_CERT or any(s in text for s in (
        "certificate required", "bad certificate", "handshake failure", "unknown ca",
        "certificate unknown", "certificate expired", "certificate revoked"))
    if cert_alert and not sent_client_cert:
        host = host_tls.host if host_tls else "this host"
        return Failure("client certificate required", error or "",
                       f"give a client certificate: SSL_CLIENT_CERT=/path/client.pem (certificate and key "
                       f"in one PEM), or a [[client-cert]] entry with host = \"{host}\"")
    if cert_alert:
        path = host_tls.client_cert.path if host_tls and host_tls.client_cert else "the client certificate"
        return Failure("client certificate rejected", error or "",
                       f"the server did not accept {path}: check it is the certificate this server "
                       "expects, issued by a CA it trusts, and not expired")
    if "verify failed" in text:
        return Failure("certificate verify failed", error or "", f"{roots_fix}; {insecure_fix}")
    return Failure("TLS handshake failed", error or "", "check that the server speaks TLS on this port")


def failure_message(host: str, port: int, failure: Failure) -> str:
    """The body of the 502 the client gets, and the warning line in the proxy log."""
    detail = f" ({failure.detail})" if failure.detail else ""
    return (f"credproxy: TLS to upstream {host}:{port} failed: {failure.reason}{detail}.\n"
            f"Fix: {failure.fix}.\n")


# --- describe (explain / doctor) ---------------------------------------------------------------


def _host_port_of(url: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        return parts.hostname.lower(), parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None


def describe(settings, host: str, port: int = 443, plan: TlsPlan | None = None) -> dict:
    """The TLS settings that apply to (host, port), for `explain` and `doctor`. Never contains
    key material; paths and certificate subjects only."""
    try:
        plan = plan or build_plan(settings)
    except ConfigError as e:
        return {"host": _norm_host(host), "port": port, "error": str(e)}
    h = plan.for_host(host, port)
    cert = None
    if h.client_cert is not None:
        pem = next((p for pat, r, p in plan.client_rules if r.cert == h.client_cert.path), plan.global_cert)
        cert = {"path": h.client_cert.path, "origin": h.client_cert.origin,
                "pattern": h.client_cert.pattern,
                "subject": pem.subject if pem else None,
                "chain_length": pem.chain_length if pem else None}
    return {
        "host": h.host,
        "port": port,
        "roots": {"kind": plan.roots.kind, "description": plan.roots.description,
                  "files": list(plan.roots.files)},
        "verify": h.insecure is None,
        "insecure_entry": h.insecure.entry if h.insecure else None,
        "client_cert": cert,
        "intercepted_for_tls": plan.customises(host, port),
        "warnings": list(plan.warnings),
    }


def format_description(d: dict, style: str = "block") -> str:
    """`block` (doctor): a heading and indented lines. `fields` (explain): `tls <key>:` lines
    in explain's `key: value` layout."""
    if "error" in d:
        return f"TLS {d['host']}:{d['port']}: configuration error: {d['error']}"
    if d["verify"]:
        verify = "yes (certificate and host name)"
    else:
        verify = f"NO (allow-insecure-host entry {_shown(d['insecure_entry'])!r})"
    c = d["client_cert"]
    if c is None:
        cert = "none"
    else:
        how = f"pattern {_shown(c['pattern'])!r} from {c['origin']}" if c["pattern"] else c["origin"]
        chain = f", {c['chain_length']} certificate(s)" if c.get("chain_length") else ""
        cert = f"{c['path']} ({how}; {c.get('subject') or '?'}{chain})"
    rows = [("roots", d["roots"]["description"]), ("verify", verify), ("client cert", cert)]
    rows += [("warning", w) for w in d["warnings"]]
    if style == "fields":
        return "\n".join(f"{'tls ' + k + ':':<17}{v}" for k, v in rows)
    lines = [f"TLS to {d['host']}:{d['port']}:"]
    lines += [f"  {k + ':':<13}{v}" for k, v in rows]
    return "\n".join(lines)


def describe_all(settings) -> list[dict]:
    """One description per host the configuration names (indexes, client-cert rules,
    insecure hosts), for `credproxy doctor`."""
    try:
        plan = build_plan(settings)
    except ConfigError as e:
        return [{"host": "*", "port": 0, "error": str(e)}]
    seen: dict[tuple[str, int], None] = {}
    for index in getattr(settings, "indexes", []) or []:
        hp = _host_port_of(index.url)
        if hp:
            seen.setdefault(hp)
    for pattern, _rule, _pem in plan.client_rules:
        if not pattern.wildcard:
            seen.setdefault((pattern.host, pattern.port or 443))
    for entry in plan.insecure:
        if entry.host != "*":
            seen.setdefault((entry.host, entry.port or 443))
    return [describe(settings, h, p, plan=plan) for h, p in seen]

