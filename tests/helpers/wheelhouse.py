"""A local wheelhouse of what this venv already has installed, so install tests run offline.

    wheelhouse(dest, ["credproxy", "setuptools"])  # credproxy's dependencies, not credproxy

Each installed distribution in the dependency closure of the given requirements is packed
back into a wheel from its RECORD (the files pip or uv installed, byte for byte; compiled
`__pycache__` and console scripts are left out, the installer regenerates them; other files
in the scripts directory, such as uv's binary, go back into `<name>.data/scripts/`), with
the tags its WHEEL file names. The closure is evaluated with this interpreter's markers, so it
is exactly what a resolver on this machine would pick. The requirement named `credproxy`
contributes only its dependencies: the test builds credproxy itself from the clone.

Honest about what it proves: the install command, the build from a clean clone, the
console script on PATH, and the dependency resolution (uv/pip resolve against these wheels
with --no-index); not that PyPI serves those versions today.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import os
import re
import sysconfig
import zipfile
from pathlib import Path

from pip._vendor.packaging.requirements import Requirement

SKIP_OWN = {"credproxy"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def closure(roots: list[str]) -> list[md.Distribution]:
    """Installed distributions needed by `roots` (requirement strings, extras honoured)."""
    todo = [Requirement(r) for r in roots]
    seen: dict[str, md.Distribution] = {}
    done: set[tuple[str, frozenset]] = set()
    while todo:
        req = todo.pop()
        key = (_norm(req.name), frozenset(req.extras))
        if key in done:
            continue
        done.add(key)
        dist = md.distribution(req.name)
        if _norm(req.name) not in SKIP_OWN:
            seen[_norm(req.name)] = dist
        for spec in dist.requires or []:
            sub = Requirement(spec)
            if sub.marker is not None:
                envs = [{"extra": e} for e in (req.extras or {""})]
                if not any(sub.marker.evaluate(env) for env in envs):
                    continue
            todo.append(sub)
    return list(seen.values())


def _tags(wheel_text: str) -> str:
    tags = [line.split(":", 1)[1].strip() for line in wheel_text.splitlines() if line.startswith("Tag:")]
    if not tags:
        raise ValueError("WHEEL names no Tag")
    parts = [t.split("-") for t in tags]
    return "-".join(".".join(sorted({p[i] for p in parts})) for i in range(3))


def _scripts(dist: md.Distribution) -> list[tuple[Path, str]]:
    """(installed path, name) of the files in the scripts dir that are not console scripts."""
    generated = {ep.name for ep in dist.entry_points if ep.group in ("console_scripts", "gui_scripts")}
    scripts_dir = Path(sysconfig.get_path("scripts")).resolve()
    found = []
    for f in dist.files or []:
        if not str(f).startswith(".."):
            continue
        path = Path(dist.locate_file(f)).resolve()
        if path.parent == scripts_dir and path.name not in generated and path.is_file():
            found.append((path, path.name))
    return found


def repack(dist: md.Distribution, dest: Path) -> Path:
    files = [f for f in dist.files or [] if not str(f).startswith("..") and "__pycache__" not in f.parts]
    info_dir = next(f.parts[0] for f in files if f.parts[0].endswith(".dist-info"))
    data_dir = info_dir[: -len(".dist-info")] + ".data"
    wheel_text = dist.read_text("WHEEL") or ""
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    out = dest / f"{name}-{dist.version}-{_tags(wheel_text)}.whl"
    record = []
    skip_info = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for f in files:
            if f.parts[0] == info_dir and f.name in skip_info:
                continue
            path = Path(dist.locate_file(f))
            if not path.is_file():
                continue
            data = path.read_bytes()
            arcname = f.as_posix()
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (os.stat(path).st_mode & 0o777 | 0o100000) << 16
            zf.writestr(info, data)
            record.append(f"{arcname},{_hash(data)},{len(data)}")
        for path, script in _scripts(dist):
            data = path.read_bytes()
            arcname = f"{data_dir}/scripts/{script}"
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (os.stat(path).st_mode & 0o777 | 0o100000) << 16
            zf.writestr(info, data)
            record.append(f"{arcname},{_hash(data)},{len(data)}")
        record.append(f"{info_dir}/RECORD,,")
        zf.writestr(f"{info_dir}/RECORD", "\n".join(record) + "\n")
    return out


def wheelhouse(dest: os.PathLike | str, roots: list[str]) -> Path:
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for dist in closure(roots):
        repack(dist, dest)
    return dest
