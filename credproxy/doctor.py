"""`credproxy doctor [URL]`: is everything set up, and if not, the exact command that fixes it.

Checks, in the order a user would debug: the proxy listener, the proxy's CA, the shell's
proxy and CA variables, the configuration files, each configured index (which source would
answer, the username, the secret redacted, TLS settings) and, with a URL, one real request
(through the running proxy when there is one, else straight from the resolver's answer).

Everything rendered goes through `redact_text` with every secret the resolver found, so a
secret cannot reach the output even through an exception text.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping
from urllib.parse import urlsplit

from . import hints, paths
from .proxy import envvars
from .credentials.model import MASK, Credentials, redact_text, redact_url

Status = Literal["ok", "problem", "info"]
MARK = {"ok": "✓", "problem": "✗", "info": "-"}

# the variables `credproxy env` sets, plus ALL_PROXY which some clients also honour
PROXY_VARS = envvars.PROXY_VARS + ("ALL_PROXY", "all_proxy")
NO_PROXY_VARS = envvars.NO_PROXY_VARS
CA_VARS = envvars.CA_VARS
ENV_FIX = 'eval "$(credproxy env)"'
TIMEOUT = 5.0


@dataclass
class Check:
    status: Status
    title: str
    details: list[str] = field(default_factory=list)
    fix: str | None = None


@dataclass
class Report:
    sections: list[tuple[str, list[Check]]] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    usernames: list[str] = field(default_factory=list)
    egress: object = None  # the plan check_company_proxy used (with a PAC file: its marks)

    def add(self, title: str, checks: list[Check]) -> None:
        self.sections.append((title, checks))

    @property
    def problems(self) -> list[Check]:
        return [c for _, checks in self.sections for c in checks if c.status == "problem"]

    def render(self) -> str:
        lines: list[str] = []
        for title, checks in self.sections:
            lines.append(title)
            for check in checks:
                lines.append(f"  {MARK[check.status]} {check.title}")
                lines += [f"      {d}" for d in check.details]
                if check.fix:
                    lines.append(f"      fix: {check.fix}")
        count = len(self.problems)
        lines.append("")
        lines.append("No problems found." if not count else f"{count} problem{'s' if count > 1 else ''} found.")
        return redact_text("\n".join(lines) + "\n", self.secrets, self.usernames)


# --- the listener ------------------------------------------------------------------------


def _read_head(sock, limit: int) -> bytes:
    """A response head (through its blank line), reading no more than `limit` bytes and a
    chunk, within the socket's timeout in all (a peer dripping a byte at a time cannot keep
    the loop going: the timeout bounds the whole read, not each recv). socket.timeout when it
    passes."""
    timeout = sock.gettimeout()
    deadline = None if timeout is None else time.monotonic() + timeout
    head = b""
    while b"\r\n\r\n" not in head and len(head) < limit:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no complete response head in time")
            sock.settimeout(left)
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


def probe_listener(host: str, port: int, timeout: float = 2.0) -> tuple[bool, str]:
    """(something answers, what it is). An origin-form request makes a forward proxy answer
    with an error page naming itself (`Server: mitmproxy ...`) without contacting anything."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            # no Host header: the proxy cannot pick a destination, so it contacts nothing
            sock.sendall(b"GET /credproxy-doctor HTTP/1.0\r\n\r\n")
            head = _read_head(sock, 8192)
    except ConnectionRefusedError:
        return False, "connection refused"
    except OSError as e:
        return False, e.strerror or str(e)
    text = head.decode("latin-1")
    if not text.startswith("HTTP/"):
        return True, "something listens there but does not speak HTTP"
    server = ""
    for line in text.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "server":
            server = value.strip()
    if "mitmproxy" in server.lower():
        return True, f"a proxy answers ({server}, credproxy's engine)"
    return True, f"an HTTP server answers ({server or 'no Server header'}) — maybe not credproxy"


def check_limits() -> Check:
    """The request limits credproxy adds by wrapping mitmproxy internals (proxy/limits.py):
    do their parts exist, with the expected shape, in the installed mitmproxy?"""
    from .proxy import limits

    active, inactive, version_note = limits.report()
    version = limits.mitmproxy_version()
    if not inactive and version_note is None:
        return Check("ok", f"request limits active on mitmproxy {version}: " + ", ".join(active))
    text = limits.warning_text(inactive, version_note) or ""
    body, _, fix = text.partition(" Fix: ")
    if not inactive:
        return Check("info", body, fix=fix or None)
    return Check("problem", f"request limits NOT active on mitmproxy {version}: " + ", ".join(inactive),
                 [body], fix=fix or None)


def check_listener(host: str, port: int) -> tuple[Check, bool]:
    shown = f"http://{_url_host(host)}:{port}"
    up, what = probe_listener(host, port)
    if not up:
        return Check("problem", f"no proxy is running on {shown} ({what})",
                     fix=f"start it: credproxy serve --port {port}   (or one command: credproxy run -- CMD)"), False
    if "credproxy's engine" in what:
        return Check("ok", f"proxy listening on {shown}: {what}"), True
    return Check("problem", f"{shown}: {what}",
                 fix=f"stop what listens on port {port}, or choose another: credproxy serve --port PORT"), False


# --- the CA ------------------------------------------------------------------------------


def ca_cert_path(env: Mapping[str, str]) -> Path:
    return paths.ca_dir(env) / "mitmproxy-ca-cert.pem"


def load_certs_der(path: Path) -> list[bytes]:
    """DER of every certificate in a PEM file (empty when unreadable or not PEM)."""
    import warnings

    from cryptography import utils, x509
    from cryptography.hazmat.primitives import serialization

    try:
        data = path.read_bytes()
        with warnings.catch_warnings():
            # a few public roots have non-positive serials; cryptography warns on each parse
            warnings.simplefilter("ignore", getattr(utils, "CryptographyDeprecationWarning", DeprecationWarning))
            certs = x509.load_pem_x509_certificates(data)
    except (OSError, ValueError):
        return []
    return [c.public_bytes(serialization.Encoding.DER) for c in certs]


def fingerprint(der: bytes) -> str:
    import hashlib

    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def check_ca(env: Mapping[str, str]) -> tuple[list[Check], bytes | None]:
    path = ca_cert_path(env)
    if not path.exists():
        return [Check("problem", f"no CA certificate yet at {path}",
                      fix="it is created on first start: credproxy serve (or credproxy ca path)")], None
    ders = load_certs_der(path)
    if not ders:
        return [Check("problem", f"{path} is not a PEM certificate",
                      fix=f"move it away and let credproxy create a new CA: mv {path} {path}.bad && credproxy serve")], None
    checks = [Check("ok", f"CA certificate {path}", [f"SHA-256 {fingerprint(ders[0])}"])]
    bundle = paths.bundle_path(env)
    if not bundle.exists():
        checks.append(Check("info", f"no combined trust bundle at {bundle} yet",
                            ["written by credproxy env / credproxy run / credproxy ca bundle"]))
    elif ders[0] not in load_certs_der(bundle):
        checks.append(Check("problem", f"trust bundle {bundle} does not contain the current CA",
                            fix="rewrite it: credproxy ca bundle"))
    else:
        checks.append(Check("ok", f"trust bundle {bundle} contains the CA"))
    return checks, ders[0]


# --- the shell's variables ---------------------------------------------------------------


def owner_credential(env: Mapping[str, str]):
    """The proxy pair the owner's clients must send (CREDPROXY_PROXYAUTH, else the token file),
    read without creating anything; None when there is none (yet) or it is unusable."""
    from .proxy import token

    try:
        pair, _ = token.configured_pair(None, env)
        return pair if pair is not None else token.read_token(paths.token_file(env))
    except (OSError, token.TokenError):
        return None


def _carries(proxy_url: str, credential) -> bool:
    from urllib.parse import unquote

    if "://" not in proxy_url:
        proxy_url = "http://" + proxy_url
    parts = urlsplit(proxy_url)
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    return credential.matches(f"Basic {_b64(f'{user}:{password}')}")


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode("ascii")


def check_environment(env: Mapping[str, str], host: str, port: int, ca_der: bytes | None,
                      index_hosts: list[str], owner=None) -> list[Check]:
    """`owner`: the proxy pair (token.ProxyCredential) the proxy admits, when known."""
    checks: list[Check] = []
    pointing = []
    for name in PROXY_VARS:
        value = env.get(name)
        if not value:
            continue
        shown = redact_url(value)
        if _points_at(value, host, port):
            pointing.append(name)
            if owner is not None and not _carries(value, owner):
                checks.append(Check("problem", f"{name}={shown} points at credproxy without the current proxy "
                                    "token: the proxy answers 407 (Proxy Authentication Required)", fix=ENV_FIX))
                continue
            checks.append(Check("ok", f"{name}={shown} points at credproxy"))
        else:
            checks.append(Check("problem", f"{name}={shown} does not point at credproxy "
                                f"(http://{_url_host(host)}:{port})", fix=ENV_FIX))
    if not pointing:
        checks.append(Check("problem", "no HTTPS_PROXY/https_proxy points at credproxy: clients go direct",
                            fix=ENV_FIX))
    for name in NO_PROXY_VARS:
        value = env.get(name)
        if not value:
            continue
        bypassed = [h for h in index_hosts if _no_proxy_matches(value, h)]
        if bypassed:
            checks.append(Check("problem", f"{name}={value} bypasses credproxy for {', '.join(bypassed)}",
                                fix=f"remove {', '.join(bypassed)} from {name}, or: {ENV_FIX}"))
    trusted = []
    for name in CA_VARS:
        value = env.get(name)
        if not value:
            continue
        if not Path(value).exists():
            checks.append(Check("problem", f"{name}={value}: file does not exist", fix=ENV_FIX))
        elif ca_der is not None and ca_der in load_certs_der(Path(value)):
            trusted.append(name)
            checks.append(Check("ok", f"{name}={value} trusts credproxy's CA"))
        else:
            checks.append(Check("problem", f"{name}={value} does not contain credproxy's CA: clients reading "
                                "it will reject the proxy's certificates", fix=ENV_FIX))
    if pointing and not trusted:
        checks.append(Check("problem", "proxy variables are set but no CA variable trusts credproxy's CA",
                            fix=ENV_FIX))
    return checks


def _points_at(proxy_url: str, host: str, port: int) -> bool:
    if "://" not in proxy_url:
        proxy_url = "http://" + proxy_url
    try:
        parts = urlsplit(proxy_url)
        got_port = parts.port or 80
    except ValueError:
        return False
    loopback = {"127.0.0.1", "localhost", "::1"}
    got = (parts.hostname or "").lower()
    want = host.strip("[]").lower()
    same_host = got == want or (got in loopback and want in loopback)
    return same_host and got_port == port


def _no_proxy_matches(value: str, host: str) -> bool:
    """As pip/requests, uv and curl read NO_PROXY (hints.no_proxy_match)."""
    return hints.no_proxy_match(f"https://{_url_host(host)}/", value) is not None


def url_problem(url: str) -> str | None:
    """Why `doctor URL` cannot check this URL (the message never quotes it: it may hold a
    password), or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a non-numeric port
    except ValueError:
        return "invalid URL: cannot parse its host and port (percent-encode special characters in the password)"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        if "://" not in url:
            return "invalid URL: expected http(s)://host/path; add https:// in front"
        return f"invalid URL: expected http(s)://host/path, got scheme {parts.scheme[:10]!r}"
    return None


# --- configuration and indexes -----------------------------------------------------------


def check_config(settings) -> list[Check]:
    files = list(getattr(settings, "config_files", []) or [])
    checks = [Check("info", f"read {f}") for f in files] or [Check("info", "no configuration file read")]
    if (loose := hints.netrc_mode_warning(getattr(settings, "env", None) or {})) is not None:
        text, _, command = loose.rpartition(": chmod ")
        checks.append(Check("problem", text, fix="chmod " + command))
    for warning in getattr(settings, "warnings", []) or []:
        checks.append(Check("problem", str(warning), fix="edit the file named above"))
    return checks


def check_native(settings) -> list[Check] | None:
    """uv's native store, when it is on: which keyring it is, and whether it answers (a lookup
    of a name nobody stores; nothing is written). None when the native store is off."""
    if not (getattr(settings, "native_auth", False) or getattr(settings, "keyring_provider", "") == "native"):
        return None
    from .credentials.sources.native import NoSecretService, backend_name, keyring_fix, native_keyring

    try:
        backend = native_keyring()
    except NoSecretService as e:
        problem, _, fix = str(e).partition("; ")
        return [Check("problem", problem, fix=fix)]
    except Exception as e:  # noqa: BLE001 - a broken keyring install
        return [Check("problem", f"no keyring backend ({type(e).__name__})",
                      fix=keyring_fix(e))]
    name = backend_name(backend)
    try:
        backend.get_password("uv:credproxy-doctor.invalid", "credproxy-doctor")
    except Exception as e:  # noqa: BLE001 - locked, no prompter, D-Bus errors
        return [Check("problem", f"uv's native store ({name}) does not answer: {type(e).__name__}", fix=keyring_fix(e))]
    return [Check("ok", f"uv's native store: {name}")]


def check_config_error(error: str) -> Check:
    """A configuration that does not load is one failed check: the loader's message (it names
    the file or variable, the key and what was expected) and what to do with it."""
    lines = error.splitlines() or [error]
    first = lines[0]
    if first.startswith("environment variable"):
        fix = "correct or unset the variable named above, then run `credproxy doctor` again"
    elif first.startswith("command line"):
        fix = "correct the option named above"
    else:
        where = first.split(": ", 1)[0]
        fix = f"edit {where} as the message says, then run `credproxy doctor` again"
    return Check("problem", "the configuration does not load", details=lines, fix=fix)


def describe_tls(settings, url: str) -> list[str]:
    """The TLS settings that apply to the URL's host (credproxy.tlsrules), one line each."""
    from .tlsrules import describe, format_description

    parts = urlsplit(url)
    if parts.scheme != "https":
        return ["TLS: none (plain http)"]
    try:
        text = format_description(describe(settings, parts.hostname or "", parts.port or 443))
    except Exception as e:  # a describe bug must not hide the rest of the report
        return [f"TLS: could not describe ({type(e).__name__})"]
    return [line.strip() for line in text.splitlines()]


def check_roots(settings) -> list[Check]:
    """Which roots verify upstream servers, where they come from and how many (system-certs:
    the OS store per origin; certifi; ca-bundle / SSL_CERT_FILE / SSL_CERT_DIR)."""
    from .tlsrules import count_pem_certs, decide_roots

    try:
        roots = decide_roots(settings)
    except Exception as e:  # a broken store must not hide the rest of the report
        return [Check("problem", f"cannot read the trust roots ({type(e).__name__}: {e})",
                      fix="check the files named by ca-bundle / SSL_CERT_FILE / SSL_CERT_DIR")]
    checks = []
    if roots.kind == "system":
        checks.append(Check("ok", f"upstream roots: the OS trust store, {roots.count} distinct certificate(s)",
                            details=[roots.description]))
        checks += [Check("info", f"{where}: {n}") for where, n in roots.origins]
    elif roots.kind == "certifi":
        import certifi

        n = count_pem_certs(Path(certifi.where()))
        checks.append(Check("ok", f"upstream roots: certifi's Mozilla roots, {n} certificate(s) ({certifi.where()})"))
    elif roots.kind == "custom":
        total = sum(count_pem_certs(Path(f)) for f in roots.files)
        checks.append(Check("ok", f"upstream roots: {roots.description}, {total} certificate(s)"))
        shown = roots.files[:5]
        checks += [Check("info", f"{f}: {count_pem_certs(Path(f))}") for f in shown]
        if len(roots.files) > len(shown):
            checks.append(Check("info", f"... and {len(roots.files) - len(shown)} more file(s)"))
    else:
        checks.append(Check("problem", f"upstream roots: {roots.description}", fix=roots.fix_hint))
    checks += [Check("problem", w, fix=roots.fix_hint) for w in roots.warnings]
    return checks


def check_index(resolver, settings, index, report: Report) -> Check:
    url = index.url
    try:
        explanation = resolver.explain(url)
    except Exception as e:
        return Check("problem", f"{index.display}: the resolver failed ({type(e).__name__}: {e})",
                     fix="run credproxy explain " + redact_url(url) + " for details")
    details = []
    for answer in explanation.answers:
        _remember(report, answer.credentials)
        if answer.skipped:
            continue
        state = f"found {answer.credentials.redacted()}" if answer.credentials is not None else "nothing"
        if answer.found and not answer.preemptive:
            state += " (only after a challenge)"
        details.append(f"{answer.source}: {state}{' — ' + answer.detail if answer.detail else ''}")
    decision = explanation.decision
    on_challenge = getattr(explanation, "on_challenge", None)
    _remember(report, decision.credentials)
    _remember(report, on_challenge.credentials if on_challenge is not None else None)
    details += describe_tls(settings, url)
    title = f"{index.display}"
    if decision.credentials is not None:
        return Check("ok", f"{title}: {decision.source} answers: {_shown(decision.credentials)}", details)
    if decision.action == "leave":
        return Check("info", f"{title}: credentials left to the client ({decision.reason})", details)
    if decision.action == "send" and on_challenge is not None and on_challenge.credentials is not None:
        creds = on_challenge.credentials
        return Check("ok", f"{title}: sent after a challenge, from {on_challenge.source}: {_shown(creds)}", details)
    if getattr(index, "authenticate", "auto") == "never":
        return Check("info", f"{title}: authenticate = never, no credential is sent", details)
    host = urlsplit(url).hostname or url
    fix = (f"store one: credproxy auth login {redact_url(index.root_url)} --username USER --password -"
           + (f"   (or export UV_INDEX_{_env(index.name)}_USERNAME / _PASSWORD)" if index.name else "")
           + f"   (or add 'machine {host}' to ~/.netrc)")
    return Check("problem", f"{title}: no source has a credential ({decision.reason or 'nothing matched'})",
                 details, fix)


def _shown(creds: Credentials) -> str:
    if creds.scheme == "bearer":
        return f"bearer token {MASK}"
    secret = MASK if creds.password is not None else "(none)"
    return f"username {creds.username or '(none)'}, secret {secret}"


def _env(name: str) -> str:
    from .credentials.index import env_name

    return env_name(name)


def _remember(report: Report, creds: Credentials | None) -> None:
    if creds is None:
        return
    if creds.secret:
        report.secrets.append(creds.secret)
    if creds.username:
        report.usernames.append(creds.username)


# --- one real request --------------------------------------------------------------------


def check_url(url: str, settings, resolver, report: Report, proxy_up: bool, ca_path: Path | None) -> list[Check]:
    checks: list[Check] = []
    shown = redact_url(url)
    try:
        explanation = resolver.explain(url)
    except Exception as e:
        return [Check("problem", f"{shown}: the resolver failed ({type(e).__name__}: {e})")]
    decision = explanation.decision
    _remember(report, decision.credentials)
    for answer in explanation.answers:
        _remember(report, answer.credentials)
    on_challenge = getattr(explanation, "on_challenge", None)
    _remember(report, on_challenge.credentials if on_challenge is not None else None)
    what = (f"{decision.source} ({_shown(decision.credentials)})" if decision.credentials
            else f"none ({decision.reason or 'no source matched'})")
    checks.append(Check("info", f"credential sent with the first request: {what}"))
    if decision.credentials is None and on_challenge is not None and on_challenge.credentials is not None:
        checks.append(Check("info", f"after a 401: {on_challenge.source} ({_shown(on_challenge.credentials)})"))
    if decision.action == "fail":
        checks.append(Check("problem", f"credproxy refuses to send the request: {decision.reason}",
                            fix=f"credproxy explain {shown}"))
        return checks
    through_proxy = proxy_up and ca_path is not None
    via = "through the proxy" if through_proxy else "direct (no proxy running)"
    company = None if through_proxy else _company_proxy(settings, resolver, url, report)
    if company is not None:
        via = f"without credproxy, through the company proxy {company[0].display}"
    try:
        if through_proxy:
            owner = owner_credential(settings.env)
            status = _request_via_proxy(url, settings.host, settings.port, ca_path,
                                        {"Proxy-Authorization": owner.header_value()} if owner else {})
        else:
            status = _request_direct(url, settings, resolver, decision, report, company)
    except (OSError, http.client.HTTPException, ssl.SSLError) as e:
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e) or type(e).__name__
        fix = None
        if isinstance(e, ssl.SSLCertVerificationError):
            fix = ("trust the upstream's CA: ca-bundle = \"/path/ca.pem\" in the config "
                   f"(or allow-insecure-host = [\"{urlsplit(url).hostname}\"] for a test server)")
        checks.append(Check("problem", f"GET {shown} {via} failed: {reason}", fix=fix))
        return checks
    if status < 400:
        checks.append(Check("ok", f"GET {shown} {via}: {status}"))
    elif status in (401, 403):
        sent = decision if decision.credentials is not None else on_challenge
        if sent is not None and sent.credentials is not None:
            what, fix = f"the credential from {sent.source}", hints.replace_command(sent, url)
        else:
            what = "the request without credentials"
            fix = "store one: " + hints.login_command(hints.entry_url(decision, url), "USER")
        checks.append(Check("problem", f"GET {shown} {via}: {status} — the upstream rejected {what}", fix=fix))
    else:
        checks.append(Check("problem", f"GET {shown} {via}: {status}"))
    return checks


def _request_via_proxy(url: str, proxy_host: str, proxy_port: int, ca_path: Path,
                       proxy_headers: Mapping[str, str] | None = None) -> int:
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=str(ca_path))
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            proxy_host, proxy_port, timeout=TIMEOUT, context=context)
        conn.set_tunnel(parts.hostname or "", parts.port or 443, headers=dict(proxy_headers or {}))
        target = path
        headers = {}
    else:
        conn = http.client.HTTPConnection(proxy_host, proxy_port, timeout=TIMEOUT)
        target = url
        headers = dict(proxy_headers or {})
    try:
        conn.request("GET", target, headers={"Connection": "close", "User-Agent": "credproxy-doctor", **headers})
        response = conn.getresponse()
        response.read(1 << 20)
        return response.status
    finally:
        conn.close()


def _company_proxy(settings, resolver, url: str, report: Report):
    """(company proxy, its login or None) when the proxy would send `url` through one."""
    from .egress import ProxyURLError, build_egress, proxy_login

    try:
        parts = urlsplit(url)
        scheme = "http" if parts.scheme == "http" else "https"
        egress = report.egress if report.egress is not None else build_egress(settings)
        route = egress.route(scheme, parts.hostname or "", parts.port or (80 if scheme == "http" else 443))
        if route.proxy is None:
            return None
        creds, _source = proxy_login(route.proxy, resolver)
    except (ProxyURLError, ValueError):
        return None
    _remember(report, creds)
    return route.proxy, creds


def _request_direct(url: str, settings, resolver, decision, report: Report, company=None) -> int:
    """As the proxy would: send with the decision, retry once on a challenge."""
    status = _send_direct(url, settings, decision.header, company)
    if status in (401, 403, 404):
        retry = resolver.challenge(url, decision, status)
        if retry is not None and retry.action == "inject":
            _remember(report, retry.credentials)
            status = _send_direct(url, settings, retry.header, company)
            resolver.record(url, retry, status)
            return status
    resolver.record(url, decision, status)
    return status


def _send_direct(url: str, settings, authorization: str | None, company=None) -> int:
    """One GET, straight to the host or, with `company` = (proxy, login), through a CONNECT
    tunnel of the company proxy, as credproxy would send it (plain http too)."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"Connection": "close", "User-Agent": "credproxy-doctor"}
    if authorization:
        headers["Authorization"] = authorization
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    connect_to, tunnel_headers = (host, port), None
    if company is not None:
        proxy, login = company
        if proxy.scheme != "http":  # http.client cannot speak TLS to the proxy itself
            raise OSError(f"doctor cannot probe through an {proxy.scheme}:// proxy; the proxy itself can")
        connect_to = (proxy.host, proxy.port)
        tunnel_headers = {"Proxy-Authorization": login.header_value()} if login is not None else {}
    if parts.scheme == "https":
        cafile = settings.ca_bundle or settings.env.get("SSL_CERT_FILE") or None
        context = ssl.create_default_context(cafile=cafile)
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            *connect_to, timeout=TIMEOUT, context=context)
    else:
        conn = http.client.HTTPConnection(*connect_to, timeout=TIMEOUT)
    if tunnel_headers is not None:
        conn.set_tunnel(host, port, headers=tunnel_headers)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read(1 << 20)
        return response.status
    finally:
        conn.close()


# --- the company proxy ---------------------------------------------------------------------


def probe_connect(proxy, host: str, port: int, authorization: str | None, settings,
                  timeout: float = TIMEOUT) -> tuple[int | None, str, tuple[str, ...]]:
    """One `CONNECT host:port` to the company proxy, then close: (status, reason, the
    Proxy-Authenticate schemes). Raises OSError/ssl.SSLError when the proxy cannot be reached."""
    from .egress import parse_connect_answer

    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: credproxy-doctor\r\n"
    if authorization:
        request += f"Proxy-Authorization: {authorization}\r\n"
    with socket.create_connection((proxy.host, proxy.port), timeout=timeout) as raw:
        sock = raw
        if proxy.scheme == "https":
            cafile = settings.ca_bundle or settings.env.get("SSL_CERT_FILE") or None
            sock = ssl.create_default_context(cafile=cafile).wrap_socket(raw, server_hostname=proxy.host)
        sock.settimeout(timeout)
        sock.sendall((request + "\r\n").encode("latin-1"))
        head = _read_head(sock, 65536)
    return parse_connect_answer(head)


def _pac_entries(egress, settings, scheme: str, host: str, port: int) -> list[Check]:
    """A PAC answer's list for this URL, the marks of the running proxy (status file), and a
    live connect to each proxy entry in the order the proxy tries them, until one connects:
    the ones that do not are marked bad here too, so the route shown is the proxy's."""
    from .egress import connect_reason
    from .status import bad_proxy_marks

    egress.apply_marks(bad_proxy_marks(settings.env))
    lines = egress.pac_lines(scheme, host, port)
    checks = [Check("info", "PAC entries, in order: " + "; ".join(lines))] if len(lines) > 1 else []
    route = egress.route(scheme, host, port)
    tried = set()
    while route.proxy is not None and route.proxy not in tried:
        proxy = route.proxy
        tried.add(proxy)
        try:
            socket.create_connection((proxy.host, proxy.port), timeout=egress.connect_timeout).close()
        except OSError as e:
            why = (f"no connection within {egress.connect_timeout:g} s" if isinstance(e, TimeoutError)
                   else connect_reason(e))
            egress.pac.bad.mark(proxy, why)
            left = [p for p in route.alternatives if p not in tried]
            then = ("credproxy tries the next entry" if left else "no entry is left: clients get a 502 naming the "
                    "proxies tried")
            checks.append(Check("info" if left else "problem", f"cannot connect to the PAC proxy {proxy.display}: "
                                f"{why}; {then}", fix=None if left else
                                "check the proxy addresses in the PAC file, and that the proxies are up"))
            route = egress.route(scheme, host, port)
            continue
        break
    return checks


def check_company_proxy(settings, resolver, url: str | None, report: Report) -> list[Check]:
    """Direct or via which company proxy (credproxy/egress.py, as the proxy decides), and with
    a URL a live probe: does the proxy demand a login, and does it accept credproxy's?"""
    from .egress import (ProxyURLError, Refusal, build_egress, login_label, negotiate_available, proxy_login,
                         refusal_message)

    try:
        egress = build_egress(settings)
    except ProxyURLError as e:
        return [Check("problem", f"upstream proxy: {e}",
                      fix="correct --upstream-proxy or upstream-proxy in the config (http://[user:password@]host:port)")]
    report.egress = egress
    for proxy in egress.proxies:
        _remember(report, proxy.credentials)
    checks = [Check("info", line) for line in egress.summary()] if egress.chaining or egress.disabled else []
    if not egress.chaining and not egress.disabled:
        checks.append(Check("info", "no company proxy: every host is reached directly "
                                    "(HTTPS_PROXY & co unset, no --upstream-proxy or upstream-proxy)"))
    checks += [Check("info", note) for note in egress.notes]
    if not url:
        return checks
    parts = urlsplit(url)
    scheme = "http" if parts.scheme == "http" else "https"
    host, port = parts.hostname or "", parts.port or (80 if scheme == "http" else 443)
    if egress.pac is not None:
        checks += _pac_entries(egress, settings, scheme, host, port)
    route = egress.route(scheme, host, port)
    checks.append(Check("info", f"{redact_url(url)}: {route.describe()}"))
    proxy = route.proxy
    if proxy is None:
        return checks
    origin = egress.https_origin if proxy == egress.https else egress.http_origin
    try:
        creds, source = proxy_login(proxy, resolver)
    except Exception as e:  # the type only: a source's text could quote a secret
        creds, source = None, None
        checks.append(Check("problem", f"looking up the login for {proxy.display} failed ({type(e).__name__})"))
    _remember(report, creds)
    target = f"{host}:{port}"
    try:
        status, reason, schemes = probe_connect(proxy, host, port, None, settings)
        if status == 407 and schemes and not any(s.lower() == "basic" for s in schemes):
            offered = ", ".join(schemes)
            if negotiate_available():
                checks.append(Check("info", f"the company proxy {proxy.display} demands a login ({status}, {offered}): "
                                            "credproxy logs in with Negotiate/NTLM (the negotiate extra); doctor "
                                            "does not run that exchange — `credproxy serve -v` logs a refusal"))
                return checks
            message = refusal_message(Refusal(proxy, target, status, reason, schemes, None), origin)
            checks.append(Check("problem", f"the company proxy {proxy.display} demands {offered}, which credproxy "
                                           "speaks only with its negotiate extra", [message.split(" Fix: ", 1)[0]],
                                fix=message.split(" Fix: ", 1)[1] if " Fix: " in message else None))
            return checks
        if status == 407 and creds is not None:
            checks.append(Check("info", f"the company proxy {proxy.display} demands a login "
                                        f"({status}, {', '.join(schemes) or 'no scheme named'})"))
            status, reason, schemes = probe_connect(proxy, host, port, creds.header_value(), settings)
            sent = source
        else:
            sent = None
    except (OSError, ssl.SSLError) as e:
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        message = refusal_message(Refusal(proxy, target, None, reason), origin)
        checks.append(Check("problem", f"cannot reach the company proxy {proxy.display}: {reason}",
                            [message], fix=f"check the proxy address (from {origin})"))
        return checks
    if status is not None and 200 <= status < 300:
        if sent is not None:
            checks.append(Check("ok", f"the company proxy accepted credproxy's login ({creds.redacted()} from "
                                      f"{login_label(sent)}) and opened a tunnel to {target}"))
        else:
            checks.append(Check("ok", f"the company proxy {proxy.display} opens a tunnel to {target} without a login"))
        return checks
    if sent is not None and status != 407:
        checks.append(Check("ok", f"the company proxy accepted credproxy's login ({creds.redacted()} from "
                                  f"{login_label(sent)})"))
    message = refusal_message(Refusal(proxy, target, status, reason, schemes, sent), origin)
    fix = message.split(" Fix: ", 1)[1] if " Fix: " in message else None
    if status == 407 and sent is not None:
        title = (f"the company proxy refused credproxy's login ({creds.redacted()} from {login_label(sent)}): "
                 f"{status} {reason}")
    elif status == 407:
        title = (f"the company proxy {proxy.display} demands a login ({status}, "
                 f"{', '.join(schemes) or 'no scheme named'}) and credproxy has none for it")
    else:
        title = f"the company proxy {proxy.display} refused a tunnel to {target}: {status} {reason}"
    checks.append(Check("problem", title, [message.split(" Fix: ", 1)[0]], fix=fix))
    return checks


# --- all of it ---------------------------------------------------------------------------


def run_doctor(settings, resolver, url: str | None = None, env: Mapping[str, str] | None = None,
               config_error: str | None = None) -> Report:
    """Every check; `env` is the shell's environment (the proxy variables, the data dir).
    With `config_error` (the configuration did not load; `settings` are the defaults) the
    proxy, CA and shell checks still run; indexes and the URL are not checked."""
    env = settings.env if env is None else env
    report = Report()
    listener, proxy_up = check_listener(settings.host, settings.port)
    report.add("Proxy", [listener, check_limits()])
    ca_checks, ca_der = check_ca(env)
    report.add("CA", ca_checks)
    index_hosts = sorted({(urlsplit(i.url).hostname or "").lower() for i in settings.indexes} - {""})
    owner = owner_credential(env)
    if owner is not None:
        report.secrets.append(owner.token)  # never shown, even inside an error text
    report.add("Shell environment", check_environment(env, settings.host, settings.port, ca_der, index_hosts, owner))
    if config_error is not None:
        report.add("Configuration", [check_config_error(config_error)])
        report.add("Indexes", [Check("info", "not checked: the configuration does not load")])
        if url:
            report.add(f"Request {redact_url(url)}", [Check("info", "not sent: the configuration does not load")])
        return report
    report.add("Configuration", check_config(settings))
    report.add("Upstream trust", check_roots(settings))
    if (native := check_native(settings)) is not None:
        report.add("Native store", native)
    report.add("Company proxy", check_company_proxy(settings, resolver, url, report))
    if settings.indexes:
        report.add("Indexes", [check_index(resolver, settings, i, report) for i in settings.indexes])
    else:
        report.add("Indexes", [Check("info", "no index configured (only netrc, store, keyring and HF token apply)")])
    if url:
        request_checks = check_url(url, settings, resolver, report, proxy_up, ca_cert_path(env) if ca_der else None)
        if (bypass := hints.no_proxy_line(url, env)) is not None:
            request_checks.insert(0, Check("problem", bypass, fix=ENV_FIX + "   (it keeps registries out of NO_PROXY)"))
        report.add(f"Request {redact_url(url)}", request_checks)
    return report


def _url_host(host: str) -> str:
    host = host.strip("[]")
    return f"[{host}]" if ":" in host else host
