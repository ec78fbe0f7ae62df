"""One combined trust bundle for clients: public roots + configured upstream CA + the proxy CA.

Several clients *replace* their default roots with the file a variable names (SSL_CERT_FILE,
REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, PIP_CERT, GIT_SSL_CAINFO, NPM_CONFIG_CAFILE), so handing
them the bare proxy CA would break every host the proxy passes through untouched."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Mapping

import certifi

from .. import paths
from .ca import ensure_ca

# Where distributions keep their roots; the compiled-in OpenSSL default comes first.
_SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian/Ubuntu/Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora/RHEL
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # macOS, BSD
)


def system_bundle(exclude: Path | None = None) -> Path | None:
    """The system's roots. Read from OpenSSL's compiled-in path, never from SSL_CERT_FILE,
    which may point at the bundle we export ourselves."""
    candidates = [ssl.get_default_verify_paths().openssl_cafile, *_SYSTEM_BUNDLES]
    for candidate in candidates:
        if not candidate:
            continue
        path = Path(candidate)
        if path.is_file() and not _same_file(path, exclude):
            return path
    return None


def system_parts(env: Mapping[str, str] | None = None) -> list[tuple[str, Path]]:
    """The OS store as files (credproxy.certs.system): the OpenSSL bundle on Linux, the
    collected keychain / Windows store roots elsewhere."""
    from ..tlsrules import system_store
    from .system import write_pem

    store = system_store()
    if store.pem is not None:
        if not store.pem:
            return []
        return [(f"system roots ({store.platform})", write_pem(store.pem, paths.data_dir(env)))]
    if store.ca_file:
        return [("system roots", Path(store.ca_file))]
    system = system_bundle()
    return [("system roots", system)] if system is not None else []


def _same_file(a: Path, b: Path | None) -> bool:
    if b is None or not b.exists():
        return False
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def bundle_parts(settings, env: Mapping[str, str] | None = None, output: Path | None = None) -> list[tuple[str, Path]]:
    """(label, file) in bundle order. A part equal to the output file itself is skipped, so a
    bundle never includes its previous version."""
    output = output or paths.bundle_path(env)
    parts: list[tuple[str, Path]] = [("certifi", Path(certifi.where()))]
    if getattr(settings, "system_certs", False):
        parts += [(label, p) for label, p in system_parts(env) if not _same_file(p, output)]
    ca_bundle = getattr(settings, "ca_bundle", None)
    if ca_bundle:
        path = Path(ca_bundle).expanduser()
        if not _same_file(path, output):
            parts.append(("configured ca-bundle", path))
    else:
        # the upstream roots from SSL_CERT_FILE / SSL_CERT_DIR (a corporate CA): clients reach
        # passthrough hosts themselves and need it too once their SSL_CERT_FILE is this bundle
        from ..tlsrules import decide_roots

        roots = decide_roots(settings)
        if roots.kind == "custom":
            parts += [("upstream roots", Path(f)) for f in roots.files if not _same_file(Path(f), output)]
    parts.append(("credproxy CA", ensure_ca(env).cert_file))
    return parts


def write_bundle(settings, output: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """Write the combined bundle atomically and return its path (default paths.bundle_path())."""
    output = Path(output) if output else paths.bundle_path(env)
    chunks = []
    for label, path in bundle_parts(settings, env, output):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise OSError(f"cannot read {label} {path}: {e.strerror or e}") from None
        chunks.append(f"# {label}: {path}\n{text.strip()}\n")
    paths.write_atomic(output, "\n".join(chunks).encode("utf-8"), 0o644)
    return output
