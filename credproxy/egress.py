"""Where a request leaves to: straight to the host, or through the company proxy, and why.

Pure data and functions, no mitmproxy: the proxy's addon (addons/upstream_proxy.py),
`credproxy explain` and `credproxy doctor` read the same `Egress`, so what they say is what the
proxy does.

Which proxy, highest first:
1. `--no-upstream-proxy` (Settings.upstream_proxy == "none", also `upstream-proxy = "none"`):
   everything direct.
2. `--upstream-proxy URL`, else the `upstream-proxy` config key: one proxy for http and https;
   or, for a `pac+https://`, `pac+http://`, `pac+file://` value, the proxy a PAC file names
   per host (credproxy/pac.py: its entries in order, a proxy that cannot be connected to
   skipped for the next; loopback and NO_PROXY still first).
3. The environment `serve` started in, as curl and requests read it: for https (and every
   CONNECT tunnel) `https_proxy`, `HTTPS_PROXY`, then `all_proxy`, `ALL_PROXY`; for plain http
   `http_proxy`, `HTTP_PROXY`, then `all_proxy`, `ALL_PROXY` (lower case first). A value without
   a scheme means `http://`; the port defaults to the scheme's (80/443), as in requests.
   A value that points at credproxy itself (a loopback or the listen address, on the port it
   listens on or the configured one; or a loopback value in a shell `credproxy env` marked
   with CREDPROXY_ENV_ACTIVE=1) is what `eval "$(credproxy env)"` left there: it is ignored
   with a note, and `CREDPROXY_PREVIOUS_<VAR>` (the value `credproxy env` replaced) takes its
   place when set.

`NO_PROXY`/`no_proxy` (and `CREDPROXY_PREVIOUS_NO_PROXY`, joined) apply to every proxy except
with `--no-upstream-proxy`, with curl's and requests' rules: comma (or space) separated; `*`
alone means every host; `example.com` and `.example.com` (and `*.example.com`) match the
domain and its subdomains, never `notexample.com`; `host:port` only that port; IP literals
(`10.0.0.5`, `::1`, `[::1]:8080`) exactly; CIDR blocks (`10.0.0.0/8`, `fd00::/8`) for IP
literal hosts, as requests does. Loopback hosts are always reached directly: a company proxy
cannot reach this machine's loopback.

Only `http://` and `https://` proxies can be chained (mitmproxy's upstream client); a `socks`
value is ignored with a note.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable, Mapping
from urllib.parse import urlsplit

from .credentials.model import MASK, Credentials, split_userinfo

PREVIOUS_PREFIX = "CREDPROXY_PREVIOUS_"
ENV_ACTIVE = "CREDPROXY_ENV_ACTIVE"  # set by `credproxy env` (proxy/envvars.py ACTIVE)
ENV_SET_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")  # the ones it sets
HTTPS_VARS = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
HTTP_VARS = ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")
NO_PROXY_VARS = ("no_proxy", "NO_PROXY")
NONE_VALUES = ("none", "direct")
DEFAULT_PORTS = {"http": 80, "https": 443}
DEFAULT_LISTEN_PORT = 8899  # credproxy's own default (proxy/master.py DEFAULT_PORT)


class ProxyURLError(ValueError):
    """A proxy value that cannot be used; the text never quotes a password."""


# --- one proxy ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyURL:
    """A company proxy: `scheme://[user[:password]@]host[:port]`. `credentials` are the
    percent-decoded userinfo (not in repr); `display` is safe to print."""

    scheme: str
    host: str
    port: int
    credentials: Credentials | None = field(default=None, repr=False, compare=False)

    @classmethod
    def parse(cls, value: str) -> "ProxyURL":
        value = value.strip()
        if "://" not in value:
            value = "http://" + value
        scheme = value.split("://", 1)[0].lower()
        if scheme not in DEFAULT_PORTS:
            raise ProxyURLError(f"{scheme}:// proxies are not supported (credproxy chains to http:// and https:// "
                                "proxies; for SOCKS, use a local HTTP-to-SOCKS bridge)")
        try:
            clean, creds = split_userinfo(value)
            parts = urlsplit(clean)
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError:
            raise ProxyURLError("not a valid proxy URL (expected http://[user:password@]host:port; "
                                "percent-encode special characters in the password)") from None
        if not parts.hostname:
            raise ProxyURLError("not a valid proxy URL: no host (expected http://[user:password@]host:port)")
        return cls(scheme, parts.hostname.lower(), port, creds)

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """Without userinfo: the realm the chain's sources are asked about."""
        return f"{self.scheme}://{self.netloc}/"

    @property
    def display(self) -> str:
        """`http://alice:****@proxy:3128` — never the password, nor a username that is the
        secret (`http://TOKEN@proxy`, a token-shaped name: `****@`)."""
        user = f"{self.credentials.redacted()}@" if self.credentials is not None else ""
        return f"{self.scheme}://{user}{self.netloc}"

    def __str__(self) -> str:
        return self.display


# --- NO_PROXY ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    text: str
    kind: str  # "all" | "domain" | "ip" | "net"
    value: object = None
    port: int | None = None


def _host_key(host: str) -> str:
    return host.strip().strip("[]").lower().rstrip(".")


def _ip(host: str):
    try:
        return ipaddress.ip_address(_host_key(host).split("%", 1)[0])
    except ValueError:
        return None


def _parse_entry(text: str) -> _Entry | None:
    item = text.strip().lower()
    if not item:
        return None
    if item == "*":
        return _Entry(text, "all")
    if "/" in item:
        try:
            return _Entry(text, "net", ipaddress.ip_network(item.strip("[]"), strict=False))
        except ValueError:
            return None
    port = None
    host = item
    if host.startswith("["):  # [v6] or [v6]:port
        end = host.find("]")
        if end < 0:
            return None
        rest = host[end + 1:]
        host = host[1:end]
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        elif rest:
            return None
    elif host.count(":") == 1:  # host:port (a bare IPv6 literal has several colons)
        host, _, p = host.partition(":")
        if not p.isdigit():
            return None
        port = int(p)
    ip = _ip(host)
    if ip is not None:
        return _Entry(text, "ip", ip, port)
    if host.startswith("*."):
        host = host[2:]
    host = host.lstrip(".").rstrip(".")
    if not host:
        return None
    return _Entry(text, "domain", host, port)


@dataclass(frozen=True)
class NoProxy:
    """A parsed NO_PROXY list. `match(host, port)` returns the entry that matches, or None."""

    entries: tuple[_Entry, ...] = ()

    @classmethod
    def parse(cls, *values: str | None) -> "NoProxy":
        out: list[_Entry] = []
        for value in values:
            for part in (value or "").replace(",", " ").split():
                entry = _parse_entry(part)
                if entry is not None and entry not in out:
                    out.append(entry)
        return cls(tuple(out))

    def match(self, host: str, port: int | None) -> str | None:
        key = _host_key(host)
        ip = _ip(key)
        for e in self.entries:
            if e.port is not None and e.port != port:
                continue
            if e.kind == "all":
                return e.text
            if e.kind == "net" and ip is not None and ip.version == e.value.version and ip in e.value:
                return e.text
            if e.kind == "ip" and ip is not None and ip == e.value:
                return e.text
            if e.kind == "domain" and ip is None and (key == e.value or key.endswith("." + e.value)):
                return e.text
        return None

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __str__(self) -> str:
        return ",".join(e.text for e in self.entries)


def is_loopback(host: str) -> bool:
    key = _host_key(host)
    if key == "localhost" or key.endswith(".localhost"):
        return True
    ip = _ip(key)
    return ip is not None and ip.is_loopback


# --- the plan -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """`proxy` None = direct. `reason` says why, naming the variable, flag or NO_PROXY entry.
    A PAC answer's list: `alternatives` are the entries after `proxy`, in the order they are
    tried when it cannot be connected to (None = DIRECT); `unreachable` is set when every proxy
    was tried and none could be connected to, with no DIRECT left: (proxy, why) each."""

    proxy: ProxyURL | None
    reason: str
    alternatives: tuple[ProxyURL | None, ...] = ()
    unreachable: tuple[tuple[ProxyURL, str], ...] = ()

    @property
    def direct(self) -> bool:
        return self.proxy is None

    def describe(self) -> str:
        if self.unreachable:
            return f"no way out ({self.reason})"
        if self.proxy is None:
            return f"direct ({self.reason})"
        return f"via {self.proxy.display} ({self.reason})"

    def unreachable_message(self, target: str) -> str:
        """For the client's 502 and the log: the proxies tried, why each failed, the fix."""
        tried = "; ".join(f"{p.display} ({why})" for p, why in self.unreachable)
        return (f"credproxy could not connect to any company proxy for {target}: tried {tried}. The PAC answer "
                f"has no DIRECT entry, so credproxy does not go direct ({self.reason}). Fix: check the proxy "
                "addresses and that they are up, or run: credproxy doctor https://" + target + "/")


@dataclass
class Egress:
    """The proxies for https (and CONNECT tunnels) and for plain http, NO_PROXY, and notes
    (values ignored, and why) for the start-up log, explain and doctor."""

    https: ProxyURL | None = None
    https_origin: str = ""
    http: ProxyURL | None = None
    http_origin: str = ""
    no_proxy: NoProxy = field(default_factory=NoProxy)
    no_proxy_origin: str = ""
    disabled: str | None = None  # why everything goes direct (--no-upstream-proxy)
    notes: list[str] = field(default_factory=list)
    pac: object = None  # a pac.PacRouter: the proxy is chosen per host by a PAC file
    pac_origin: str = ""
    pac_proxies: list[ProxyURL] = field(default_factory=list)  # the proxies the PAC file named so far
    # seconds to connect to a PAC file's proxy before the next entry is tried
    # (config: upstream-proxy-connect-timeout)
    connect_timeout: float = 5.0

    @property
    def proxies(self) -> list[ProxyURL]:
        out = []
        for p in (self.https, self.http, *self.pac_proxies):
            if p is not None and p not in out:
                out.append(p)
        return out

    @property
    def chaining(self) -> bool:
        """Some host may go through a proxy (a fixed one, or one a PAC file names)."""
        return bool(self.proxies) or self.pac is not None

    def pac_entries(self, scheme: str, host: str, port: int | None) -> tuple[list[ProxyURL | None], str]:
        """The PAC answer for this host as a list of proxies in the answer's order (None =
        DIRECT; entries that do not parse are left out) and what the script said. Loopback,
        NO_PROXY and a failed script are not asked here: see _pac_route."""
        from .pac import entries

        answer = self.pac.result(scheme, host, port)
        said = f"PAC file {self.pac.display}, rule result {answer!r}"
        out: list[ProxyURL | None] = []
        for kind, where in entries(answer)[0]:
            if kind == "DIRECT":
                out.append(None)
                continue
            try:
                proxy = ProxyURL.parse(("https://" if kind == "HTTPS" else "http://") + where)
            except ProxyURLError:
                continue
            if proxy not in self.pac_proxies:
                self.pac_proxies.append(proxy)
            out.append(proxy)
        return out or [None], said

    def _pac_route(self, scheme: str, host: str, port: int | None) -> Route:
        if is_loopback(host):
            return Route(None, "loopback hosts are always reached directly")
        entry = self.no_proxy.match(host, port)
        if entry is not None:
            return Route(None, f"{self.no_proxy_origin or 'NO_PROXY'} entry {entry!r} matches")
        listed, said = self.pac_entries(scheme, host, port)
        failed = self.pac.failure(host)
        if failed is not None:
            return Route(None, f"PAC file {self.pac.display} failed ({failed}); going DIRECT")
        # as browsers: proxies marked bad (could not be connected to lately) go to the end,
        # tried again only when nothing else is left; DIRECT is never marked
        bad = [p for p in listed if p is not None and self.pac.bad.get(p) is not None]
        order = [p for p in listed if p not in bad] + bad
        skipped = "".join(f"; skipped {p.display} ({self.pac.bad.describe(p)})" for p in bad if p is not order[0])
        first, rest = order[0], tuple(order[1:])
        if first is None:
            why = f"PAC said DIRECT: {said}" if len(listed) == 1 else f"PAC entry DIRECT: {said}"
            return Route(None, why + skipped)
        if first in bad:
            skipped = f"; every proxy is marked bad, trying them again ({self.pac.bad.describe(first)})" + skipped
        return Route(first, said + skipped, alternatives=rest)

    def apply_marks(self, marks: Mapping[str, Mapping]) -> None:
        """Marks a running proxy wrote to its status file (status.bad_proxy_marks): explain
        and doctor then choose as that proxy does."""
        if self.pac is None:
            return
        for shown, mark in marks.items():
            try:
                self.pac.bad.mark(ProxyURL.parse(shown), str(mark["why"]), until=float(mark["until"]))
            except (ProxyURLError, KeyError, TypeError, ValueError):
                continue

    def pac_lines(self, scheme: str, host: str, port: int | None) -> list[str]:
        """The PAC answer's entries for this host, numbered, with their marks (explain, doctor)."""
        if self.pac is None or self.disabled is not None or is_loopback(host) or self.no_proxy.match(host, port):
            return []
        listed, _ = self.pac_entries(scheme, host, port)
        out = []
        for i, proxy in enumerate(listed, 1):
            mark = self.pac.bad.describe(proxy) if proxy is not None else None
            shown = "DIRECT" if proxy is None else proxy.display
            out.append(f"{i}. {shown}" + (f" ({mark})" if mark else ""))
        return out

    def route(self, scheme: str, host: str, port: int | None) -> Route:
        """`scheme` is the request's: "https" for CONNECT tunnels and https URLs, "http" for
        plain-http requests."""
        if self.disabled is not None:
            return Route(None, self.disabled)
        if self.pac is not None:
            return self._pac_route(scheme, host, port)
        if scheme == "http":
            proxy, origin, names = self.http, self.http_origin, "http_proxy, HTTP_PROXY, all_proxy, ALL_PROXY"
        else:
            proxy, origin, names = self.https, self.https_origin, "https_proxy, HTTPS_PROXY, all_proxy, ALL_PROXY"
        if proxy is None:
            return Route(None, f"no proxy configured for {scheme} (none of {names}, --upstream-proxy, "
                               "upstream-proxy in the config)")
        if is_loopback(host):
            return Route(None, "loopback hosts are always reached directly")
        entry = self.no_proxy.match(host, port)
        if entry is not None:
            return Route(None, f"{self.no_proxy_origin or 'NO_PROXY'} entry {entry!r} matches")
        return Route(proxy, f"from {origin}")

    def summary(self) -> list[str]:
        """One line per fact, for the start-up log and doctor. Never a password."""
        if self.disabled is not None:
            return [f"upstream proxy: none, every host is reached directly ({self.disabled})"]
        if self.pac is not None:
            lines = [f"upstream proxy: chosen per host by the PAC file {self.pac.display} (from {self.pac_origin})"]
            if self.no_proxy:
                lines.append(f"direct for {self.no_proxy_origin}: {self.no_proxy}")
            return lines
        lines = []
        if self.https is not None and self.https == self.http and self.https_origin == self.http_origin:
            lines.append(f"upstream proxy: {self.https.display} for http and https (from {self.https_origin})")
        else:
            for scheme, proxy, origin in (("https", self.https, self.https_origin), ("http", self.http, self.http_origin)):
                if proxy is not None:
                    lines.append(f"upstream proxy for {scheme}: {proxy.display} (from {origin})")
                else:
                    lines.append(f"upstream proxy for {scheme}: none (direct)")
        if self.proxies and self.no_proxy:
            lines.append(f"direct for {self.no_proxy_origin}: {self.no_proxy}")
        return lines


def connect_reason(e: OSError) -> str:
    """Why a connect failed, in the OS's words ("Connection refused"), without the address
    tuple asyncio adds."""
    if e.errno:
        import os

        return os.strerror(e.errno)
    return e.strerror or str(e) or type(e).__name__


def _points_at_us(proxy: ProxyURL, listen: Iterable[tuple[str, int]]) -> bool:
    for host, port in listen:
        if not port or proxy.port != port:
            continue
        if is_loopback(proxy.host) or _host_key(proxy.host) == _host_key(host) or _host_key(host) in ("0.0.0.0", "::"):
            return True
    return False


def _safe(value: str) -> str:
    """A proxy value for a note: userinfo masked even when it does not parse."""
    try:
        return ProxyURL.parse(value).display
    except ProxyURLError:
        head, sep, tail = value.rpartition("@")
        if sep:
            scheme = value.split("://", 1)[0] + "://" if "://" in head else ""
            return f"{scheme}{MASK}@{tail}"
        return value


def _from_env(env: Mapping[str, str], names: tuple[str, ...], listen, notes: list[str],
              seen: set[str]) -> tuple[ProxyURL | None, str]:
    """The first usable proxy variable in `names`; a value that points at us is replaced by
    CREDPROXY_PREVIOUS_<NAME>."""
    def note_once(name: str, text: str) -> None:  # a variable is explained once, however often asked
        if name not in seen:
            notes.append(text)
            seen.add(name)

    for name in names:
        value = env.get(name)
        origin = name
        if not value:
            continue
        try:
            proxy = ProxyURL.parse(value)
        except ProxyURLError as e:
            note_once(name, f"ignored {name}={_safe(value)}: {e}")
            continue
        # `credproxy env` marks the shell whose proxy variables it set (CREDPROXY_ENV_ACTIVE)
        set_by_env = (env.get(ENV_ACTIVE) == "1" and name in ENV_SET_VARS and is_loopback(proxy.host))
        if _points_at_us(proxy, listen) or set_by_env:
            previous_name = PREVIOUS_PREFIX + name
            previous = env.get(previous_name)
            note = f"ignored {name}={proxy.display}: it points at credproxy itself"
            if not previous:
                if not set_by_env:  # `credproxy env` set it where the user had none: nothing to say
                    note_once(name, note + (f" (no {previous_name} remembers an earlier value)"))
                continue
            try:
                proxy = ProxyURL.parse(previous)
            except ProxyURLError as e:
                note_once(name, f"{note}; ignored {previous_name}={_safe(previous)}: {e}")
                continue
            if _points_at_us(proxy, listen):
                note_once(name, f"{note}; {previous_name} points at credproxy too")
                continue
            note_once(name, f"{note}; using {previous_name}={proxy.display}, the value `credproxy env` replaced")
            origin = f"{previous_name} ({name} points at credproxy itself)"
        return proxy, origin
    return None, ""


def build_egress(settings, listen: Iterable[tuple[str, int]] | None = None) -> Egress:
    """The egress plan from Settings (`upstream_proxy`, `upstream_proxy_origin`, `env`, `host`,
    `port`). `listen` are the (host, port) pairs the proxy listens on; the configured
    host:port always counts, so a `credproxy run` on a free port still recognises the
    `credproxy serve` address that `credproxy env` exports."""
    env: Mapping[str, str] = getattr(settings, "env", {}) or {}
    pairs = list(listen or [])
    # `credproxy env` exports the configured port, 8899 when none (--port 0 is not exported)
    pairs.append((str(getattr(settings, "host", "127.0.0.1") or "127.0.0.1"),
                  int(getattr(settings, "port", 0) or DEFAULT_LISTEN_PORT)))
    egress = Egress(connect_timeout=float(getattr(settings, "upstream_proxy_connect_timeout", 5.0) or 5.0))
    configured = getattr(settings, "upstream_proxy", None)
    origin = getattr(settings, "upstream_proxy_origin", None) or "the configuration"
    if configured is not None and configured.strip().lower() in NONE_VALUES:
        egress.disabled = origin
        return egress
    no_proxy_values = []
    names = []
    for name in NO_PROXY_VARS + tuple(PREVIOUS_PREFIX + n for n in NO_PROXY_VARS):
        if env.get(name):
            no_proxy_values.append(env[name])
            names.append(name)
    egress.no_proxy = NoProxy.parse(*no_proxy_values)
    egress.no_proxy_origin = "+".join(names) if names else "NO_PROXY"
    if configured and configured.strip().lower().startswith("pac+"):
        from .pac import PacError, PacRouter

        try:
            egress.pac = PacRouter.from_value(configured)
        except PacError as e:
            raise ProxyURLError(f"{origin}: {e}") from None
        egress.pac_origin = origin
        return egress
    if configured:
        try:
            proxy = ProxyURL.parse(configured)
        except ProxyURLError as e:
            raise ProxyURLError(f"{origin}: {e}") from None
        egress.https = egress.http = proxy
        egress.https_origin = egress.http_origin = origin
        return egress
    seen: set[str] = set()
    egress.https, egress.https_origin = _from_env(env, HTTPS_VARS, pairs, egress.notes, seen)
    egress.http, egress.http_origin = _from_env(env, HTTP_VARS, pairs, egress.notes, seen)
    return egress


# --- what the company proxy answered ------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """The company proxy would not open a tunnel (status None: it could not be reached)."""

    proxy: ProxyURL
    target: str
    status: int | None
    reason: str
    schemes: tuple[str, ...] = ()  # Proxy-Authenticate schemes it offered
    sent: str | None = None  # where the credential we sent came from, or None


def refusal_message(r: Refusal, origin: str = "") -> str:
    """One paragraph: what failed, that it is the company proxy (not the registry), the fix."""
    where = f" (from {origin})" if origin else ""
    shown = r.proxy.display
    login_fix = (f"put the login in the proxy URL (http://USER:PASSWORD@{r.proxy.netloc}), or store it: "
                 f"credproxy auth login https://{r.proxy.netloc} --username USER --password -   "
                 f"(or add 'machine {r.proxy.host} login USER password ...' to ~/.netrc)")
    if r.status is None:
        return (f"credproxy cannot reach the company proxy {shown}{where} to open a tunnel to {r.target}: "
                f"{r.reason}. Fix: check the proxy address, or run: credproxy doctor https://{r.target}/")
    head = (f"the company proxy {shown}{where} refused to open a tunnel to {r.target}: {r.status} {r.reason}. "
            f"This is the proxy's answer, not {r.target}'s.")
    if r.status == 407:
        offered = ", ".join(r.schemes) or "no scheme named"
        source, _, used = (r.sent or "").partition(" via ")
        source = source or None
        used = used or "Basic"
        if r.schemes and not any(s.lower() == "basic" for s in r.schemes) and used == "Basic":
            if not negotiate_available():
                return (f"{head} It asks for {offered}; credproxy speaks Negotiate and NTLM with its "
                        "`negotiate` extra, which is not installed. Fix: pip install 'credproxy[negotiate]' "
                        "(pyspnego), or run a helper (cntlm, px) and chain to it with "
                        "--upstream-proxy http://127.0.0.1:PORT (docs/company-proxy.md).")
            return (f"{head} It asks for {offered} and credproxy could not start it. Fix: {login_fix}; "
                    "or, for your own Kerberos login, run kinit first.")
        if source is None:
            return f"{head} It demands a login ({offered}) and credproxy has none for it. Fix: {login_fix}."
        fix = {
            "url": "correct the password in the proxy URL" + where,
            "netrc": f"correct the 'machine {r.proxy.host}' entry in ~/.netrc",
            "the current user": "log in again (kinit), or give credproxy a login: " + login_fix,
        }.get(source, f"replace the {source} entry: credproxy auth login https://{r.proxy.netloc} "
                      "--username USER --password -")
        return f"{head} It rejected the {used} login credproxy sent (from {login_label(source)}). Fix: {fix}."
    host = r.target.rsplit(":", 1)[0]
    if r.status in (502, 503, 504):
        return (f"{head} The proxy could not reach {r.target}. Fix: check the host and port; if {host} is "
                "an internal host the proxy cannot reach, add it to NO_PROXY.")
    return (f"{head} Its policy does not allow this tunnel. Fix: ask the proxy's administrators, or, if "
            f"{host} is reachable without the proxy, add it to NO_PROXY.")


def parse_connect_answer(raw: bytes) -> tuple[int | None, str, tuple[str, ...]]:
    """Status, reason and Proxy-Authenticate schemes of the proxy's CONNECT answer."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1", "replace").split("\r\n")
    parts = head[0].split(" ", 2) if head else []
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        return None, "unreadable answer", ()
    reason = parts[2].strip() if len(parts) > 2 else ""
    schemes = []
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "proxy-authenticate" and value.strip():
            scheme = value.strip().split(" ", 1)[0].rstrip(",")
            if scheme and scheme not in schemes:
                schemes.append(scheme)
    return status, reason, tuple(schemes)


def negotiate_available() -> bool:
    """Whether the `negotiate` extra (pyspnego) is installed."""
    import importlib.util

    return importlib.util.find_spec("spnego") is not None


def proxy_login(proxy: ProxyURL, resolver) -> tuple[Credentials | None, str | None]:
    """The Basic login credproxy gives `proxy` (what the addon sends): the URL's userinfo,
    else the chain's entry for the proxy's host (Resolver.proxy_credentials). The source is
    "url", a source label, or None. For explain and doctor (the addon asks asynchronously)."""
    creds, source, _why = proxy_login_explained(proxy, resolver)
    return creds, source


def proxy_login_explained(proxy: ProxyURL, resolver) -> tuple[Credentials | None, str | None, str | None]:
    """proxy_login, and when there is no login, the resolver's reason (explain prints it).
    ValueError when the proxy URL cannot be looked up."""
    if proxy.credentials is not None and proxy.credentials.is_complete:
        return proxy.credentials, "url", None
    if resolver is None:
        return None, None, None
    username = proxy.credentials.username if proxy.credentials is not None else None
    decision = resolver.proxy_credentials(proxy.url, username)
    if decision.action == "inject" and decision.credentials is not None:
        return decision.credentials, decision.source, None
    return None, None, decision.reason


def login_label(source: str | None) -> str:
    return "the proxy URL" if source == "url" else (source or "nowhere")
