"""`credproxy run -- CMD`: an ephemeral proxy on a free loopback port for one command.

The proxy runs in this process on its own thread and event loop; CMD is a child process with
the proxy and CA variables set, signals are passed on to it, and its exit code is ours. The
proxy admits a one-off token (in memory, never in a file) that only CMD's environment
carries, unless a --proxyauth pair is configured.

CMD owns the terminal: the request log goes to a file in the state directory, named on
stderr at the end (`-v` shows it on stderr instead); warnings still go to stderr. Stopping
cancels the proxy's leftover connection tasks quietly: no CancelledError traceback."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Mapping, Sequence

from .. import paths
from ..certs.bundle import write_bundle
from .envvars import merge_no_proxy, proxy_environment, proxy_url, registry_urls
from .master import Proxy, ServeConfig, ServeError

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
_FORWARDED = ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")
KEEP_LOGS = 20  # request logs of earlier runs kept in the state directory



class _ProxyThread:
    def __init__(self, settings, config: ServeConfig):
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.proxy = Proxy(settings, config, install_signal_handlers=False, on_listening=lambda _url: self.ready.set())
        self.thread = threading.Thread(target=self._main, name="credproxy-proxy", daemon=True)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self.proxy.run())
        except BaseException as e:  # reported by start()
            self.error = e
        finally:
            _close_quietly(loop)
            self.ready.set()

    def start(self) -> str:
        self.thread.start()
        if not self.ready.wait(START_TIMEOUT):
            raise ServeError(f"the proxy did not start within {START_TIMEOUT:.0f} s")
        if self.error is not None or self.proxy.url is None:
            if isinstance(self.error, ServeError):
                raise self.error
            raise ServeError(f"the proxy failed to start: {type(self.error).__name__}: {self.error}")
        return self.proxy.url

    def stop(self) -> None:
        self.proxy.shutdown()
        self.thread.join(STOP_TIMEOUT)


def _close_quietly(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio.run's teardown, minus the noise: connections still open when CMD exits are
    cancelled, and their CancelledError is the expected end, not an error to print."""

    def handler(loop, context):
        if isinstance(context.get("exception"), (asyncio.CancelledError, ConnectionError)):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    mitmproxy_logger = logging.getLogger("mitmproxy")
    level = mitmproxy_logger.level
    mitmproxy_logger.setLevel(logging.CRITICAL + 1)  # "Unhandled error in task" for a cancel
    try:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    except BaseException:  # noqa: BLE001 - teardown must not raise over CMD's exit code
        pass
    finally:
        mitmproxy_logger.setLevel(level)
        loop.close()


def request_log_path(env: Mapping[str, str] | None = None) -> Path:
    """A new file for this run's request log, in the state directory (0700; the log is
    redacted, but names the URLs). Older logs beyond KEEP_LOGS are removed."""
    directory = paths.data_dir(env) / "run-logs"
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    old = sorted(directory.glob("run-*.log"))
    for stale in old[:max(0, len(old) - KEEP_LOGS + 1)]:
        try:
            stale.unlink()
        except OSError:
            pass
    name = time.strftime("run-%Y%m%d-%H%M%S", time.gmtime()) + f"-{os.getpid()}.log"
    path = directory / name
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    return path


def _terminal_delivers_sigint() -> bool:
    """Ctrl-C at a terminal reaches the whole foreground process group, child included; then
    passing SIGINT on would deliver it twice."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def run_command(settings, config: ServeConfig, argv: Sequence[str], base_env: Mapping[str, str] | None = None) -> int:
    if not argv:
        raise ServeError("no command given: credproxy run [options] -- CMD [ARGS...]")
    log_path = None
    if not (getattr(settings, "verbose", 0) or 0) and not getattr(settings, "log_file", None):
        log_path = request_log_path()
        settings.log_file = str(log_path)
    proxy_thread = _ProxyThread(settings, config)
    try:
        proxy_thread.start()
    except BaseException:
        _report_log(log_path)
        raise
    try:
        bundle = write_bundle(settings)
        env = dict(os.environ if base_env is None else base_env)
        no_proxy, _dropped = merge_no_proxy((env.get("no_proxy"), env.get("NO_PROXY")), registry_urls(settings))
        proxy = proxy_thread.proxy
        env.update(proxy_environment(proxy_url(proxy.config.host, proxy.port, proxy.client_credential()),
                                     bundle, no_proxy))
        try:
            child = subprocess.Popen(list(argv), env=env)
        except OSError as e:
            raise ServeError(f"cannot run {argv[0]}: {e.strerror or e}") from None

        def forward(signum, _frame):
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                pass

        previous = {}
        names = list(_FORWARDED)
        if not _terminal_delivers_sigint():
            names.append("SIGINT")
        else:
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
        for name in names:
            sig = getattr(signal, name, None)
            if sig is not None:
                previous[sig] = signal.signal(sig, forward)
        try:
            returncode = child.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return returncode if returncode >= 0 else 128 - returncode
    finally:
        proxy_thread.stop()
        sys.stdout.flush()
        _report_log(log_path)


def _report_log(path: Path | None) -> None:
    """Name the request log on stderr when it holds something; drop it when empty."""
    if path is None:
        return
    try:
        if path.stat().st_size == 0:
            path.unlink()
            return
    except OSError:
        return
    print(f"credproxy: request log: {path}", file=sys.stderr, flush=True)
