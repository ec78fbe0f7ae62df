"""A running proxy sees changes to the files it reads (issue 10 point 6).

Addon, hooks `running` and `done`: once mitmproxy runs, a watcher task stats the files the
credentials and settings come from every WATCH_INTERVAL seconds (a handful of `stat` calls:
the config file(s), $NETRC and ~/.netrc, the credential store and its old location), and
SIGHUP asks for the same reload at once. A reload builds everything that depends on those
files afresh and swaps it in:

- Settings, re-read with the same command-line flags (a config file that does not load is
  reported and the previous settings kept);
- a new Resolver: every source re-reads its file, and the session cache and the memo of
  slow lookups start empty, so a removed or changed entry's cached credential is dropped;
- the interception policy, the per-host upstream TLS rules and mitmproxy's upstream TLS
  options, read afresh even when their paths did not change (the `ca-bundle` and client
  certificate files; mitmproxy's per-path context cache is emptied);
- the company-proxy route (`upstream-proxy`) of new connections, when it changed.

The swap is all or nothing: the steps that can fail (loading the client certificates, in the
build; mitmproxy accepting its new options, first in the swap) come before anything is
swapped, so a failure leaves the previous settings whole, as the warning says.

What a reload does not change: the listen address and port, proxy authentication, the
request log format and --save-flows (a restart applies them), and credentials from
environment variables (UV_INDEX_<NAME>_USERNAME/PASSWORD, HF_TOKEN, index URLs with
credentials in UV_*/PIP_* variables): the process's environment is fixed when it starts.
`env_credential_names` lists those, and the start-up log names them (names only).

Requests already under way finish with what they started with; the old resolver's worker
threads finish their pending lookups and exit.

Nothing here reads or parses a file on mitmproxy's event loop, where every connection is
served: the watcher's look (stat, and a digest of the credential files) and the whole build
(the settings, the upstream TLS rules, the new resolver with its netrc and store read) run in
a worker thread (`areload`); only the swap (`apply`, Proxy.apply_prepared) runs on the loop,
where the addons read `proxy.resolver`. SIGHUP starts the same reload as a task. Reloads are
numbered as they start: a build that finishes after a later one was swapped in is dropped
(its resolver closed), so an older file's content never replaces a newer one's. Until the
swap, the old resolver answers; a file source of it whose file changed is asked in a worker
thread too (credentials/resolver.py, `needs_read`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

logger = logging.getLogger("credproxy.reload")

#: seconds between two looks at the watched files
WATCH_INTERVAL = 0.5

_ENV_INDEX_CREDS = re.compile(r"^UV_INDEX_[A-Z0-9_]+_(USERNAME|PASSWORD)$")
_ENV_INDEX_URLS = ("UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_INDEX", "UV_DEFAULT_INDEX",
                   "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")

Stamp = tuple | None  # (mtime_ns, size, inode[, content digest])


def env_credential_names(env: Mapping[str, str]) -> list[str]:
    """Names of the environment variables that carry credentials credproxy uses (values are
    never looked at beyond "set" and "has userinfo")."""
    names = sorted(k for k, v in env.items() if v and _ENV_INDEX_CREDS.match(k))
    if env.get("HF_TOKEN") and "UV_NO_HF_TOKEN" not in env:
        names.append("HF_TOKEN")
    for key in _ENV_INDEX_URLS:
        if any("@" in urlsplit(url).netloc for url in env.get(key, "").split()):
            names.append(key)
    return names


def watched_files(settings, config_file: str | os.PathLike | None) -> list[Path]:
    """The files whose changes reach the running proxy."""
    from .. import paths

    env = settings.env
    files: list[Path] = []
    config = Path(config_file) if config_file is not None else paths.default_config_file(env)
    files.append(Path(os.path.expanduser(config)).absolute())
    files += [Path(p) for p in getattr(settings, "config_files", []) or []]
    files += credential_files(settings)
    unique: list[Path] = []
    for f in files:
        if f not in unique:
            unique.append(f)
    return unique


def credential_files(settings) -> list[Path]:
    """The netrc and store files. Tools rewrite them (`auth login` twice in a row, a token
    rotation) within one clock tick, at the same size, and an atomic rename may reuse the
    old inode number: their stamp includes a digest of the content."""
    from ..credentials.store import default_store_path, legacy_store_path

    env = settings.env
    files: list[Path] = []
    home = env.get("HOME")
    if env.get("NETRC"):
        netrc = env["NETRC"]
        if home and (netrc == "~" or netrc.startswith("~/")):
            netrc = home + netrc[1:]
        files.append(Path(netrc))
    if home:
        files.append(Path(home) / ".netrc")
    files += [default_store_path(env), legacy_store_path(env)]
    return files


#: A credential file larger than this is stamped by its metadata only.
DIGEST_LIMIT = 1 << 20


def _stamp(path: Path, digest: bool = False) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not digest or st.st_size > DIGEST_LIMIT:
        return (st.st_mtime_ns, st.st_size, st.st_ino)
    try:
        with open(path, "rb") as f:
            content = hashlib.blake2b(f.read(DIGEST_LIMIT + 1), digest_size=16).digest()
    except OSError:
        content = b""
    return (st.st_mtime_ns, st.st_size, st.st_ino, content)


class Reloader:
    """One per proxy. `load_settings()` returns fresh Settings (raising on a bad config);
    `prepare(settings)` builds what they need (Proxy.prepare_settings: the TLS rules, a
    resolver with its files read; raising when they cannot be applied), `apply(prepared)`
    swaps that into the running proxy (Proxy.apply_prepared). Without `prepare`, `apply`
    gets the Settings. `discard(prepared)` releases a build that is not applied.

    In the proxy (`areload`), loading and preparing run in a worker thread, the swap on the
    event loop. Reloads are numbered as they start; a build that finishes after a later
    one was applied is discarded, so a slow build never overwrites a newer one."""

    def __init__(self, settings, load_settings: Callable[[], object], apply: Callable[[object], None], *,
                 prepare: Callable[[object], object] | None = None,
                 discard: Callable[[object], None] | None = None,
                 config_file: str | os.PathLike | None = None, install_signal_handler: bool = True,
                 interval: float = WATCH_INTERVAL):
        self.settings = settings
        self.load_settings = load_settings
        self.prepare = prepare
        self.apply = apply
        self.discard = discard
        self.config_file = config_file
        self.install_signal_handler = install_signal_handler
        self.interval = interval
        self.files = watched_files(settings, config_file)
        self._stamps = self._look()
        self._task: asyncio.Task | None = None
        self._signal_installed = False
        self._started = 0  # number of the last reload started
        self._applied = 0  # number of the last reload applied
        self._pending: set[asyncio.Task] = set()  # SIGHUP reloads under way

    def _look(self, files: list[Path] | None = None, settings=None) -> dict[Path, Stamp]:
        digested = set(credential_files(self.settings if settings is None else settings))
        return {f: _stamp(f, digest=f in digested) for f in (self.files if files is None else files)}

    # --- mitmproxy hooks -----------------------------------------------------------------------

    def listening(self) -> None:
        """Called by the proxy once it listens (not from a hook: `running` also runs when
        the listener failed, and then the only line must be the error)."""
        names = env_credential_names(self.settings.env)
        if names:
            logger.warning("credentials from environment variables are fixed until a restart: %s "
                           "(file changes and SIGHUP reload everything else)", ", ".join(names))

    def running(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._watch(), name="credproxy-reload-watch")
        if self.install_signal_handler and hasattr(signal, "SIGHUP"):
            try:
                loop.add_signal_handler(signal.SIGHUP, self._sighup)
                self._signal_installed = True
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for task in list(self._pending):
            task.cancel()
        if self._signal_installed:
            try:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            except RuntimeError:
                pass
            self._signal_installed = False

    # --- watching and reloading ---------------------------------------------------------------

    def _sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self.areload("SIGHUP"), name="credproxy-reload-sighup")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.look_and_reload()
            except Exception as e:  # noqa: BLE001 - the watcher must outlive one bad reload
                logger.warning("reloading failed (%s); keeping the previous settings and credentials",
                               type(e).__name__)

    async def look_and_reload(self) -> bool:
        """One look of the watcher: reload when a watched file changed since the last look.
        The stat and hash of the files run off the event loop (a slow home directory must not
        stall connections), and so does the reload's build. True if it reloaded."""
        now = await asyncio.to_thread(self._look)
        changed = self._changed(now)
        return bool(changed) and await self.areload(changed, stamps=now)

    def _changed(self, now: dict) -> str:
        """What changed since the last look, as a reload's reason ("" for nothing)."""
        changed = [f for f in self.files if now.get(f) != self._stamps.get(f)]
        return ", ".join(str(f) for f in changed) + " changed" if changed else ""

    async def areload(self, why: str, stamps: dict | None = None) -> bool:
        """Re-read the settings and every credential file and swap them in: everything that
        reads or parses a file (the look, the settings, the TLS rules, the new resolver's
        sources) runs in a worker thread; only the swap runs on the loop. False (and the
        previous state kept) when the settings do not load, or when a later reload was
        applied first (this one's build is then discarded). `stamps`: the look that saw the
        change (else one is taken); a change after it is seen on the next look."""
        started, number = time.monotonic(), self._begin(stamps)
        built = await asyncio.to_thread(self._build, why, stamps)
        return self._finish(number, why, built, started)

    def _begin(self, stamps: dict | None) -> int:
        if stamps is not None:
            self._stamps = stamps
        self._started += 1
        return self._started

    def _build(self, why: str, stamps: dict | None):
        """(settings, prepared, files, look), or _Failed after logging why not. Nothing of the
        Reloader or the running proxy changes here (it runs in a worker thread). `look`: the
        files' stamps, when this build took them (SIGHUP, or the watched files changed)."""
        look = self._look() if stamps is None else None
        try:
            settings = self.load_settings()
        except Exception as e:  # noqa: BLE001
            logger.warning("%s, but the settings do not load: %s; keeping the previous ones (fix it, then "
                           "save again or send SIGHUP)", why, _config_message(e))
            return _Failed(look)
        try:
            prepared = self.prepare(settings) if self.prepare is not None else settings
        except Exception as e:  # noqa: BLE001
            logger.warning("%s, but the new settings cannot be applied: %s; keeping the previous ones",
                           why, _config_message(e))
            return _Failed(look)
        files = watched_files(settings, self.config_file)
        if files != self.files:
            look = self._look(files, settings)
        return settings, prepared, files, look

    def _finish(self, number: int, why: str, built, started: float) -> bool:
        """On the loop: apply a build unless a later reload was applied already."""
        if isinstance(built, _Failed):
            if built.look is not None and number > self._applied:
                self._stamps = built.look
            return False
        settings, prepared, files, look = built
        if number < self._applied:
            logger.debug("a reload (%s) finished after a later one; its result is dropped", why)
            self._discard(prepared)
            return False
        try:
            self.apply(prepared)
        except Exception as e:  # noqa: BLE001
            logger.warning("%s, but the new settings cannot be applied: %s; keeping the previous ones",
                           why, _config_message(e))
            self._discard(prepared)
            return False
        self._applied = number
        self.settings = settings
        if files != self.files:
            self.files = files
        if look is not None:
            self._stamps = look
        logger.info("reloaded settings and credentials (%s) in %.2f s", why, time.monotonic() - started)
        return True

    def _discard(self, prepared) -> None:
        if self.discard is not None:
            try:
                self.discard(prepared)
            except Exception as e:  # noqa: BLE001
                logger.debug("discarding an unused reload failed: %s", type(e).__name__)


@dataclass(frozen=True)
class _Failed:
    """A build that did not load; `look`: the files' stamps when it started (SIGHUP)."""

    look: dict | None


def _config_message(e: BaseException) -> str:
    """A ConfigError's own message (it names the file and key, never a secret); for anything
    else the type only, since an exception's text may quote a credential."""
    from ..config import ConfigError

    if isinstance(e, ConfigError):
        return str(e).splitlines()[0]
    return type(e).__name__
