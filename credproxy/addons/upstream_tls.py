"""Upstream TLS per host (roots, client certificate, insecure) and the passthrough decision.

The proxy builds its master with:

    before, after = upstream_tls.addons(settings, wants_interception)
    options = upstream_tls.mitmproxy_options(settings)

`before` goes just before mitmproxy's TlsConfig (the passthrough decision must precede
TlsConfig's `tls_clienthello`), `after` right after it: TlsConfig builds every upstream
connection from the global options (roots, the global client certificate), then our
`tls_start_server` patches that one connection for per-host exceptions (mitmproxy-notes.md §2).
The shared, lru-cached `SSL.Context` is never modified: a per-host client certificate swaps
the connection onto a context of our own (`SSL_set_SSL_CTX`, which carries the full chain);
insecure hosts get `set_verify(VERIFY_NONE)` on the connection.

Upstream failures: mitmproxy connects upstream eagerly (at the client's ClientHello), so a
failing handshake, or a server alert right after it (TLS 1.3 "certificate required"), is
known before the client's first request on that tunnel. We record it per server connection
and answer that request with a 502 that names the host, the reason and the fix, instead of
letting mitmproxy reconnect and fail again. The warning is logged once per host and reason.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import paths
from .. import tlsrules
from ..interception import InterceptionPolicy

logger = logging.getLogger("credproxy.upstream_tls")

_SSL_CB_READ_ALERT = 0x4000 | 0x04  # SSL_CB_ALERT | SSL_CB_READ


@dataclass
class Prepared:
    plan: tlsrules.TlsPlan
    ca_file: str | None  # what mitmproxy's ssl_verify_upstream_trusted_ca gets
    ca_dir: str | None  # ... and ssl_verify_upstream_trusted_confdir


# the last settings object prepared: the CLI validates before starting, the proxy builds
# from the same object, and start-up warnings are logged once
_last_prepared: tuple[object, Prepared] | None = None


def prepare(settings) -> Prepared:
    """Validate the TLS settings once (ConfigError for bad config rules) and turn the roots
    into what mitmproxy takes: one PEM file and/or one hashed directory."""
    global _last_prepared
    if _last_prepared is not None and _last_prepared[0] is settings:
        return _last_prepared[1]
    plan = tlsrules.build_plan(settings)
    roots = plan.roots
    ca_file, ca_dir = roots.ca_file, roots.ca_dir
    if roots.kind == "custom" and ca_file is None:
        # several files (SSL_CERT_DIR, or SSL_CERT_FILE + SSL_CERT_DIR): mitmproxy takes one
        combined = paths.data_dir(settings.env) / "upstream-roots.pem"
        paths.write_atomic(combined, b"\n".join(Path(f).read_bytes().strip() + b"\n" for f in roots.files), 0o644)
        ca_file = str(combined)
    elif roots.kind == "system" and roots.pem is not None:
        # macOS keychains / Windows stores, collected as PEM: mitmproxy reads a file
        from ..certs.system import write_pem

        ca_file = str(write_pem(roots.pem, paths.data_dir(settings.env)))
    elif roots.kind == "none":
        # an empty hashed directory: OpenSSL loads it and finds no issuer (uv: no roots trusted)
        empty = paths.data_dir(settings.env) / "no-roots"
        empty.mkdir(parents=True, exist_ok=True)
        ca_dir = str(empty)
    for warning in plan.warnings:
        logger.warning("%s", warning)
    prepared = Prepared(plan=plan, ca_file=ca_file, ca_dir=ca_dir)
    _last_prepared = (settings, prepared)
    return prepared


def mitmproxy_options(settings) -> dict:
    """Global mitmproxy options for upstream TLS: the roots and the global client certificate."""
    return options_for(prepare(settings))


def options_for(p: Prepared) -> dict:
    """`mitmproxy_options` from what `prepare` made (a reload prepares in a worker thread)."""
    return {
        "ssl_insecure": False,
        "ssl_verify_upstream_trusted_ca": p.ca_file,
        "ssl_verify_upstream_trusted_confdir": p.ca_dir,
        "client_certs": p.plan.global_cert.path if p.plan.global_cert else None,
    }


def forget_cached_contexts() -> None:
    """After a reload: mitmproxy caches each upstream `SSL.Context` by its options, which name
    the roots and the client certificate by *path* (`ca-bundle`, the combined
    `upstream-roots.pem`, `client_certs`). A file edited in place keeps its path, so without
    this the old roots (a CA the user removed) and the old certificate stay in force until a
    restart. New connections build their context afresh; open ones keep theirs."""
    from mitmproxy.net import tls

    clear = getattr(getattr(tls, "create_proxy_server_context", None), "cache_clear", None)
    if clear is not None:
        clear()


def addons(settings, wants_interception: Callable[[str, int], bool],
           needs_read: Callable[[], bool] | None = None) -> tuple[list, list]:
    """Addons to insert before TlsConfig, and after it (for per-connection patches).
    `needs_read`: whether `wants_interception` would read a file now (InterceptionPolicy)."""
    p = prepare(settings)
    return ([Passthrough(InterceptionPolicy(settings, p.plan, wants_interception, needs_read))], [PerHostTls(p)])


class Passthrough:
    """Hosts with nothing to inject and no TLS policy are relayed as raw TLS: no certificate
    minted, the client sees the real server (mitmproxy-notes.md §3)."""

    def __init__(self, policy: InterceptionPolicy):
        self.policy = policy

    async def tls_clienthello(self, data) -> None:
        """Async so that, while a credential file changed since it was read (a reload is
        coming), the decision that would parse it runs in a worker thread: a multi-megabyte
        netrc must not stall every other connection on the event loop."""
        if data.ignore_connection:
            return
        address = data.context.server.address
        host = data.client_hello.sni or (address[0] if address else None)
        if not host or not address:
            return
        policy = self.policy
        if policy.needs_read():
            decision = await asyncio.to_thread(policy.decide, host, address[1])
        else:
            decision = policy.decide(host, address[1])
        if not decision.intercept:
            data.ignore_connection = True
        logger.debug("%s:%s %s: %s", host, address[1], "intercepted" if decision.intercept else "passed through",
                     decision.reason)


@dataclass(eq=False)
class _Watch:
    host: str
    port: int
    ssl_conn: object  # keeps the SSL* alive (and its address unique) while watched
    alert: int | None = None


class PerHostTls:
    """Per-connection exceptions (after TlsConfig) and explained upstream failures."""

    MAX_RECORDS = 4096

    def __init__(self, prepared: Prepared):
        self.prepared = prepared
        self.plan = prepared.plan
        self._contexts: dict[str, object] = {}
        self._watches: OrderedDict[str, _Watch] = OrderedDict()
        self._failures: OrderedDict[str, tuple[str, int, tlsrules.Failure]] = OrderedDict()
        self._logged: set[tuple[str, int, str]] = set()
        # fail at start-up, not at the first connection
        for _pattern, rule, _pem in self.plan.client_rules:
            self._client_context(rule.cert)

    def take_over(self, fresh: "PerHostTls") -> None:
        """A reload: become `fresh`, built (its certificates loaded) for the new rules off the
        event loop; the contexts and failure records of the old rules go."""
        self.__dict__.update(fresh.__dict__)

    # -- per-connection policy

    def _client_context(self, pem_path: str | None):
        """A context of our own: same roots as the global options, the key + full chain from
        `pem_path` (if any), and an info callback that records the server's alerts. Built
        once per certificate, shared, never modified after."""
        from OpenSSL import SSL

        ctx = self._contexts.get(pem_path)
        if ctx is None:
            ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
            ca_file, ca_dir = self.prepared.ca_file, self.prepared.ca_dir
            if ca_file is None and ca_dir is None:
                import certifi

                ca_file = certifi.where()
            ctx.load_verify_locations(ca_file, ca_dir)
            if pem_path is not None:
                ctx.use_privatekey_file(pem_path)
                ctx.use_certificate_chain_file(pem_path)
                ctx.check_privatekey()
            ctx.set_verify(SSL.VERIFY_PEER, None)
            ctx.set_info_callback(_on_info_context)
            self._contexts[pem_path] = ctx
        return ctx

    @staticmethod
    def _target(conn) -> tuple[str, int] | None:
        if not conn.address:
            return None
        return str(conn.address[0]).lower(), int(conn.address[1])

    def tls_start_server(self, data) -> None:
        from OpenSSL import SSL

        target = self._target(data.conn)
        if data.ssl_conn is None or target is None:
            return  # another addon built the connection itself; not ours to patch
        host, port = target
        rule = self.plan.for_host(host, port)
        ssl_conn = data.ssl_conn
        watch = _Watch(host=host, port=port, ssl_conn=ssl_conn)
        per_host_cert = rule.client_cert is not None and rule.client_cert.pattern is not None
        if per_host_cert or not _PER_CONNECTION_INFO_CALLBACK:
            # our own context (full chain; alert watching where the per-connection info
            # callback is missing, cryptography < 45): set_SSL_CTX swaps certificate and
            # context, while ciphers, versions, SNI, ALPN and verify settings stay this
            # connection's own
            ssl_conn.set_context(self._client_context(rule.client_cert.path if rule.client_cert else None))
            if hasattr(SSL._lib, "SSL_set_post_handshake_auth") and rule.client_cert is not None:
                SSL._lib.SSL_set_post_handshake_auth(ssl_conn._ssl, 1)
        else:
            SSL._lib.SSL_set_info_callback(ssl_conn._ssl, _shared_info_callback())
        _WATCH_BY_SSL[_ssl_key(ssl_conn._ssl)] = watch
        if rule.insecure is not None:
            ssl_conn.set_verify(SSL.VERIFY_NONE, None)
        self._remember(self._watches, data.conn.id, watch)

    def _remember(self, store: OrderedDict, key, value) -> None:
        store[key] = value
        while len(store) > self.MAX_RECORDS:
            store.popitem(last=False)

    # -- failures

    def _sent_client_cert(self, ssl_conn) -> bool:
        from OpenSSL import SSL

        return ssl_conn is not None and SSL._lib.SSL_get_certificate(ssl_conn._ssl) != SSL._ffi.NULL

    def _record(self, server, error: str | None, verify_code: int | None) -> None:
        watch = self._watches.pop(server.id, None)
        target = (watch.host, watch.port) if watch else self._target(server)
        if target is None:
            return
        host, port = target
        failure = tlsrules.classify_failure(
            error, verify_code=verify_code, alert=watch.alert if watch else None,
            sent_client_cert=self._sent_client_cert(watch.ssl_conn if watch else None),
            host_tls=self.plan.for_host(host, port))
        self._remember(self._failures, server.id, (host, port, failure))
        key = (host, port, failure.reason)
        if key not in self._logged:
            self._logged.add(key)
            logger.warning("%s", tlsrules.failure_message(host, port, failure).rstrip().replace("\n", " "))

    def tls_failed_server(self, data) -> None:
        from OpenSSL import SSL

        verify_code = None
        if data.ssl_conn is not None:
            code = SSL._lib.SSL_get_verify_result(data.ssl_conn._ssl)
            verify_code = code if code != 0 else None
        self._record(data.conn, data.conn.error, verify_code)

    def tls_established_server(self, data) -> None:
        pass  # the watch stays: a TLS 1.3 server rejects a client certificate after this

    def server_disconnected(self, data) -> None:
        watch = self._watches.pop(data.server.id, None)
        if watch is not None and watch.alert is not None:
            self._watches[data.server.id] = watch  # _record pops it again
            self._record(data.server, f"the server sent TLS alert {_alert_name(watch.alert)}", None)

    def requestheaders(self, flow) -> None:
        """The tunnel's upstream connection already failed (handshake error, or the server's
        fatal alert right after it): answer with the explanation instead of trying again."""
        if flow.response is not None or flow.server_conn is None:
            return
        server_id = flow.server_conn.id
        watch = self._watches.get(server_id)
        if server_id not in self._failures and watch is not None and watch.alert is not None:
            self._record(flow.server_conn, f"the server sent TLS alert {_alert_name(watch.alert)}", None)
        record = self._failures.get(server_id)
        if record is None:
            return
        host, port, failure = record
        from mitmproxy import http

        flow.request.stream = False
        flow.response = http.Response.make(
            502, tlsrules.failure_message(host, port, failure),
            {"Content-Type": "text/plain; charset=utf-8", "X-Credproxy-Error": "upstream-tls"})

    def error(self, flow) -> None:
        """Failures after the request went out (a reconnect that failed): mitmproxy answers
        the client itself; we still log once per host with the fix."""
        if flow.server_conn is not None and flow.server_conn.id in self._watches:
            watch = self._watches[flow.server_conn.id]
            if watch.alert is not None:
                self._record(flow.server_conn, f"the server sent TLS alert {_alert_name(watch.alert)}", None)


def _note_alert(watch: _Watch, where: int, ret: int) -> None:
    if where & _SSL_CB_READ_ALERT == _SSL_CB_READ_ALERT and (ret >> 8) == 2:  # a fatal alert
        watch.alert = ret & 0xFF


# One cffi callback for every connection (not one closure each), dispatching on the SSL*
# address. Weak values: an entry goes when its watch (which holds the SSL object) goes.
_WATCH_BY_SSL: "weakref.WeakValueDictionary[int, _Watch]" = weakref.WeakValueDictionary()
_info_callback = None


def _ssl_key(ssl_ptr) -> int:
    from OpenSSL import SSL

    return int(SSL._ffi.cast("uintptr_t", ssl_ptr))


def _shared_info_callback():
    global _info_callback
    if _info_callback is None:
        from OpenSSL import SSL

        def on_info(ssl_ptr, where, ret):
            watch = _WATCH_BY_SSL.get(_ssl_key(ssl_ptr))
            if watch is not None:
                _note_alert(watch, where, ret)

        _info_callback = SSL._ffi.callback("void (*)(const SSL *, int, int)", on_info)
    return _info_callback


def _on_info_context(ssl_conn, where: int, ret: int) -> None:
    watch = _WATCH_BY_SSL.get(_ssl_key(ssl_conn._ssl))
    if watch is not None:
        _note_alert(watch, where, ret)


def _has_per_connection_info_callback() -> bool:
    try:
        from OpenSSL import SSL

        return hasattr(SSL._lib, "SSL_set_info_callback")
    except Exception:  # pragma: no cover
        return False


_PER_CONNECTION_INFO_CALLBACK = _has_per_connection_info_callback()

_ALERTS = {40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate",
           44: "certificate_revoked", 45: "certificate_expired", 46: "certificate_unknown",
           48: "unknown_ca", 116: "certificate_required"}


def _alert_name(code: int) -> str:
    return _ALERTS.get(code, str(code))
