"""Building and running the embedded mitmproxy (mitmproxy-notes.md §1).

A plain `Master` (not DumpMaster: it prints flows and exits the process on a startup error)
with mitmproxy's default addons minus its ProxyAuth, our owner check (addons/owner.py) first
of all, our other addons inserted just before `TlsConfig`, no terminal log. We
check ourselves that the listener came up, because a plain Master only logs a bind error.
"""

from __future__ import annotations

import asyncio
import errno
import importlib.util
import ipaddress
import logging
import os
import re
import secrets
import signal
import socket
from dataclasses import dataclass
from typing import Callable

from .. import hints, paths
from ..addons import upstream_tls
from ..addons.auth import CHALLENGE_BODY_LIMIT, AuthAddon
from ..addons.upstream_proxy import UpstreamProxyAddon
from ..egress import ProxyURLError, build_egress
from ..addons.owner import OwnerOnly
from ..addons.status import StatusFile
from ..certs.ca import ensure_ca
from ..logsafe import SafeFormatter
from . import limits, name_override, token
from .envvars import url_host  # here since `credproxy env` needs it without mitmproxy

logger = logging.getLogger("credproxy.proxy")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8899


class ServeError(Exception):
    """A start-up problem the user must fix; the message is one line."""

    exit_code = 2


@dataclass
class ServeConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    proxyauth: str | None = None  # "user:token" from --proxyauth-file / CREDPROXY_PROXYAUTH
    intercept_all: bool = False
    #: fresh Settings from the same flags (set by the CLI; `serve` reloads with it)
    reload_settings: Callable[[], object] | None = None
    # `credproxy run`: a one-off token in memory instead of the per-user token file
    one_off_token: bool = False


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _free_port_on(hosts: list[str]) -> int:
    """A port free on every host (so 127.0.0.1 and ::1 share it), like mitmproxy's own
    get_free_port. Tiny race until we bind; acceptable for `--port 0`."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
            try:
                for host in hosts[1:]:
                    family = socket.AF_INET6 if ":" in host else socket.AF_INET
                    with socket.socket(family, socket.SOCK_STREAM) as other:
                        other.bind((host, port))
            except OSError:
                continue
            return port
    raise ServeError("could not find a free port on " + " and ".join(hosts))


def check_listen_host(config: ServeConfig, settings) -> str | None:
    """The --proxyauth pair (`USER:TOKEN`) to use, or None for the per-user token. Raises when
    the pair has an empty part, or a non-loopback address has no pair."""
    proxyauth = config.proxyauth or getattr(settings, "proxyauth", None)
    if proxyauth is not None:
        try:
            token.parse_pair(proxyauth, "--proxyauth")
        except token.TokenError as e:
            raise ServeError(str(e)) from None
    if not is_loopback(config.host) and not proxyauth:
        raise ServeError(
            f"refusing to listen on {config.host}: other machines could use your credentials; "
            f"configure proxy authentication (--proxyauth-file FILE holding USER:TOKEN, or "
            f"{token.ENV_VAR}=USER:TOKEN) or listen on 127.0.0.1"
        )
    return proxyauth


def _mitmproxy_major() -> int:
    from mitmproxy import version

    try:
        return int(version.VERSION.split(".")[0])
    except ValueError:
        return 0


def build_resolver(settings):
    from ..credentials.resolver import Resolver, default_sources

    return Resolver(settings, default_sources(settings))


def audit_addons(settings) -> list:
    """The request log, when that module is part of this build."""
    if importlib.util.find_spec("credproxy.addons.audit") is None:
        return []
    from ..addons import audit

    try:
        return list(audit.addons(settings))
    except OSError as e:  # --save-flows FILE cannot be written
        raise ServeError(f"cannot write {e.filename or 'the flow file'}: {e.strerror or e}") from None


class _Lifecycle:
    """Checks, once mitmproxy says it is running, that our listeners are really up."""

    def __init__(self, proxy: "Proxy"):
        self.proxy = proxy

    async def running(self) -> None:
        from mitmproxy import ctx

        servers = list(ctx.master.addons.get("proxyserver").servers)
        primary, *others = servers
        if primary.last_exception is not None or not primary.listen_addrs:
            self.proxy._fail_start(primary.last_exception)
            return
        for extra in others:
            if extra.last_exception is not None:
                logger.info("not listening on %s: %s", extra.mode.full_spec, extra.last_exception)
        self.proxy._started(primary.listen_addrs[0][1])


class Proxy:
    """One embedded proxy. `run()` is a coroutine; `shutdown()` may be called from any thread."""

    def __init__(self, settings, config: ServeConfig, *, resolver=None, install_signal_handlers: bool = True,
                 on_listening: Callable[[str], None] | None = None,
                 reload_settings: Callable[[], object] | None = None, config_file: str | None = None):
        """`reload_settings` (fresh Settings from the same flags) turns on reloading when the
        config, netrc or store files change, and on SIGHUP (credproxy/proxy/reload.py)."""
        self.settings = settings
        self.config = config
        self.resolver = resolver
        self.install_signal_handlers = install_signal_handlers
        self.on_listening = on_listening
        self.port: int | None = None
        self.url: str | None = None
        self.master = None
        self._error: ServeError | None = None
        self._pending_shutdown = False
        self.reload_settings = reload_settings
        self.config_file = config_file
        self._auth: AuthAddon | None = None
        self._chain = None  # the UpstreamProxyAddon
        self._remember = None  # the RememberAddon, with --remember
        self._tls_addons: list = []
        self._reloader = None
        self._status = None  # the StatusFile addon
        self._listen: tuple[list[str], int] = ([], 0)  # (hosts, port) the egress plan was built for
        self._client_credential: Callable[[], token.ProxyCredential] | None = None

    def client_credential(self) -> token.ProxyCredential:
        """The USER:TOKEN pair clients must send (for `credproxy run`'s child environment)."""
        assert self._client_credential is not None, "the proxy is not running"
        return self._client_credential()

    def _setup_client_credential(self, proxyauth: str | None) -> None:
        if proxyauth:
            pair = token.parse_pair(proxyauth, "--proxyauth")
            self._client_credential = lambda: pair
        elif self.config.one_off_token:
            pair = token.ProxyCredential(token.USER, secrets.token_urlsafe(token.TOKEN_BYTES), "credproxy run")
            self._client_credential = lambda: pair
        else:
            token_file = token.TokenFile(paths.token_file())
            try:
                token_file.current()  # created now, so `credproxy env` finds it; errors stop start-up
            except token.TokenError as e:
                raise ServeError(str(e)) from None
            self._client_credential = token_file.current

    # called from the event loop --------------------------------------------------------------

    def _fail_start(self, exc: BaseException | None) -> None:
        port = self.config.port
        if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            self._error = ServeError(
                f"port {port} on {self.config.host} is already in use; choose another with "
                "--port PORT (or --port 0 for a free one)")
        else:
            reason = (getattr(exc, "strerror", None) or str(exc).splitlines()[0]) if exc else "unknown error"
            self._error = ServeError(f"cannot listen on {url_host(self.config.host)}:{port}: {reason}")
        self.master.shutdown()

    def _started(self, port: int) -> None:
        self.port = port
        self.url = f"http://{url_host(self.config.host)}:{port}"
        _set_mitmproxy_log_level(self._verbose_level())
        if self._reloader is not None:
            self._reloader.listening()
        if self.on_listening is not None:
            self.on_listening(self.url)

    def _verbose_level(self) -> int:
        return _mitmproxy_level(getattr(self.settings, "verbose", 0) or 0)

    def egress(self, hosts: list[str], port: int, settings=None):
        """The egress plan (credproxy/egress.py) for `settings` (else the running ones)."""
        try:
            return build_egress(settings or self.settings, listen=[(h, port) for h in hosts])
        except ProxyURLError as e:
            raise ServeError(str(e)) from None

    @staticmethod
    def _announce_egress(egress, replacing: bool) -> None:
        """Log the plan's notes and route: at start, and once a reload has swapped in a new one
        (not when it is built: that build may still fail, or lose to a later reload)."""
        summary = egress.summary() if egress.chaining or egress.disabled else []
        log = logging.getLogger("credproxy.egress")
        for note in egress.notes:
            log.warning("%s", note)
        for line in summary:
            log.info("%s", line)
        if replacing and not summary:
            log.info("upstream proxy: none (direct)")

    def wants_interception(self, host: str, port: int) -> bool:
        if self.config.intercept_all or getattr(self.settings, "intercept", "auto") == "all":
            return True
        return bool(self.resolver.knows_host("https", host, port))

    def interception_needs_read(self) -> bool:
        """Whether deciding interception would read a credential file (one changed since it
        was read): the CONNECT hook then decides in a worker thread."""
        if self.config.intercept_all or getattr(self.settings, "intercept", "auto") == "all":
            return False
        return self.resolver.needs_read()

    def prepare_settings(self, settings) -> "_Prepared":
        """Everything reloaded settings need, built without touching the running proxy, so a
        reload runs it in a worker thread (proxy/reload.py): the upstream TLS rules, the
        company-proxy route when `upstream-proxy` changed, and a fresh resolver whose fast
        sources have read their files (every source re-read, caches empty). Raises when the
        new TLS settings are invalid."""
        prepared = upstream_tls.prepare(settings)
        running = _egress_inputs(self.settings)
        egress = None
        if self._chain is not None and _egress_inputs(settings) != running:
            # the company-proxy route of new connections (`upstream-proxy` changed); an
            # unchanged one keeps its plan, with its PAC answers and bad-proxy marks
            egress = self.egress(*self._listen, settings=settings)
        # the per-host client certificates are loaded (and a bad one raises) here, not in the
        # swap: a swap that fails half-way would leave old and new settings mixed
        per_host = upstream_tls.PerHostTls(prepared)
        resolver = build_resolver(settings)
        _load_fast_sources(resolver)  # reports, never raises
        return _Prepared(settings, prepared, resolver, egress, running, per_host)

    def apply_prepared(self, staged: "_Prepared") -> None:
        """Swap a `prepare_settings` build into the running proxy (event loop, where the
        addons read `resolver`): nothing here reads a file, unless another reload changing
        `upstream-proxy` was swapped in while this one was built (the route is then decided
        again here). What can fail comes first: mitmproxy's options (it rolls them back when
        an addon rejects them) and the route, before anything is swapped."""
        from ..interception import InterceptionPolicy

        settings, prepared, resolver, egress = staged.settings, staged.tls, staged.resolver, staged.egress
        if self._chain is not None and staged.egress_against != _egress_inputs(self.settings):
            # another reload was swapped in while this one was built (a file change and
            # SIGHUP at once): decide the route against what runs now (rare; on the loop)
            egress = None
            if _egress_inputs(settings) != _egress_inputs(self.settings):
                egress = self.egress(*self._listen, settings=settings)
        if self.master is not None:
            self.master.options.update(**upstream_tls.options_for(prepared))
        old = self.resolver
        self.settings, self.resolver = settings, resolver
        if self._auth is not None:
            self._auth.resolver = resolver
        if self._chain is not None:  # company-proxy logins come from the new chain too
            if egress is not None:
                self._chain.use_egress(egress)
            self._chain.use_resolver(resolver)
        if self._status is not None and egress is not None:
            self._status.use_egress(settings, egress)
        if egress is not None:
            self._announce_egress(egress, replacing=True)
        if self._remember is not None:
            self._remember.use(settings, resolver)
        for addon in self._tls_addons:
            if isinstance(addon, upstream_tls.Passthrough):
                addon.policy = InterceptionPolicy(settings, prepared.plan, self.wants_interception,
                                                  self.interception_needs_read)
            elif isinstance(addon, upstream_tls.PerHostTls):
                addon.take_over(staged.per_host)  # its contexts and failure records belong to the old rules
        if self.master is not None:
            upstream_tls.forget_cached_contexts()  # the same paths may hold new roots or certificates
        if old is not None:
            old.close(cancel_pending=False)

    def _stop_lookups(self) -> None:
        """The proxy has stopped: no queued lookup starts. (Leaving `process.serving()` then
        stops the helper programs under way: Python joins the lookup threads before it exits,
        so without that a SIGTERM waited out a hanging helper's `keyring-timeout`.)"""
        if self.resolver is not None:
            self.resolver.close(cancel_pending=True)

    # public ---------------------------------------------------------------------------------

    def shutdown(self) -> None:
        if self.master is not None:
            self.master.shutdown()
        else:
            self._pending_shutdown = True

    async def run(self) -> None:
        from mitmproxy.addons import default_addons
        from mitmproxy.addons.next_layer import NextLayer
        from mitmproxy.addons.proxyauth import ProxyAuth
        from mitmproxy.addons.tlsconfig import TlsConfig
        from mitmproxy.master import Master
        from mitmproxy.options import Options

        proxyauth = check_listen_host(self.config, self.settings)
        self._setup_client_credential(proxyauth)
        try:
            ca = ensure_ca()
        except Exception as e:
            raise ServeError(str(e)) from None
        if self.resolver is None:
            self.resolver = build_resolver(self.settings)
        _load_fast_sources(self.resolver)
        if (loose := hints.netrc_mode_warning(getattr(self.settings, "env", None) or os.environ)) is not None:
            logger.warning("%s", loose)  # once per proxy run

        loop = asyncio.get_running_loop()
        try:
            name_override.install(loop, name_override.parse(os.environ.get(name_override.ENV_VAR, "")))
        except ValueError as e:
            raise ServeError(str(e)) from None

        host = self.config.host.strip("[]")
        hosts = [host]
        if host in ("127.0.0.1", "localhost") and _ipv6_available():
            hosts = ["127.0.0.1", "::1"]  # `localhost` may resolve to either
        elif host == "localhost":
            hosts = ["127.0.0.1"]
        port = self.config.port
        if port == 0 and len(hosts) > 1:
            port = _free_port_on(hosts)
        modes = [f"regular@{h}:{port}" for h in hosts]
        self._listen = (hosts, port)
        egress = self.egress(hosts, port)
        self._announce_egress(egress, replacing=False)

        # request-head size and time limits, a refused upload drained (proxy/limits.py)
        limits.install(getattr(self.settings, "request_head_timeout", limits.HEAD_TIMEOUT))

        # Bind errors are reported by us as one line; keep mitmproxy's own quiet until up.
        _set_mitmproxy_log_level(logging.CRITICAL)
        self.master = master = Master(Options(confdir=str(ca.directory)), with_termlog=False)
        if self._pending_shutdown:
            master.shutdown()

        before_tls, after_tls = upstream_tls.addons(self.settings, self.wants_interception,
                                                    self.interception_needs_read)
        self._auth = AuthAddon(self.resolver)
        self._tls_addons = [*before_tls, *after_tls]
        self._status = StatusFile(self.settings, egress)
        ours = [*before_tls, self._auth, *audit_addons(self.settings), self._status]
        if self.reload_settings is not None:
            from .reload import Reloader

            self._reloader = Reloader(self.settings, self.reload_settings, self.apply_prepared,
                                      prepare=self.prepare_settings, discard=_Prepared.discard,
                                      config_file=self.config_file, install_signal_handler=self.install_signal_handlers)
            ours.append(self._reloader)
        if getattr(self.settings, "remember", False):
            from ..addons.remember import RememberAddon

            self._remember = RememberAddon(self.settings, self.resolver)
            ours.insert(ours.index(self._auth) + 1, self._remember)
        # mitmproxy's own ProxyAuth is replaced by ours, which goes first of all (after Core,
        # which has no flow hooks): a refused client must reach no other addon's side effects.
        addons = [a for a in default_addons() if not isinstance(a, ProxyAuth)]
        addons.insert(1, OwnerOnly(self._client_credential, configured_pair=bool(proxyauth)))
        tls_index = next(i for i, a in enumerate(addons) if isinstance(a, TlsConfig))
        addons[tls_index + 1:tls_index + 1] = list(after_tls)
        addons[tls_index:tls_index] = ours
        # the chain answers a CONNECT after every addon that may refuse it (so last), and
        # decides the layer under it before mitmproxy's NextLayer does
        chain = self._chain = UpstreamProxyAddon(egress, self.resolver)
        next_layer_index = next(i for i, a in enumerate(addons) if isinstance(a, NextLayer))
        addons.insert(next_layer_index, chain.layer_hook)
        # a PAC file's first answer per host, off the event loop (idle without a PAC file; there
        # from the start since a reload may bring one)
        addons.append(chain.pac_hook)
        addons.append(chain)
        master.addons.add(*addons, _Lifecycle(self))

        options = {
            "mode": modes,
            # HTTP/2 only where the h2 request-smuggling fix is available (mitmproxy >= 12).
            "http2": _mitmproxy_major() >= 12,
            "connection_strategy": "eager",
            # A body mitmproxy buffers (a possible challenge: the auth addon turns streaming
            # off for it) switches to streaming once it passes this, whatever its framing
            # (chunked, HTTP/2 without a length). The auth addon decides streaming itself
            # for everything else; see addons/auth.py.
            "stream_large_bodies": str(CHALLENGE_BODY_LIMIT),
        }
        options.update(upstream_tls.mitmproxy_options(self.settings))
        try:
            master.options.update(**options)
        except Exception as e:
            raise ServeError(f"invalid proxy options: {str(e).splitlines()[0]}") from None

        installed = []
        if self.install_signal_handlers:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, master.shutdown)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass
        from ..credentials.sources import process

        try:
            with process.serving():  # on leaving: the helper programs still running are stopped
                try:
                    await master.run()
                finally:
                    self._stop_lookups()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
        if self._error is not None:
            raise self._error


@dataclass
class _Prepared:
    """Reloaded settings, ready to swap in (Proxy.prepare_settings)."""

    settings: object
    tls: object  # upstream_tls.Prepared
    resolver: object
    egress: object = None  # a new company-proxy route, when `upstream-proxy` changed
    egress_against: tuple = ()  # the running settings' route inputs it was compared with
    per_host: object = None  # an upstream_tls.PerHostTls for the new rules, its certificates loaded

    def discard(self) -> None:
        """A build that lost to a later reload: stop its resolver's threads."""
        self.resolver.close()


def _egress_inputs(settings) -> tuple:
    """What the egress plan is built from besides the environment (fixed while serve runs)."""
    return tuple(getattr(settings, name, None) for name in (
        "upstream_proxy", "upstream_proxy_origin", "upstream_proxy_connect_timeout", "host", "port"))


def _load_fast_sources(resolver) -> None:
    """Read netrc, the store, ... now, so a broken file is reported at start-up rather than on
    some later request (or never, when another source answers first). Asking about a host
    that cannot exist makes every fast source load its file; sources report their own
    problems in the log."""
    try:
        resolver.knows_host("https", "credproxy-startup-check.invalid", 443)
    except Exception as e:  # a broken source must not stop the proxy
        logger.warning("a credential source failed to load: %s", type(e).__name__)


def _set_mitmproxy_log_level(level: int) -> None:
    logging.getLogger("mitmproxy").setLevel(level)


def configure_logging(verbose: int) -> None:
    """Quiet by default: our warnings and mitmproxy's errors, on stderr (never stdout, which
    carries the `listening on` line)."""
    root = logging.getLogger()
    if not any(getattr(h, "_credproxy", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler._credproxy = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    for handler in root.handlers:
        if getattr(handler, "_credproxy", False):
            handler.setFormatter(LogFormatter(show_logger=verbose >= 2))
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING)
    logging.getLogger("credproxy").setLevel(root.level)
    _set_mitmproxy_log_level(_mitmproxy_level(verbose))


class LogFormatter(SafeFormatter):
    """`credproxy: warning: TEXT`, the shape of the CLI's own `credproxy: error:` lines: the
    level in lower case, no logger name (only with -vv, for debugging), and never
    `credproxy:` twice when a message already starts with it. Control characters are escaped
    (logsafe.py): a request line or upstream text must not reach a terminal raw."""

    def __init__(self, show_logger: bool = False):
        super().__init__()
        self.show_logger = show_logger

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.name.partition(".")[0] == "mitmproxy":
            # mitmproxy quotes what it could not parse (`Bad HTTP request line: b'GET
            # http://user:SECRET@host/?private_token=...'`): the secrets in it are masked
            text = _mask_quoted_urls(text)
        if text.startswith("credproxy: "):
            text = text[len("credproxy: "):]
        where = f"{record.name}: " if self.show_logger else ""
        return f"credproxy: {record.levelname.lower()}: {where}{text}"


def _mask_quoted_urls(text: str) -> str:
    """Userinfo (`user:****@`) and the values of token query parameters masked in free text."""
    from ..config.model import mask_userinfo
    from ..credentials.model import redact_query

    def query(m) -> str:
        return m.group(1) + redact_query(m.group(2))

    return re.sub(r"(\?)([^\s'\"#]+)", query, mask_userinfo(text))


def _mitmproxy_level(verbose: int) -> int:
    """-v is our request lines plus mitmproxy's warnings; its per-connection chatter (client
    connect, server disconnect, ...) is INFO and waits for -vv; its DEBUG is never useful."""
    return logging.INFO if verbose >= 2 else logging.WARNING if verbose == 1 else logging.ERROR


def serve_forever(settings, config: ServeConfig, *, resolver=None, print_fn=print,
                  reload_settings: Callable[[], object] | None = None, config_file: str | None = None) -> None:
    """`credproxy serve`: blocks until SIGINT/SIGTERM. Raises ServeError on start-up problems."""
    try:
        import signal as _signal

        _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
    except (AttributeError, ValueError):
        pass

    def announce(url: str) -> None:
        print_fn(f"credproxy listening on {url}", flush=True)

    proxy = Proxy(settings, config, resolver=resolver, on_listening=announce, reload_settings=reload_settings,
                  config_file=config_file)
    asyncio.run(proxy.run())


__all__ = ["Proxy", "ServeConfig", "ServeError", "serve_forever", "configure_logging", "paths"]
