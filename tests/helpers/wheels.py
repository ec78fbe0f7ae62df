"""Installable py3-none-any wheels written directly as zip files (no build backend, offline).

    make_wheel(tmp_path, "private-pkg", "1.0", requires=["private-dep"])
    -> tmp_path / "private_pkg-1.0-py3-none-any.whl"

The wheel holds one module, `<import name>/__init__.py` defining `__version__`, plus
METADATA, WHEEL and a RECORD with sha256 hashes, so pip and uv install it and check it.
`payload_bytes` adds a data file of that size (incompressible) for large-download tests;
`extra_files` (archive path -> bytes) and `entry_points` (entry_points.txt) make a plugin.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import zipfile
from pathlib import Path


def normalize(name: str) -> str:
    """PEP 503 project name normalization (what /simple/<name>/ uses)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_name(name: str) -> str:
    # Wheel filenames and .dist-info dirs use underscores (PEP 427 / binary distribution format).
    return re.sub(r"[-_.]+", "_", name).lower()


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_wheel(
    directory: os.PathLike | str,
    name: str,
    version: str,
    requires: list[str] | tuple[str, ...] = (),
    *,
    payload_bytes: int = 0,
    extra_files: dict[str, bytes] | None = None,
    entry_points: str | None = None,
) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dist = _dist_name(name)
    dist_info = f"{dist}-{version}.dist-info"
    path = directory / f"{dist}-{version}-py3-none-any.whl"

    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: test package {name}",
    ]
    metadata += [f"Requires-Dist: {req}" for req in requires]
    files: dict[str, bytes] = {
        f"{dist}/__init__.py": f"__version__ = {version!r}\n".encode(),
    }
    if payload_bytes:
        # Random data so the zip cannot compress it: the download really is that big.
        files[f"{dist}/payload.bin"] = os.urandom(payload_bytes)
    files.update(extra_files or {})  # may replace the module's __init__.py
    if entry_points:
        files[f"{dist_info}/entry_points.txt"] = entry_points.encode()
    files[f"{dist_info}/METADATA"] = ("\n".join(metadata) + "\n").encode()
    files[f"{dist_info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: credproxy-tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    ).encode()
    record_name = f"{dist_info}/RECORD"
    record_lines = [f"{arc},{_record_hash(data)},{len(data)}" for arc, data in files.items()]
    record_lines.append(f"{record_name},,")
    files[record_name] = ("\n".join(record_lines) + "\n").encode()

    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arc, data in files.items():
            zf.writestr(arc, data)
    # Rename so a server rescanning the directory never lists a half-written wheel.
    tmp.replace(path)
    return path
