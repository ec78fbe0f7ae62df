"""The running proxy's status, shared through an owner-only state file (no mitmproxy here).

Why a file and not a local endpoint: loopback is not a boundary (any local user reaches
127.0.0.1), so an endpoint would need its own authentication; a file in credproxy's data
directory, mode 0600 in a 0700 directory, is owner-only by the file system with nothing to
get wrong. Each proxy process writes `status/<pid>.json` atomically (temp file + rename), at
most once a second, and removes it on a clean exit; `credproxy status` reads the files whose
process is still alive. Nothing secret is in it: realms (scheme://host:port), source labels,
counts and times; the upstream proxy URL is redacted."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

from . import paths
from .credentials.model import redact_url

VERSION = 1
MAX_STATUS_BYTES = 1 << 20  # a status file larger than this is not read
MAX_REALMS = 1000  # realms kept per proxy (the oldest-seen stay; more are counted as "other")


def status_dir(env: Mapping[str, str] | None = None) -> Path:
    return paths.data_dir(env) / "status"


@dataclass
class RealmStats:
    source: str = "none"  # the last credential source used for it (a label, never a secret)
    cached_since: float | None = None  # when a credential from a source first succeeded
    requests: int = 0
    unauthorized: int = 0  # 401s answered to clients


@dataclass
class ProxyStatus:
    pid: int
    listen: str  # http://127.0.0.1:8899
    started: float
    upstream_proxy: str | None = None
    realms: dict[str, RealmStats] = field(default_factory=dict)
    other_requests: int = 0  # requests to realms beyond MAX_REALMS
    # PAC proxies that could not be connected to: display (scheme://host:port, a PAC entry has
    # no userinfo) -> {"until": epoch seconds, "why": the connect error}; explain/doctor read it
    bad_proxies: dict[str, dict] = field(default_factory=dict)
    updated: float = 0.0
    version: int = VERSION

    def note(self, realm: str, *, source: str, injected: bool, status: int | None, cached: bool,
             now: float | None = None) -> None:
        """One client request to `realm` has been answered with `status`."""
        now = time.time() if now is None else now
        stats = self.realms.get(realm)
        if stats is None:
            if len(self.realms) >= MAX_REALMS:
                self.other_requests += 1
                return
            stats = self.realms[realm] = RealmStats()
        stats.requests += 1
        if status == 401:
            stats.unauthorized += 1
        if injected and source not in ("client", "none"):
            stats.source = source
            if status is not None and status < 400:
                if stats.cached_since is None:
                    stats.cached_since = now
            elif status == 401 and cached:
                stats.cached_since = None  # the cached credential was rejected and evicted

    def to_json(self) -> str:
        d = asdict(self)
        return json.dumps(d, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ProxyStatus":
        d = json.loads(text)
        realms = {k: RealmStats(**v) for k, v in (d.pop("realms", None) or {}).items()}
        return cls(realms=realms, **{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def upstream_proxy_shown(settings) -> str | None:
    """The upstream proxy, redacted, when the chain settings exist in this build."""
    value = getattr(settings, "upstream_proxy", None)
    if not value:
        return None
    return redact_url(str(value))


def write(status: ProxyStatus, env: Mapping[str, str] | None = None) -> Path:
    """Atomically replace this process's status file (0600 in a 0700 directory)."""
    directory = status_dir(env)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    status.updated = time.time()
    target = directory / f"{status.pid}.json"
    paths.write_atomic(target, status.to_json().encode("utf-8"), 0o600)
    return target


def remove(pid: int, env: Mapping[str, str] | None = None) -> None:
    try:
        (status_dir(env) / f"{pid}.json").unlink()
    except OSError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def read_all(env: Mapping[str, str] | None = None) -> tuple[list[ProxyStatus], list[str]]:
    """(status of each live proxy, problems). Files of processes that are gone are skipped
    (they crashed before removing them) and deleted."""
    directory = status_dir(env)
    found: list[ProxyStatus] = []
    problems: list[str] = []
    try:
        entries = sorted(directory.glob("*.json"))
    except OSError:
        return [], []
    for path in entries:
        try:
            if path.stat().st_size > MAX_STATUS_BYTES:
                problems.append(f"{path}: larger than {MAX_STATUS_BYTES} bytes; not read")
                continue
            st = ProxyStatus.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError) as e:
            problems.append(f"{path}: unreadable ({type(e).__name__}); delete it if no proxy is running")
            continue
        if not _alive(st.pid):
            try:
                path.unlink()
            except OSError:
                pass
            continue
        found.append(st)
    return found, problems


def bad_proxy_marks(env: Mapping[str, str] | None = None) -> dict[str, dict]:
    """The PAC proxies the running proxies marked bad (display -> {"until", "why"}), the
    latest mark per proxy; marks that have expired are left out."""
    now = time.time()
    out: dict[str, dict] = {}
    for st in read_all(env)[0]:
        for shown, mark in (st.bad_proxies or {}).items():
            try:
                until, why = float(mark["until"]), str(mark["why"])
            except (KeyError, TypeError, ValueError):
                continue
            if until > now and until > out.get(shown, {}).get("until", 0):
                out[shown] = {"until": until, "why": why}
    return out


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def render(st: ProxyStatus, now: float | None = None) -> str:
    now = time.time() if now is None else now
    lines = [f"credproxy (pid {st.pid}) listening on {st.listen}",
             f"  up {_ago(now - st.started)} (since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st.started))})",
             f"  upstream proxy: {st.upstream_proxy or 'none (direct)'}"]
    if not st.realms:
        lines.append("  no requests yet")
    else:
        lines.append("  realm | source | cached since | requests | 401s")
        for realm, r in sorted(st.realms.items()):
            cached = f"{_ago(now - r.cached_since)} ago" if r.cached_since else "-"
            lines.append(f"  {realm} | {r.source} | {cached} | {r.requests} | {r.unauthorized}")
    if st.other_requests:
        lines.append(f"  (+{st.other_requests} requests to further realms not listed)")
    for shown, mark in sorted((st.bad_proxies or {}).items()):
        try:
            until = float(mark["until"])
        except (KeyError, TypeError, ValueError):
            continue
        if until > now:
            shown_until = time.strftime("%H:%M:%S UTC", time.gmtime(until))
            lines.append(f"  PAC proxy {shown} marked bad until {shown_until}: {mark.get('why')}")
    return "\n".join(lines) + "\n"
