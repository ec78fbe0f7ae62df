"""The chain of sources, the session cache and the single-flight memo.

Answers one question for the proxy and for `credproxy explain`: what to do about the
credentials of a request to URL. Thread-safe; the async entry points run anything that may
block (a keyring subprocess, the OS keyring, reading netrc or the store) in a worker thread so
mitmproxy's event loop never waits on it.

The decision logic is written once, as generators (`_plan_*`) that yield each source lookup
they need and receive its Answer back. The sync entry points answer those lookups inline;
the async ones answer them from a small thread pool, and wait for a lookup someone else
already started without holding a thread. The fast sources (files, environment) are asked on
every request, because a more specific source entry must beat a broader cached credential:
in one worker hop, or on the loop when the cache already has a credential for the URL and
the source can answer from what it has loaded (a stat and an in-memory match). A file source
whose file changed since it was read (`needs_read()`, a stat) would parse it: that ask, and
a whole plan started while any fast source needs a read (a plan may call `knows_host` before
its first ask), go to the worker instead, so a rewritten multi-megabyte netrc is never parsed
on the loop. A cache hit spares the slow sources (keyring).

Scope (design.md, "Security rules"): every credential is sent, and cached, only under the
prefix its source entry names (Answer.prefix / Decision.prefix), matched on every form of the
path a server may read (model.covers). A credential found for a username the client named is
cached for that username only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from typing import Callable, Generator, Hashable, Literal, Sequence
from urllib.parse import urlsplit

from .index import Index, match_index
from .model import (Credentials, Realm, covered_segments, covers, is_loopback, parse_authorization,
                    path_segments, redact_url, split_userinfo, url_path)
from .sources.base import Answer, Source, url_prefix

__all__ = ["Decision", "Explanation", "Resolver", "SessionCache", "default_sources", "is_loopback"]

log = logging.getLogger(__name__)

Action = Literal["leave", "inject", "send", "fail"]

#: statuses after which a request that went out without credentials may be retried (uv §4.3)
CHALLENGE_STATUSES = (401, 403, 404)


@dataclass(frozen=True)
class Decision:
    """What to do with one request.

    - `leave`: forward exactly as the client sent it (client credentials, policy never,
      plain http to a non-loopback host).
    - `inject`: set `Authorization` from `credentials` (found in `source`).
    - `send`: forward without adding credentials (the client's own headers untouched); a
      challenge may follow (`Resolver.challenge`).
    - `fail`: do not forward; answer the client with `reason` (e.g. `authenticate = always`
      and nothing found).

    `source` is the label for the request log: `client`, `index-url`, `env:UV_INDEX_<NAME>`,
    `netrc`, `store`, `old-store`, `native`, `keyring`, `hf-token`, `token-command`,
    `git-credential`, or `none`. `cached` is
    true when the credentials came from the session cache (then a 401 evicts them).
    `preemptive` is false for a retry after a challenge. `username` is the username the
    lookups used (from a username-only client header), so a challenge asks with it again.
    `prefix` is the URL prefix the credential's source entry names (Answer.prefix): the
    entry a user would replace or remove. `ttl` is the answer's lifetime (Answer.ttl): the
    session cache keeps the credential that long. Nothing here prints a secret."""

    action: Action
    credentials: Credentials | None = field(default=None, repr=False)
    source: str = "none"
    reason: str = ""
    index: Index | None = None
    cached: bool = False
    preemptive: bool = True
    username: str | None = None
    prefix: str | None = None
    ttl: float | None = None

    @property
    def header(self) -> str | None:
        return self.credentials.header_value() if self.action == "inject" and self.credentials else None

    @property
    def shown_credentials(self) -> str:
        """The credential as `explain` shows it: `alice:****`, `Bearer ****`, or `-`."""
        return self.credentials.redacted() if self.credentials is not None else "-"


@dataclass(frozen=True)
class Explanation:
    """`credproxy explain URL`: each source asked in order, and the decision.

    `on_challenge` is what a 401 would lead to when the decision is `send` (the netrc
    `default` entry and the keyring for unconfigured hosts are only asked then)."""

    url: str  # redacted
    index: Index | None
    answers: list[Answer]
    decision: Decision
    on_challenge: Decision | None = None

    def render(self) -> str:
        """Human-readable, redacted: the matched index, each source, the decision."""
        lines = [f"URL:      {self.url}"]
        if self.index is not None:
            lines.append(f"index:    {self.index.display} (root {self.index.root_url}, authenticate = {self.index.authenticate})")
        else:
            lines.append("index:    none configured for this URL")
        lines.append("sources, in order:")
        for answer in self.answers:
            detail = answer.detail
            if answer.skipped:
                for prefix in ("skipped because ", "skipped: "):
                    detail = detail[len(prefix):] if detail.startswith(prefix) else detail
                lines.append(f"  {answer.source:<24} skipped because {detail or 'not applicable'}")
                continue
            if answer.found:
                status = "answered" + ("" if answer.preemptive else " (only after a challenge)")
                status += f" [{answer.credentials.redacted()}]"
            else:
                status = "no entry"
            lines.append(f"  {answer.source:<24} {status}" + (f": {detail}" if detail else ""))
        d = self.decision
        lines.append(f"decision: {d.action} from {d.source}" + (" (session cache)" if d.cached else ""))
        sends = {
            "inject": d.shown_credentials,
            "send": "no credentials added",
            "leave": "the request exactly as the client sent it",
            "fail": "nothing: the client gets 401 with the reason below",
        }[d.action]
        lines.append(f"would send: {sends}")
        if d.action == "inject" and d.prefix:
            lines.append(f"scope:    {d.prefix} (sent and cached under this prefix only)")
        lines.append(f"reason:   {d.reason}")
        c = self.on_challenge
        if c is not None and c.action == "inject":
            lines.append(f"on 401:   retry once with {c.shown_credentials} from {c.source}"
                         + (f" (scope {c.prefix})" if c.prefix else ""))
        elif d.action == "send":
            why = f" ({c.reason})" if c is not None and c.reason else ""
            lines.append(f"on 401:   no source would answer{why}; the client gets the 401")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


# --- the session cache ---------------------------------------------------------------------


@dataclass
class _CacheEntry:
    credentials: Credentials = field(repr=False)
    source: str
    prefix: str = ""  # the source entry's prefix it was cached under
    expires_at: float | None = None  # on the resolver's clock; None = until rejected


class SessionCache:
    """Credentials that worked, each under the prefix its source entry names (an index root,
    a store entry's URL, a netrc realm), never wider. Lookups take the longest matching
    prefix (uv takes the shortest, which lets an index at `/` shadow one at `/b`), on whole
    segments of every form of the path (model.covered_segments). Each node keeps the last
    credential inserted for anonymous requests (slot None) and one per username; a
    credential found for a username the client named goes in that username's slot only.
    Not thread-safe by itself: the Resolver holds its lock."""

    def __init__(self) -> None:
        self._nodes: dict[tuple[Realm, tuple[str, ...]], dict[str | None, _CacheEntry]] = {}

    def insert(self, prefix: str, credentials: Credentials, source: str, *, for_username: str | None = None,
               expires_at: float | None = None) -> None:
        """Cache `credentials` under `prefix`. `for_username`: the username the client named
        (a `Basic user:` header): only that username's slot is filled, so one client's
        header never changes what anonymous requests get. `expires_at` (the resolver's clock):
        the end of a token's lifetime (Answer.ttl)."""
        if credentials.is_empty:
            return
        node = self._nodes.setdefault(_key(prefix), {})
        if for_username is not None:
            slots: list[str | None] = [for_username]
        else:
            slots = [None] + ([credentials.username] if credentials.username else [])
        for slot in slots:
            old = node.get(slot)
            # a username-only credential never clobbers a complete one (uv §6)
            if old is None or credentials.is_complete or not old.credentials.is_complete:
                node[slot] = _CacheEntry(credentials, source, prefix, expires_at)

    def lookup(self, url: str, username: str | None = None, min_segments: int = 0,
               now: float | None = None) -> tuple[_CacheEntry, str] | None:
        """(entry, prefix shown) for the longest prefix of `url` holding complete credentials
        (with `username` when given) that have not expired at `now`. Prefixes shorter than
        `min_segments` are ignored."""
        realm = Realm.of(url)
        segments = covered_segments(url_path(url))
        for n in range(len(segments), min_segments - 1, -1):
            node = self._nodes.get((realm, segments[:n]))
            if not node:
                continue
            entry = node.get(username)
            if entry is not None and now is not None and entry.expires_at is not None and entry.expires_at <= now:
                continue  # a token past its lifetime: ask its source again
            if entry is not None and entry.credentials.is_complete:
                return entry, entry.prefix or f"{realm}/" + "/".join(segments[:n])
        return None

    def evict(self, url: str, credentials: Credentials) -> int:
        """Drop `credentials` from every prefix of `url` (not from sibling prefixes: another
        index on the same host keeps what worked for it). Returns how many were dropped."""
        realm, segments = _key(url)
        dropped = 0
        for n in range(len(segments) + 1):
            node = self._nodes.get((realm, segments[:n]))
            if not node:
                continue
            for slot in [s for s, e in node.items() if e.credentials == credentials]:
                del node[slot]
                dropped += 1
        return dropped

    def has_realm(self, realm: Realm) -> bool:
        return any(r == realm and node for (r, _), node in self._nodes.items())

    def __len__(self) -> int:
        return sum(len(node) for node in self._nodes.values())


def _key(url: str) -> tuple[Realm, tuple[str, ...]]:
    return Realm.of(url), path_segments(url_path(url))


# --- single-flight memo for slow sources -----------------------------------------------------


@dataclass
class _Flight:
    future: Future
    finished_at: float | None = None


class SingleFlight:
    """One lookup per key at a time; later askers wait for it. Found answers are kept (for
    their `ttl` when they have one); "nothing found" expires after `negative_ttl` seconds (or
    its own shorter `ttl`) on the injectable clock."""

    def __init__(self, clock: Callable[[], float], negative_ttl: float):
        self._clock = clock
        self._ttl = negative_ttl
        self._flights: dict[Hashable, _Flight] = {}
        self._lock = threading.Lock()

    def begin(self, key: Hashable) -> tuple[Future, bool]:
        """(future, leader). The leader must call `finish`; everyone reads the future."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                if flight.finished_at is None:
                    return flight.future, False
                answer: Answer = flight.future.result()
                age = self._clock() - flight.finished_at
                if answer.found and (answer.ttl is None or age < answer.ttl):
                    return flight.future, False
                if not answer.found and age < self._negative_ttl(answer):
                    return flight.future, False
            future: Future = Future()
            # RUNNING: an asyncio waiter that is cancelled cannot cancel it for the others
            future.set_running_or_notify_cancel()
            self._flights[key] = _Flight(future)
            return future, True

    def _negative_ttl(self, answer: Answer) -> float:
        """A "nothing found" that names a shorter `ttl` (the native store: a login must reach
        the proxy soon) is kept that long; others `negative_ttl`."""
        return min(self._ttl, answer.ttl) if answer.ttl is not None else self._ttl

    def remembered_for(self, key: Hashable) -> float | None:
        """Seconds a remembered "nothing found" for `key` is still served, else None."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is None or flight.finished_at is None or flight.future.result().found:
                return None
            left = self._negative_ttl(flight.future.result()) - (self._clock() - flight.finished_at)
            return left if left > 0 else None

    def finish(self, key: Hashable, future: Future, answer: Answer) -> None:
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None and flight.future is future:
                flight.finished_at = self._clock()
            # under the lock: `begin` must never see a finished flight without its answer
            future.set_result(answer)

    def forget(self, credentials: Credentials) -> None:
        """Drop finished lookups that produced `credentials` (rejected upstream)."""
        with self._lock:
            for key, flight in list(self._flights.items()):
                if flight.finished_at is not None and flight.future.result().credentials == credentials:
                    del self._flights[key]


# --- the resolver ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ask:
    """A source lookup the plan needs. `memo_key` set = slow source, single-flight.
    `inline`: a fast lookup the async driver may answer on the event loop (a cache hit is
    being checked against the sources: a stat and an in-memory match), which it does only
    when the source would not read its file for it (`needs_read`)."""

    source: Source
    url: str
    username: str | None
    index: Index | None
    memo_key: Hashable | None = None
    inline: bool = False


Plan = Generator[_Ask, Answer, "Decision | None"]


class Resolver:
    """The credential chain (design.md order): client header > UV_PUBLISH_* (publish URLs) >
    index URL/env credentials > token-command > hf-token > netrc > store (shared with uv) >
    old-store > native > keyring > git-credential (for `git-credential-hosts` only); session
    cache beside the sources
    (the longest prefix wins); single-flight memo for slow sources; negative results expire
    after 60 s.

    Contract used by the proxy (credproxy/addons/auth.py):

        d = await resolver.aresolve(url, client_authorization)      # before sending
        ... send with d.header if d.action == "inject"; answer 401 with d.reason if "fail"
        retry = await resolver.achallenge(url, d, status)            # status 401/403/404
        ... if retry is not None and retry.action == "inject": re-send once with retry.header
        resolver.record(url, final_decision, final_status)           # cache on < 400
        resolver.knows_host(scheme, host, port)                      # intercept this host?

    The sync versions (`resolve`, `challenge`) may block on a keyring subprocess; the async
    ones never block the event loop. `explain(url, username=None)` asks every source and
    returns an Explanation (redacted). All entry points raise ValueError (never quoting the
    URL) for a URL that is not http(s)://host... . `close()` stops the worker threads."""

    def __init__(
        self,
        settings,
        sources: Sequence[Source] | None = None,
        *,
        clock: Callable[[], float] | None = None,
        negative_ttl: float = 60.0,
        wait_timeout: float | None = None,
        max_workers: int = 4,
    ):
        self.settings = settings
        self.indexes: list[Index] = list(getattr(settings, "indexes", []) or [])
        self._default_chain = sources is None
        self.sources: list[Source] = list(sources) if sources is not None else default_sources(settings)
        self._clock = clock or time.monotonic
        if wait_timeout is None:  # by default a waiter outlasts the keyring command's own timeout
            wait_timeout = max(120.0, float(getattr(settings, "keyring_timeout", 0.0)) + 5.0)
        self._wait_timeout = wait_timeout
        self._lock = threading.Lock()
        self._cache = SessionCache()
        self._memo = SingleFlight(self._clock, negative_ttl)
        # Two pools: a hanging keyring holds a slow worker for up to its timeout, and must not
        # stall the file lookups (netrc, store) of every other request.
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="credproxy-lookup")
        self._slow_executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="credproxy-slow-lookup")
        self._busy = 0  # async entry points under way (aresolve, achallenge, aproxy_credentials)
        self._retiring = False
        self._seed()

    def close(self, cancel_pending: bool = True) -> None:
        """Stop the worker threads. `cancel_pending=False` (a resolver replaced by a reload):
        the requests in the middle of their lookups finish them all (a lookup after the one
        under way is still answered); the threads stop when the last of them is done."""
        with self._lock:
            self._retiring = True
            idle = self._busy == 0
        if cancel_pending or idle:
            self._shutdown(cancel_pending)

    def _shutdown(self, cancel_pending: bool) -> None:
        self._executor.shutdown(wait=False, cancel_futures=cancel_pending)
        self._slow_executor.shutdown(wait=False, cancel_futures=cancel_pending)

    async def _drive(self, plan: Plan):
        """`_run_async(plan)`, counted, so a retiring resolver (`close(cancel_pending=False)`)
        keeps its worker threads until the plans it started are done."""
        with self._lock:
            self._busy += 1
        try:
            return await self._run_async(plan)
        finally:
            with self._lock:
                self._busy -= 1
                last = self._retiring and self._busy == 0
            if last:
                self._shutdown(cancel_pending=False)

    # --- §3: seed the cache from configured index credentials ---------------------------------

    def _seed(self) -> None:
        configured = next((s for s in self.sources if hasattr(s, "configured")), None)
        if configured is None:
            return
        # lowest priority first, so the first-defined index wins a shared prefix (uv §3)
        for index in reversed(self.indexes):
            label, creds = configured.configured(index)
            if creds is not None and creds.is_complete and index.authenticate != "never":
                with self._lock:
                    self._cache.insert(index.root_url, creds, label)

    # --- public API ---------------------------------------------------------------------------

    def resolve(self, url: str, client_authorization: str | None = None) -> Decision:
        _check_url(url)
        return self._run_sync(self._plan_resolve(url, client_authorization))

    async def aresolve(self, url: str, client_authorization: str | None = None) -> Decision:
        _check_url(url)
        return await self._drive(self._plan_resolve(url, client_authorization))

    def challenge(self, url: str, sent: Decision, status: int) -> Decision | None:
        """After 401 (or 403/404 when `sent` carried no credentials and a source may exist):
        an `inject` Decision to re-send with once; otherwise the client gets the response, and
        the result is None, or a `send` Decision whose reason says which sources had nothing."""
        return self._run_sync(self._plan_challenge(url, sent, status))

    async def achallenge(self, url: str, sent: Decision, status: int) -> Decision | None:
        return await self._drive(self._plan_challenge(url, sent, status))

    def proxy_credentials(self, proxy_url: str, username: str | None = None) -> Decision:
        """Basic credentials for the company proxy at `proxy_url` (scheme://host:port/, no
        userinfo), for its Proxy-Authorization. See `_plan_proxy`."""
        _check_url(proxy_url)
        return self._run_sync(self._plan_proxy(proxy_url, username))

    async def aproxy_credentials(self, proxy_url: str, username: str | None = None) -> Decision:
        _check_url(proxy_url)
        return await self._drive(self._plan_proxy(proxy_url, username))

    def record(self, url: str, decision: Decision, status: int) -> None:
        """Cache on success (status < 400) under the prefix the credential's source named
        (never the whole host); a rejected cached credential is evicted. A credential found
        for a username the client named is cached for that username only."""
        if decision.action != "inject" or decision.credentials is None or decision.source == "client":
            return
        if decision.index is not None and decision.index.matches_publish(url):
            # an upload's credential (UV_PUBLISH_TOKEN) is for the publish URL only, and a
            # publish URL at `/` would be a prefix of the whole host: uploads are not cached,
            # they ask the sources every time
            return
        creds = decision.credentials
        prefix = decision.prefix or url_prefix(url)
        expires_at = self._clock() + decision.ttl if decision.ttl is not None else None
        with self._lock:
            if status < 400:
                if covers(prefix, url):  # the decision was for this URL; never cache elsewhere
                    self._cache.insert(prefix, creds, decision.source, for_username=decision.username,
                                       expires_at=expires_at)
            elif status == 401:
                self._cache.evict(url, creds)

    def needs_read(self) -> bool:
        """Whether some fast source would read and parse its file on its next lookup (or
        `knows_host`): a few `stat` calls. The async driver and the proxy's CONNECT hook ask
        on the event loop only while this is False."""
        return any(source.fast and _needs_read(source) for source in self.sources)

    def knows_host(self, scheme: str, host: str, port: int) -> bool:
        scheme, host = scheme.lower(), host.lower()
        realm = Realm(scheme, host.strip("[]"), port)
        if any(index.realm == realm or (index.publish_url and Realm.of(index.publish_url) == realm)
               for index in self.indexes):
            return True
        with self._lock:
            if self._cache.has_realm(realm):
                return True
        for source in self.sources:
            try:
                if (source.fast or getattr(source, "scoped_to_hosts", False)) and source.knows_host(scheme, host, port):
                    return True
            except Exception:  # noqa: BLE001 - a broken source must not break interception
                log.warning("credential source %s failed answering knows_host", getattr(source, "name", "?"))
        return False

    def explain(self, url: str, username: str | None = None) -> Explanation:
        """Ask every source in order (nothing is sent upstream), then decide as `resolve`
        would. URL userinfo counts as the client's credentials."""
        _check_url(url)
        clean, userinfo = _split_userinfo_safe(url)
        authorization = None
        if userinfo is not None:
            username = username or userinfo.username
            authorization = userinfo.header_value() if userinfo.is_complete else None
        if authorization is None and username is not None:
            authorization = Credentials.basic(username, None).header_value()
        index = match_index(self.indexes, clean)
        lookup_user = username
        answers: list[Answer] = []
        for source in self.sources:
            slow_user = lookup_user if lookup_user is not None else (index.username if index else None)
            if not source.fast:
                skip = self._slow_skip_reason(source, index, slow_user, challenged=True)
                if skip:
                    answers.append(Answer(source.name, detail=f"skipped because {skip}", skipped=True))
                    continue
                answer = self._ask_sync(_Ask(source, clean, slow_user, index, self._memo_key(source, clean, index, slow_user)))
                if index is None:
                    answer = replace(answer, preemptive=False)  # unconfigured host: on challenge only
            else:
                answer = self._ask_sync(_Ask(source, clean, lookup_user, index))
            if answer.found and not answer.credentials.is_complete and lookup_user is None:
                lookup_user = answer.credentials.username
            answers.append(answer)
        if (self._default_chain and getattr(self.settings, "keyring_provider", "disabled") == "disabled"
                and not getattr(self.settings, "native_auth", False)):
            answers.append(Answer("keyring", detail="keyring-provider = disabled (set it to subprocess or native)", skipped=True))
        decision = self._run_sync(self._plan_resolve(clean, authorization))
        retry = None
        if decision.action == "send":
            retry = self._run_sync(self._plan_challenge(clean, decision, 401))
        return Explanation(redact_url(url), index, answers, decision, retry)

    # --- the plans ----------------------------------------------------------------------------

    def _plan_resolve(self, url: str, client_authorization: str | None) -> Plan:
        index = match_index(self.indexes, url)
        shown = redact_url(url)
        client: Credentials | None = None
        if client_authorization:
            client = parse_authorization(client_authorization)
            if client is None:
                # Not Basic/Bearer, or malformed: the client knows what it is doing (uv would
                # overwrite it; a proxy should not replace a scheme it cannot read).
                scheme = client_authorization.strip().partition(" ")[0][:20]
                return Decision("leave", source="client", index=index,
                                reason=f"the client sent its own Authorization ({scheme or 'empty'} scheme)")
            if client.is_complete:
                return Decision("leave", source="client", index=index,
                                reason="the client sent complete credentials; forwarded as they are")
        username = client.username if client is not None else None
        if index is not None and index.authenticate == "never":
            return Decision("leave", index=index, username=username,
                            reason=f"index {index.display} has authenticate = never")
        plain_http = self._plain_http_refusal(url, index)
        if plain_http:
            return Decision("leave", index=index, username=username, reason=plain_http)
        misses: list[str] = []
        found = yield from self._plan_best(url, username, index, challenged=False, misses=misses)
        if found is not None and found.action == "inject":
            return found
        if index is not None and index.authenticate == "always":
            if found is not None:  # a username but no password
                return found
            return Decision("fail", index=index, username=username,
                            reason=f"Missing credentials for {shown}: index {index.display} has authenticate = always "
                                   f"and no source ({', '.join(s.name for s in self.sources)}) has credentials for it")
        later = [s.name for s in self.sources if not s.fast]
        reason = "no source has credentials to send before the first request"
        if misses:
            reason += "; " + "; ".join(misses)
        elif later:
            reason += f"; on a challenge {', '.join(later)} and the netrc default entry may be asked"
        return Decision("send", index=index, username=username, reason=reason)

    def _plan_proxy(self, url: str, username: str | None) -> Plan:
        """The chain's entries for the proxy's own host, in chain order: `inject` with the
        first complete Basic credential, else `send` saying what was asked. Entries that
        name the proxy only (a netrc machine, a store entry or keyring item for its URL):
        never the netrc `default` entry or a bearer token, and never the session cache
        (registry credentials are cached there). The keyring is asked only with a username
        (from the proxy URL), as uv asks it for hosts without an index."""
        lookup_user = username
        asked: list[str] = []
        realm = Realm.of(url)
        # the store keeps only https:// entries for non-local hosts (uv's rule): an entry for
        # https://proxy:port names the same proxy, reached over plain http
        host = f"[{realm.host}]" if ":" in realm.host else realm.host
        alternate = f"https://{host}:{realm.port}/" if realm.scheme == "http" else None
        for source in self.sources:
            if source.fast:
                answer = yield _Ask(source, url, lookup_user, None)
                if not answer.found and alternate is not None:
                    other = yield _Ask(source, alternate, lookup_user, None)
                    answer = other if other.found else answer
            else:
                if lookup_user is None:
                    asked.append(f"{source.name} not asked (no username: put one in the proxy URL)")
                    continue
                answer = yield _Ask(source, url, lookup_user, None, self._memo_key(source, url, None, lookup_user))
            if not answer.found or answer.credentials.scheme != "basic" or not answer.preemptive:
                if not answer.skipped:
                    asked.append(f"{answer.source}: {answer.detail or 'no entry'}")
                continue
            creds = answer.credentials
            if not creds.is_complete:
                lookup_user = lookup_user or creds.username
                continue
            return Decision("inject", creds, source=answer.source, username=username, prefix=answer.prefix,
                            reason=f"{answer.source} answered for the proxy {Realm.of(url)}: {answer.detail}")
        return Decision("send", username=username,
                        reason=f"no source has a password for the proxy {Realm.of(url)}"
                               + (f" ({'; '.join(asked)})" if asked else ""))

    def _plan_challenge(self, url: str, sent: Decision, status: int) -> Plan:
        if not sent.preemptive or sent.action in ("leave", "fail") or status not in CHALLENGE_STATUSES:
            return None  # one retry per request; client/never/http requests are not ours
        # This resolver's own settings decide, never the index `sent` carries: a reload may
        # have swapped this resolver in while the request was upstream, and the old index
        # (since removed, or set to `authenticate = never`) would let a source answer for a
        # host the new settings no longer name (the netrc default entry, the keyring).
        index = match_index(self.indexes, url)
        if index is not None and index.authenticate == "never":
            return None
        if self._plain_http_refusal(url, index):
            return None
        if sent.action == "inject":
            if status != 401 or not sent.cached or sent.credentials is None:
                return None  # fresh credentials that fail are final (uv: no loop over sources)
            # cached credentials rejected (short-lived token, password changed): evict, ask again
            with self._lock:
                self._cache.evict(url, sent.credentials)
            self._memo.forget(sent.credentials)
            found = yield from self._plan_sources(url, sent.username, index, challenged=True)
            if found is None or found.action != "inject" or found.credentials == sent.credentials:
                return None
            return replace(found, preemptive=False, reason=f"cached credentials from {sent.source} were rejected; " + found.reason)
        # sent without credentials
        if status != 401 and not self._may_have_source(url, index, sent.username):
            return None
        misses: list[str] = []
        hit = yield from self._plan_best(url, sent.username, index, challenged=True, misses=misses)
        if hit is None and misses:  # not re-sent; say why (the request log's -v)
            return Decision("send", index=index, username=sent.username, preemptive=False,
                            reason="; ".join(misses))
        if hit is None or hit.action != "inject":
            return None
        return replace(hit, preemptive=False, reason=f"upstream answered {status}; " + hit.reason)

    def _plan_best(self, url: str, username: str | None, index: Index | None, challenged: bool,
                   misses: list[str] | None = None) -> Plan:
        """The session cache and the sources together: the longest prefix wins, so a more
        specific source entry (a store entry for `/team-b/`) beats a broader cached one (a
        credential cached for the host). Among the sources, chain order decides, as in uv.
        A cache hit spares the slow sources (keyring) but not the fast ones (files, env)."""
        # an upload asks the sources, not the cache: UV_PUBLISH_* come before the index's own
        # (cached) credentials, and an upload is never re-sent, so it must be right first
        publishing = index is not None and index.matches_publish(url)
        hit = None if publishing else self._cache_hit(url, username, index, challenged)
        found = yield from self._plan_sources(url, username, index, challenged, misses, slow=hit is None)
        if hit is None:
            return found
        if found is None or found.action != "inject":
            return hit
        if found.credentials == hit.credentials or _depth(hit.prefix) > _depth(found.prefix):
            return hit
        return found

    def _plan_sources(self, url: str, username: str | None, index: Index | None, challenged: bool,
                      misses: list[str] | None = None, slow: bool = True) -> Plan:
        """The first usable answer in chain order, as an `inject` Decision; a `fail` for an
        incomplete credential under `always`; else None. `slow=False` skips the keyring.
        An answer whose prefix does not cover the URL is not used (a memoised keyring answer
        for another URL; a source that names no prefix answers for the exact URL only)."""
        lookup_user = username
        publishing = index is not None and index.matches_publish(url) and not index.matches(url)
        for source in self.sources:
            if source.fast:
                answer = yield _Ask(source, url, lookup_user, index, inline=not slow)
                if publishing and not answer.found and not answer.skipped:
                    # the index's credential prefix includes its publish URL (netrc, store)
                    answer = yield _Ask(source, index.url, lookup_user, index, inline=not slow)
            elif not slow:
                continue
            else:
                slow_user = lookup_user if lookup_user is not None else (index.username if index else None)
                if self._slow_skip_reason(source, index, slow_user, challenged):
                    continue
                answer = yield _Ask(source, url, slow_user, index, self._memo_key(source, url, index, slow_user))
                if not answer.found and misses is not None and not answer.skipped:
                    misses.append(f"{answer.source} answered nothing: {answer.detail or 'no entry'}")
            if not answer.found:
                continue
            creds = answer.credentials
            if not creds.is_complete:
                # a username only (index URL `https://alice@h/`, UV_INDEX_X_USERNAME): look
                # for its password in the later sources
                if lookup_user is None:
                    lookup_user = creds.username
                continue
            if not answer.preemptive and not challenged:
                continue  # the netrc default entry: only after the upstream asked
            prefix = answer.prefix or url_prefix(url)
            if index is not None and index.matches_publish(url) and covers(prefix, index.url):
                prefix = index.publish_url or prefix  # the index's credential, for its upload URL
            if not covers(prefix, url):
                if misses is not None:
                    misses.append(f"{answer.source} answered for {redact_url(prefix)}, which does not cover this URL")
                continue
            how = "after a challenge" if challenged else "before sending"
            return Decision("inject", creds, source=answer.source, index=index, username=username,
                            preemptive=not challenged, prefix=prefix, ttl=answer.ttl,
                            reason=f"{answer.source} answered {how}: {answer.detail}")
        if lookup_user is not None and index is not None and index.authenticate == "always":
            return Decision("fail", index=index, username=username,
                            reason=f"Incomplete credentials for {redact_url(url)}: a username but no password "
                                   f"(index {index.display} has authenticate = always)")
        return None

    def _cache_hit(self, url: str, username: str | None, index: Index | None, challenged: bool) -> Decision | None:
        # Before sending to an index, only prefixes within that index count; after a
        # challenge the realm entry may answer too (uv: index URL, then realm).
        floor = len(path_segments(index.root_path)) if index is not None and not challenged else 0
        now = self._clock()
        with self._lock:
            found = self._cache.lookup(url, username, min_segments=floor, now=now)
        if found is None:
            return None
        entry, prefix = found
        ttl = entry.expires_at - now if entry.expires_at is not None else None  # kept, not extended
        return Decision("inject", entry.credentials, source=entry.source, index=index, username=username,
                        cached=True, preemptive=not challenged, prefix=prefix, ttl=ttl,
                        reason=f"session cache: {entry.source} credentials for {prefix}")

    def _plain_http_refusal(self, url: str, index: Index | None) -> str:
        """Why no credential may go to this plain-http URL, or "" when one may: an http
        index names it, or it is loopback and an index or a source names its port (any
        local user can listen on a loopback port)."""
        realm = Realm.of(url)
        if realm.scheme != "http":
            return ""
        if index is not None and index.realm.scheme == "http":
            return ""
        if not is_loopback(realm.host):
            return f"plain http to {realm} (not loopback, no index names it): credentials are never sent"
        if self.knows_host(realm.scheme, realm.host, realm.port):
            return ""
        return (f"plain http to {realm}: loopback, but no index or credential source names this port "
                f"(any local user may listen on it); credentials are never sent")

    def _slow_skip_reason(self, source: Source, index: Index | None, username: str | None, challenged: bool) -> str:
        if getattr(source, "scoped_to_hosts", False):  # git credential helpers: their own hosts only
            return "" if challenged else "asked only after the host challenged, as git asks its helpers"
        if index is None and not challenged:
            return "slow sources are asked for hosts without a configured index only after a challenge"
        if index is None and username is None:
            return "no username is known and no index is configured for this URL (as uv)"
        return ""

    def _memo_key(self, source: Source, url: str, index: Index | None, username: str | None) -> Hashable:
        # a source whose answer depends on more than the index or host says so (git's helpers
        # with useHttpPath: the repository)
        scope = getattr(source, "memo_scope", None)
        return (source.name, index.url if index is not None else str(Realm.of(url)), username,
                scope(url) if scope is not None else None)

    def _may_have_source(self, url: str, index: Index | None, username: str | None) -> bool:
        """Whether a 403/404 to a request without credentials is worth a retry."""
        if index is not None:
            return True
        parts = Realm.of(url)
        if self.knows_host(parts.scheme, parts.host, parts.port):
            return True
        return username is not None and any(not s.fast for s in self.sources)

    # --- answering lookups ----------------------------------------------------------------------

    def _run_sync(self, plan: Plan):
        try:
            ask = next(plan)
            while True:
                ask = plan.send(self._ask_sync(ask))
        except StopIteration as done:
            return done.value

    async def _run_async(self, plan: Plan):
        try:
            if self.needs_read():
                # a file changed since a source read it: the plan's first steps (which may
                # call knows_host) and its fast asks run in the worker, not on the loop
                ask, done = await asyncio.get_running_loop().run_in_executor(self._executor, _start_fast, plan)
                if ask is None:
                    return done
            else:
                ask = next(plan)
            while True:
                if ask.memo_key is None and ask.inline and not _needs_read(ask.source):
                    ask = plan.send(_call(ask))  # a cache hit stays on the loop, no thread hop
                elif ask.memo_key is None:
                    # a run of fast lookups (files, env) in one worker hop, not one per source
                    ask, done = await asyncio.get_running_loop().run_in_executor(
                        self._executor, _advance_fast, plan, ask)
                    if ask is None:
                        return done
                else:
                    ask = plan.send(await self._ask_async(ask))
        except StopIteration as done:
            return done.value

    def _ask_sync(self, ask: _Ask) -> Answer:
        if ask.memo_key is None:
            return _call(ask)
        future, leader = self._memo.begin(ask.memo_key)
        if leader:
            self._lead(ask, future)
        try:
            return self._remembered(ask, future.result(timeout=self._wait_timeout), leader)
        except FutureTimeout:
            return self._gave_up(ask)

    async def _ask_async(self, ask: _Ask) -> Answer:
        loop = asyncio.get_running_loop()
        if ask.memo_key is None:
            return await loop.run_in_executor(self._executor, _call, ask)
        future, leader = self._memo.begin(ask.memo_key)
        if leader:
            # The lookup finishes (and wakes the others) even if this request is cancelled.
            self._slow_executor.submit(self._lead, ask, future)
        try:
            answer = await asyncio.wait_for(asyncio.wrap_future(future), self._wait_timeout)
        except asyncio.TimeoutError:
            return self._gave_up(ask)
        return self._remembered(ask, answer, leader)

    def _remembered(self, ask: _Ask, answer: Answer, leader: bool) -> Answer:
        """A "nothing found" served from the memo says so, and until when (-v, explain)."""
        if leader or answer.found:
            return answer
        left = self._memo.remembered_for(ask.memo_key)
        if left is None:
            return answer
        until = time.strftime("%H:%M:%S", time.localtime(time.time() + left))
        return replace(answer, detail=f"{answer.detail} (remembered; asked again after {until})")

    def _lead(self, ask: _Ask, future: Future) -> None:
        self._memo.finish(ask.memo_key, future, _call(ask))

    def _gave_up(self, ask: _Ask) -> Answer:
        message = f"{ask.source.name}: no answer within {self._wait_timeout:g}s; continuing without it"
        log.warning("%s", message)
        return Answer(ask.source.name, detail=message)


def _advance_fast(plan: Plan, ask: _Ask) -> tuple[_Ask | None, "Decision | None"]:
    """Answer fast asks until the plan wants a slow one: (that ask, None); or ends: (None,
    its result). StopIteration cannot cross a Future, hence the pair."""
    try:
        while ask.memo_key is None:
            ask = plan.send(_call(ask))
    except StopIteration as done:
        return None, done.value
    return ask, None


def _start_fast(plan: Plan) -> tuple[_Ask | None, "Decision | None"]:
    """`_advance_fast` from the plan's start."""
    try:
        ask = next(plan)
    except StopIteration as done:
        return None, done.value
    return _advance_fast(plan, ask)


def _needs_read(source: Source) -> bool:
    """Whether `source` would read a file to answer (sources without files never do). A
    source that cannot tell is treated as one that would."""
    check = getattr(source, "needs_read", None)
    if check is None:
        return False
    try:
        return bool(check())
    except Exception:  # noqa: BLE001 - then ask it off the loop, where its error is handled
        return True


def _call(ask: _Ask) -> Answer:
    try:
        return ask.source.lookup(ask.url, ask.username, ask.index)
    except Exception as e:  # noqa: BLE001 - sources should not raise; if one does, go on
        # the type only: an exception's text may quote a secret
        message = f"{ask.source.name} failed: {type(e).__name__}"
        log.warning("%s", message)
        return Answer(ask.source.name, detail=message)


def _check_url(url: str) -> None:
    """Raise ValueError for a URL we cannot take apart, without quoting it: a password with
    an unencoded `/` or `#` makes urllib read part of it as the port or the path."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a non-numeric port
    except ValueError:
        raise ValueError("invalid URL: cannot parse its host and port (percent-encode special characters in the password)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid URL: expected http(s)://host/path, got scheme {parts.scheme[:10]!r}") from None


def _split_userinfo_safe(url: str) -> tuple[str, Credentials | None]:
    try:
        return split_userinfo(url)
    except ValueError:
        from .model import without_userinfo

        return without_userinfo(url), None


def _depth(prefix: str | None) -> int:
    """How specific a prefix is: its number of path segments."""
    return len(path_segments(url_path(prefix))) if prefix else 0


# --- building the chain from settings ---------------------------------------------------------


def default_sources(settings) -> list[Source]:
    """The chain in design.md order, from Settings: UV_PUBLISH_* (publish URLs only) > index
    URL/env > token-command (indexes that set one) > hf-token > netrc > store > old-store >
    native (keyring-provider = native, or UV_PREVIEW_FEATURES=native-auth) > keyring
    (keyring-provider = subprocess) > git-credential (git-credential-hosts)."""
    from .sources.hf import HuggingFaceSource
    from .sources.keyring_subprocess import KeyringSubprocessSource
    from .sources.native import NativeKeyringSource
    from .sources.netrc import NetrcSource
    from .sources.publish_env import PublishEnvSource
    from .sources.store import store_sources
    from .sources.token_command import TokenCommandSource
    from .sources.url_env import IndexCredentialsSource

    env = settings.env
    sources: list[Source] = []
    if any(index.publish_url for index in settings.indexes):
        sources.append(PublishEnvSource(list(settings.indexes), env))
    sources.append(IndexCredentialsSource(list(settings.indexes), env))
    if any(index.token_command for index in settings.indexes):
        # explicit per-index configuration, like the index's env credentials
        sources.append(TokenCommandSource(list(settings.indexes), env, timeout=getattr(settings, "keyring_timeout", 10.0)))
    if "UV_NO_HF_TOKEN" not in env:
        sources.append(HuggingFaceSource(env))
    sources.append(NetrcSource(env, indexes=settings.indexes,
                               default_scope=getattr(settings, "netrc_default", "indexes"),
                               loopback_scope=getattr(settings, "netrc_loopback", "index-ports")))
    sources.extend(store_sources(env))  # the store shared with uv, then the old location if it exists
    provider = getattr(settings, "keyring_provider", "disabled")
    # uv's order: its native store, then a `keyring` command; both may be on
    if provider == "native" or getattr(settings, "native_auth", False):
        sources.append(NativeKeyringSource())
    if provider == "subprocess":
        sources.append(KeyringSubprocessSource(timeout=getattr(settings, "keyring_timeout", 10.0), env=env))
    git_hosts = list(getattr(settings, "git_credential_hosts", []) or [])
    if git_hosts:
        from ..tlsrules import parse_host_patterns  # no mitmproxy; config is loaded by now
        from .sources.git_credential import GitCredentialSource

        patterns = parse_host_patterns(git_hosts, "git-credential-hosts")
        sources.append(GitCredentialSource(lambda host, port: any(p.matches(host, port) for p in patterns),
                                           env, timeout=getattr(settings, "keyring_timeout", 10.0)))
    return sources
