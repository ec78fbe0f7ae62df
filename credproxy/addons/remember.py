"""Remember what worked (`serve --remember`): a credential a client sent itself, and that
the upstream accepted, is stored so the next unmodified client needs none.

Hook and why: `responseheaders`, the first moment the upstream's status is known (and before
a large body streams). By then the auth addon (addons/auth.py, earlier in the chain) has
recorded in `flow.metadata["credproxy"]` whether the request's Authorization is the
client's own (`source = client`, `action = leave`): only those are remembered, never a
credential credproxy injected, never the re-send it made itself.

Where: under the index root when an index matches, else the host (`scheme://host[:port]/`);
into uv's native store (the OS keyring, service `uv:<that URL>`) when the native store is on
(`keyring-provider = native` or `UV_PREVIEW_FEATURES=native-auth`), else into credproxy's own file store. Once per proxy run per
(place, credential). Never over plain http to a non-loopback host, never for an index with
`authenticate = never` or a host matching `--remember-exclude`, by the settings in force when
it is written (a reload while the sources are asked decides again). The write takes a file lock
(or a keyring call), so it runs in a worker thread. Logged as
`remembered <place> for <user> (source: client)`; never the secret.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from mitmproxy import http

from .. import tlsrules
from ..credentials.index import match_index
from ..credentials.model import Credentials, Realm, display_username, parse_authorization, redact_url
from ..credentials.resolver import is_loopback
from .auth import METADATA_KEY, RETRY_MARK, request_url

logger = logging.getLogger("credproxy.remember")


class RememberAddon:
    def __init__(self, settings, resolver, *, store=None, keyring_backend=None):
        self.use(settings, resolver)
        self._store = store
        self._keyring = keyring_backend
        self._done: set[tuple[str, Credentials]] = set()
        self._lock = threading.Lock()
        # shown at the default level: the user asked for it, and must see what was stored
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)

    def use(self, settings, resolver) -> None:
        """The settings and resolver to work with: at start, and after a reload (the old
        resolver is closed then; what was remembered this run stays remembered)."""
        self.settings = settings
        self.resolver = resolver
        self.indexes = list(getattr(resolver, "indexes", None) or getattr(settings, "indexes", []) or [])
        self.excluded = tlsrules.parse_host_patterns(getattr(settings, "remember_exclude", []) or [],
                                                     "--remember-exclude")
        self.native = (getattr(settings, "keyring_provider", "disabled") == "native"
                       or bool(getattr(settings, "native_auth", False)))

    async def responseheaders(self, flow: http.HTTPFlow) -> None:
        place_and_creds = self._candidate(flow)
        if place_and_creds is None:
            return
        place, creds = place_and_creds
        with self._lock:
            if (place, creds) in self._done:
                return
            self._done.add((place, creds))
        if await self._known(flow, creds):
            return  # a source has it already (netrc, store...): no second copy of the secret
        if self._candidate(flow) != place_and_creds:
            # a reload while we asked (an index set to `authenticate = never`, removed or
            # moved): the settings now in force decide, and they say no, or somewhere else
            with self._lock:
                self._done.discard(place_and_creds)
            return
        try:
            where = await asyncio.to_thread(self._write, place, creds)
        except Exception as e:  # noqa: BLE001 - the type only: a message could quote the secret
            # NoSecretService's text names the fix and no secret; others: the type only
            reason = str(e) if type(e).__name__ == "NoSecretService" else type(e).__name__
            logger.warning("remembering %s for %s failed (%s); nothing was stored", redact_url(place),
                           display_username(creds.username, creds.password) or "(no username)", reason)
            return
        # the place is an index root, which may carry a token query parameter: masked
        logger.info("remembered %s for %s in %s (source: client)", redact_url(place), display_username(creds.username, creds.password) or "(no username)",
                    where)

    async def _known(self, flow: http.HTTPFlow, creds: Credentials) -> bool:
        aresolve = getattr(self.resolver, "aresolve", None)
        if aresolve is None:
            return False
        try:
            decision = await aresolve(request_url(flow.request), None)
        except Exception:  # noqa: BLE001 - then it is not known; remembering is still safe
            return False
        return decision.action == "inject" and decision.credentials == creds

    def _candidate(self, flow: http.HTTPFlow) -> tuple[str, Credentials] | None:
        """(place, credential) to remember for this response, or None."""
        response = flow.response
        meta = flow.metadata.get(METADATA_KEY)
        if response is None or RETRY_MARK in flow.metadata or not isinstance(meta, dict):
            return None
        if meta.get("source") != "client" or meta.get("action") != "leave" or response.status_code >= 400:
            return None
        creds = parse_authorization(flow.request.headers.get("authorization"))
        if creds is None or not creds.is_complete:
            return None
        if self.native and creds.scheme != "basic":
            return None  # uv's native store holds username/password pairs only
        url = request_url(flow.request)
        realm = Realm.of(url)
        if realm.scheme != "https" and not is_loopback(realm.host):
            return None  # what crossed the network in clear text is not worth keeping
        if any(p.matches(realm.host, realm.port) for p in self.excluded):
            return None
        index = match_index(self.indexes, url)
        if index is not None and index.authenticate == "never":
            return None
        if index is not None and not index.matches(url):
            index = None  # its publish URL: what that host accepted is remembered for that host
        return (index.root_url if index is not None else f"{realm}/"), creds

    def _write(self, place: str, creds: Credentials) -> str:
        if self.native:
            backend = self._keyring
            if backend is None:
                from ..credentials.sources.native import native_keyring

                backend = native_keyring()  # the Secret Service on Linux, as uv; written as uv does
            backend.set_password(f"uv:{place}", creds.username or "", creds.password or "")
            return "the native store"
        from ..credentials.store import Store, StoreEntry, default_store_path

        store = self._store or Store(default_store_path(getattr(self.settings, "env", None)))
        if creds.scheme == "bearer":
            store.add(StoreEntry.bearer(place, creds.token or ""))
        else:
            store.add(StoreEntry.basic(place, creds.username or "", creds.password))
        return "the store"
