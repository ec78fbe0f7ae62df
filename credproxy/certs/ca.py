"""The proxy's own CA, in mitmproxy's confdir layout under `paths.ca_dir()`.

Created on first use and reused after: `mitmproxy-ca.pem` holds the key (0600, in a 0700
directory) and is never handed out; `mitmproxy-ca-cert.pem` is the public certificate
clients import."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .. import paths

BASENAME = "mitmproxy"  # TlsConfig loads `<confdir>/mitmproxy-ca.pem`
KEY_SIZE = 2048


class CAError(Exception):
    """The CA directory or key cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class CAFiles:
    directory: Path

    @property
    def key_file(self) -> Path:
        """Key + certificate: secret, never print or export."""
        return self.directory / f"{BASENAME}-ca.pem"

    @property
    def cert_file(self) -> Path:
        return self.directory / f"{BASENAME}-ca-cert.pem"


def ensure_ca(env: Mapping[str, str] | None = None) -> CAFiles:
    """Create the CA when missing; tighten permissions on the directory and the key."""
    files = CAFiles(paths.ca_dir(env))
    try:
        files.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(files.directory, 0o700)
        if not files.key_file.exists():
            _create(files.directory)
        os.chmod(files.key_file, 0o600)
        if not files.cert_file.exists():
            _write_public_cert(files)
    except OSError as e:
        raise CAError(f"cannot set up the proxy CA in {files.directory}: {e.strerror or e}") from None
    mode = stat.S_IMODE(files.key_file.stat().st_mode)
    if mode & 0o077:
        raise CAError(f"{files.key_file} is readable by others (mode {mode:o}); run chmod 600 on it")
    return files


def _create(directory: Path) -> None:
    from mitmproxy.certs import CertStore

    try:  # name the CA after us, so users recognise it in their trust stores
        CertStore.create_store(directory, BASENAME, KEY_SIZE, organization="credproxy", cn="credproxy local CA")
    except TypeError:  # older signature
        CertStore.create_store(directory, BASENAME, KEY_SIZE)


def _write_public_cert(files: CAFiles) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificates(files.key_file.read_bytes())[0]
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
