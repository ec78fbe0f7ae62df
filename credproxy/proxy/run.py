"""`credproxy run -- CMD`: an ephemeral proxy on a free loopback port for one command.

The proxy runs in this process on its own thread and event loop; CMD is a child process with
the proxy and CA variables set, signals are passed on to it, and its exit code is ours. The
proxy admits a one-off token (in memory, never in a file) that only CMD's environment
carries, unless a --proxyauth pair is configured."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from typing import Mapping, Sequence
from urllib.parse import quote

from ..certs.bundle import write_bundle
from .envvars import proxy_environment
from .master import Proxy, ServeConfig, ServeError
from .token import ProxyCredential

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
_FORWARDED = ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")


def client_url(url: str, credential: ProxyCredential | None) -> str:
    """`http://HOST:PORT` -> `http://USER:TOKEN@HOST:PORT`, the form every client (pip, uv,
    curl, git, npm) turns into a Proxy-Authorization header."""
    if credential is None:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{quote(credential.user, safe='')}:{quote(credential.token, safe='')}@{rest}"


class _ProxyThread:
    def __init__(self, settings, config: ServeConfig):
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.proxy = Proxy(settings, config, install_signal_handlers=False, on_listening=lambda _url: self.ready.set())
        self.thread = threading.Thread(target=self._main, name="credproxy-proxy", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self.proxy.run())
        except BaseException as e:  # reported by start()
            self.error = e
        finally:
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
    proxy_thread = _ProxyThread(settings, config)
    url = proxy_thread.start()
    try:
        bundle = write_bundle(settings)
        env = dict(os.environ if base_env is None else base_env)
        env.update(proxy_environment(client_url(url, proxy_thread.proxy.client_credential()), bundle))
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
