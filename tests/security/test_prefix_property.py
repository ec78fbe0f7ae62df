"""The scope invariant as a property (issue 9, "Acceptance"): a credential is only ever sent to
a URL that its source's prefix covers.

Random credential sources (store entries with paths and usernames, netrc machines and a
`default` entry, indexes with UV_INDEX_* credentials or a `token-command`, both netrc scope
settings), then random
requests (paths with encoded separators, dot segments, backslashes, `;` parameters; loopback
and other hosts; http and https; a `Basic user:` header; a Host header naming another host)
answered 200 or 401 at random, so the session cache fills and is evicted on the way. They go
through the real Resolver with the real source chain, and through the auth addon (mitmproxy's
tflow/taddons; the re-send's network replay is replaced by a recorder).

The oracle is written independently of credproxy's matching: a URL is covered by a prefix
when the raw path and the fully percent-decoded, backslash-to-slash, posixpath.normpath'd
path are both under the prefix's path, on whole segments, in the same realm. Every password
is unique, so each Authorization header sent names the entry it came from.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from unittest import mock
from urllib.parse import unquote, urlsplit

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from mitmproxy.test import taddons, tflow

from credproxy.addons import auth as auth_addon
from credproxy.addons.auth import AuthAddon, request_url
from credproxy.config import Settings
from credproxy.credentials.index import Index
from credproxy.credentials.model import parse_authorization
from credproxy.credentials.resolver import Resolver
from credproxy.credentials.store import StoreEntry, dumps

HOSTS = ("h.test", "g.test", "localhost", "127.0.0.1")
LOOPBACK = ("localhost", "127.0.0.1")
ORIGINS = (("https", 443), ("https", 8443), ("http", 80), ("http", 8080))
PLAIN = ("team-a", "team-b", "simple", "x")
TRICKS = ("..", ".", "%2e%2e", "%2E%2e", "..%2f", "..%2F", "%2f", "..%5c", "a\\..\\..", "..;", "..;x",
          "", ".%2e", "%2e", "team-a%2f..")
USERS = ("u1", "u2")


# --- the oracle -------------------------------------------------------------------------------


def realm(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}[scheme]


def segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


def oracle_covers(prefix_url: str, url: str) -> bool:
    if realm(prefix_url) != realm(url):
        return False
    prefix = segments(urlsplit(prefix_url).path)
    raw = urlsplit(url).path or "/"
    decoded = posixpath.normpath("/" + unquote(raw).replace("\\", "/"))
    return all(segments(p)[: len(prefix)] == prefix for p in (raw, decoded))


@dataclass
class World:
    """What the sources hold, and who owns each password."""

    store: list[tuple[str, str]]  # (service URL, username)
    machines: list[str]  # netrc machine names
    default: bool  # a netrc `default` entry
    indexes: list[str]  # index URLs, each with UV_INDEX_<NAME>_* credentials
    default_scope: str
    loopback_scope: str
    token_commands: list[bool] = field(default_factory=list)  # per index: a token-command instead
    owners: dict[str, tuple[str, str]] = field(default_factory=dict)  # password -> (kind, what)

    def index_objects(self) -> list[Index]:
        return [Index.from_url(url, name=f"ix{i}") for i, url in enumerate(self.indexes)]

    def allowed(self, password: str, url: str) -> bool:
        """May the credential holding `password` go to `url`?"""
        kind, what = self.owners[password]
        scheme, host, port = realm(url)
        indexes = self.index_objects()
        if scheme == "http":
            named = any(realm(ix.url) == (scheme, host, port) for ix in indexes) or \
                any(realm(service) == (scheme, host, port) for service, _ in self.store)
            if host not in LOOPBACK:
                if not any(ix.realm.scheme == "http" and oracle_covers(ix.root_url, url) for ix in indexes):
                    return False
            elif not named and not (self.loopback_scope == "any-port" and host in self.machines):
                return False
        if kind == "store":
            return oracle_covers(what, url)
        if kind in ("index", "token-command"):
            return oracle_covers(what, url)
        if kind == "machine":
            if host != what:
                return False
            if host in LOOPBACK and self.loopback_scope != "any-port":
                return any(realm(ix.url) == (scheme, host, port) for ix in indexes)
            return True
        assert kind == "default"
        return self.default_scope == "any-host" or any(oracle_covers(ix.root_url, url) for ix in indexes)


def origin_url(scheme: str, port: int, host: str, path: str) -> str:
    netloc = host if port == {"http": 80, "https": 443}[scheme] else f"{host}:{port}"
    return f"{scheme}://{netloc}{path}"


plain_paths = st.lists(st.sampled_from(PLAIN), max_size=2).map(lambda s: "/" + "".join(x + "/" for x in s))
request_paths = st.builds(
    lambda segs, slash: "/" + "/".join(segs) + ("/" if slash and segs else ""),
    st.lists(st.one_of(st.sampled_from(PLAIN), st.sampled_from(TRICKS)), max_size=5),
    st.booleans(),
)
origins = st.sampled_from(ORIGINS)
hosts = st.sampled_from(HOSTS)


@st.composite
def worlds(draw) -> World:
    store = draw(st.lists(st.tuples(origins, hosts, plain_paths, st.sampled_from(USERS)), max_size=4))
    indexes = draw(st.lists(st.tuples(origins, hosts, plain_paths, st.booleans(), st.booleans()), max_size=2))
    world = World(
        store=[(origin_url(s, p, h, path), user) for (s, p), h, path, user in store],
        machines=draw(st.lists(hosts, max_size=3, unique=True)),
        default=draw(st.booleans()),
        indexes=[origin_url(s, p, h, path + ("simple/" if simple else "")) for (s, p), h, path, simple, _ in indexes],
        token_commands=[token for *_, token in indexes],
        default_scope=draw(st.sampled_from(("indexes", "any-host"))),
        loopback_scope=draw(st.sampled_from(("index-ports", "any-port"))),
    )
    return world


@st.composite
def requests(draw, world: World):
    """A request, most often to a realm and under a path one of the world's entries names."""
    named = [(realm(u)[0], realm(u)[2], realm(u)[1], urlsplit(u).path) for u, _ in world.store]
    # an index's root, and its realm outside the root (where a prefix widened to the host
    # would show); as likely as all the netrc machines' realms together
    at_indexes = [(realm(u)[0], realm(u)[2], realm(u)[1], base) for u in world.indexes
                  for base in (urlsplit(u).path, "/")]
    named += at_indexes
    named += [(s, p, m, "/") for m in world.machines for s, p in ORIGINS]
    if at_indexes and draw(st.integers(0, 2)) == 0:
        named = at_indexes
    if named and draw(st.integers(0, 3)):
        scheme, port, host, base = draw(st.sampled_from(named))
        path = base.rstrip("/") + draw(request_paths)
    else:
        (scheme, port), host, path = draw(origins), draw(hosts), draw(request_paths)
    return {
        "url": origin_url(scheme, port, host, path),
        "scheme": scheme, "host": host, "port": port, "path": path,
        "host_header": draw(st.one_of(st.just(None), hosts)),
        "user": draw(st.one_of(st.just(None), st.just(None), st.sampled_from(USERS))),
        "status": draw(st.sampled_from((200, 200, 401, 403, 404))),
        "retry_status": draw(st.sampled_from((200, 401))),
    }


@contextmanager
def real_resolver(world: World):
    """The real chain (index URL/env > netrc > store > uv-store) over files in a temp dir."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {"HOME": tmp, "CREDPROXY_CREDENTIALS_DIR": os.path.join(tmp, "store"),
               "UV_CREDENTIALS_DIR": os.path.join(tmp, "uv-store"), "UV_NO_HF_TOKEN": "1"}
        n = 0

        def secret(kind: str, what: str) -> str:
            nonlocal n
            n += 1
            password = f"pw{n}-{kind}"
            world.owners[password] = (kind, what)
            return password

        entries = [StoreEntry.basic(service, user, secret("store", service)) for service, user in world.store]
        if entries:
            os.makedirs(env["CREDPROXY_CREDENTIALS_DIR"])
            with open(os.path.join(env["CREDPROXY_CREDENTIALS_DIR"], "credentials.toml"), "w") as f:
                f.write(dumps(entries))
        lines = [f"machine {m} login m{i} password {secret('machine', m)}" for i, m in enumerate(world.machines)]
        if world.default:
            lines.append(f"default login d password {secret('default', '')}")
        with open(os.path.join(tmp, ".netrc"), "w") as f:
            f.write("\n".join(lines) + "\n")
        indexes = world.index_objects()
        for i, index in enumerate(indexes):
            if world.token_commands and world.token_commands[i]:
                # a program whose stdout is the token
                token = secret("token-command", index.root_url)
                indexes[i] = replace(index, username=f"t{i}",
                                     token_command=(sys.executable, "-I", "-S", "-c", f"print({token!r})"))
                continue
            env[f"UV_INDEX_IX{i}_USERNAME"] = f"x{i}"
            env[f"UV_INDEX_IX{i}_PASSWORD"] = secret("index", index.root_url)
        settings = Settings(indexes=indexes, env=env)
        settings.netrc_default, settings.netrc_loopback = world.default_scope, world.loopback_scope
        resolver = Resolver(settings)
        try:
            yield resolver
        finally:
            resolver.close()


def check(world: World, authorization: str | None, url: str) -> None:
    creds = parse_authorization(authorization)
    if creds is None or creds.secret not in world.owners:
        return  # nothing of ours (none, or the client's own username-only header)
    kind, what = world.owners[creds.secret]
    assert world.allowed(creds.secret, url), f"{kind} credential for {what!r} sent to {url}"


def user_header(user: str | None) -> str | None:
    import base64

    return None if user is None else "Basic " + base64.b64encode(f"{user}:".encode()).decode()


# --- through the resolver ---------------------------------------------------------------------


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(), data=st.data())
def test_resolver_sends_credentials_only_under_their_prefix(world, data):
    ops = data.draw(st.lists(requests(world), min_size=1, max_size=8))
    with real_resolver(world) as resolver:
        for op in ops:
            url = op["url"]
            decision = resolver.resolve(url, user_header(op["user"]))
            check(world, decision.header, url)
            if decision.action == "inject" and decision.prefix:
                assert oracle_covers(decision.prefix, url), (decision.prefix, url)
            retry = resolver.challenge(url, decision, op["status"]) if op["status"] >= 400 else None
            if retry is not None and retry.action == "inject":
                check(world, retry.header, url)
                resolver.record(url, retry, op["retry_status"])
            else:
                resolver.record(url, decision, op["status"])
            # the explanation of any URL names no credential outside its prefix either
            shown = resolver.explain(url)
            for d in (shown.decision, shown.on_challenge):
                if d is not None and d.action == "inject":
                    check(world, d.header, url)


# --- through the auth addon -------------------------------------------------------------------


def flow_for(op) -> "tflow.HTTPFlow":
    flow = tflow.tflow()
    flow.request.scheme = op["scheme"]
    flow.request.host = op["host"]
    flow.request.port = op["port"]
    flow.request.path = op["path"]
    flow.request.headers["host"] = op["host_header"] or op["host"]
    if op["user"] is not None:
        flow.request.headers["authorization"] = user_header(op["user"])
    flow.response = None
    return flow


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(), data=st.data())
def test_addon_sends_credentials_only_under_their_prefix(world, data):
    ops = data.draw(st.lists(requests(world), min_size=1, max_size=6))
    sent: list[tuple[str, str | None]] = []
    retry_status = [200]

    async def replay(dup):  # the re-send, recorded instead of going to the network
        sent.append((request_url(dup.request), dup.request.headers.get("authorization")))
        dup.response = tflow.tresp(status_code=retry_status[0], content=b"")

    async def drive(addon, op):
        flow = flow_for(op)
        await addon.requestheaders(flow)
        if flow.response is not None:  # answered by the proxy itself (fail): nothing went out
            return
        sent.append((request_url(flow.request), flow.request.headers.get("authorization")))
        flow.response = tflow.tresp(status_code=op["status"], content=b"x")
        retry_status[0] = op["retry_status"]
        await addon.responseheaders(flow)
        await addon.response(flow)

    async def drive_all(resolver):
        addon = AuthAddon(resolver)
        with taddons.context(addon) as tctx:  # inside the running loop: its log handler uses it
            try:
                for op in ops:
                    await drive(addon, op)
            finally:
                await tctx.master.done()  # uninstalls the log handler bound to this loop

    with real_resolver(world) as resolver, mock.patch.object(auth_addon, "_replay", replay):
        asyncio.run(drive_all(resolver))
    for url, authorization in sent:
        check(world, authorization, url)
