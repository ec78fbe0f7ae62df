"""Credential values, realms, URL path prefixes and redaction.

Pure data and functions: no I/O, no mitmproxy. Every object here keeps its secret out of
str()/repr(), so a credential that reaches a log line or an exception shows as `****`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Iterable
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

MASK = "****"
DEFAULT_PORTS = {"http": 80, "https": 443}


# --- credentials -------------------------------------------------------------------------

# Usernames that are tokens: GitHub (`TOKEN:x-oauth-basic`), GitLab, npm, PyPI, Hugging Face, AWS
# access keys, JFrog API keys and reference tokens, JWTs. Such a username is the secret.
_TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "gloas-", "gldt-", "glrt-",
                   "npm_", "pypi-", "hf_", "AKIA", "ASIA", "AKCp", "cmVmdGtu", "eyJ", "xox")
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_\-+/=.~]{32,}")


def looks_like_token(value: str) -> bool:
    """A username a message must not show: a known token prefix, or 32+ characters of a token's
    alphabet with letters and digits (what no person picks as a login name)."""
    if value.startswith(_TOKEN_PREFIXES):
        return True
    return bool(_TOKEN_SHAPE.fullmatch(value)) and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def shown_name(username: str | None) -> str | None:
    """A username named in a message about choosing an entry (`alice`, `aws`): `****` when it is
    token-shaped (a client's `TOKEN:` or `TOKEN@host`)."""
    if username is None:
        return None
    return MASK if looks_like_token(username) else username


def display_username(username: str | None, password: str | None) -> str | None:
    """The username as a message may show it: `****` when it may be the secret (no password,
    as uv masks `TOKEN@host`; or token-shaped, as GitHub's `TOKEN:x-oauth-basic`), None when
    there is none."""
    if not username:
        return None
    if password is None or looks_like_token(username):
        return MASK
    return username



@dataclass(frozen=True)
class Credentials:
    """Basic (username and password both optional) or Bearer (token).

    A Basic credential is *complete* iff it has a password (an empty password counts);
    a Bearer credential iff its token is non-empty. An empty username is no username.
    """

    scheme: str  # "basic" | "bearer"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    @classmethod
    def basic(cls, username: str | None, password: str | None = None) -> "Credentials":
        return cls("basic", username or None, password, None)

    @classmethod
    def bearer(cls, token: str) -> "Credentials":
        return cls("bearer", None, None, token)

    @property
    def is_complete(self) -> bool:
        if self.scheme == "bearer":
            return bool(self.token)
        return self.password is not None

    @property
    def is_empty(self) -> bool:
        return self.scheme == "basic" and self.username is None and self.password is None

    @property
    def secret(self) -> str | None:
        """The password or token: the part that must never be shown."""
        return self.token if self.scheme == "bearer" else self.password

    def header_value(self) -> str:
        """The value of an `Authorization` header carrying these credentials."""
        if self.scheme == "bearer":
            return f"Bearer {self.token}"
        raw = f"{self.username or ''}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def with_password(self, password: str) -> "Credentials":
        return Credentials.basic(self.username, password)

    def redacted(self) -> str:
        """A display form: `alice:****`, `Bearer ****`, `****` (username only: it may be a token,
        as uv masks it), `****:****` (a token-shaped username, see display_username)."""
        if self.scheme == "bearer":
            return f"Bearer {MASK}"
        if self.password is None:
            return display_username(self.username, None) or "(no username)"
        return f"{display_username(self.username, self.password) or ''}:{MASK}"

    def __str__(self) -> str:
        return self.redacted()

    def __repr__(self) -> str:
        return f"Credentials({self.redacted()!r})"


def parse_authorization(value: str | None) -> Credentials | None:
    """Parse a client's `Authorization` header. Anything malformed is no credential, never
    an exception (uv panics on bad base64; we must keep serving)."""
    if not value:
        return None
    scheme, _, rest = value.strip().partition(" ")
    rest = rest.strip()
    if scheme.lower() == "bearer":
        return Credentials.bearer(rest) if rest else None
    if scheme.lower() != "basic" or not rest:
        return None
    try:
        decoded = base64.b64decode(rest, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    username, sep, password = decoded.partition(":")
    creds = Credentials.basic(username or None, (password or None) if sep else None)
    return None if creds.is_empty else creds


# --- realms and paths ----------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Realm:
    """(scheme, host, effective port): the unit a credential may be sent within."""

    scheme: str
    host: str
    port: int | None

    @classmethod
    def of(cls, url: str | SplitResult) -> "Realm":
        if isinstance(url, str) and cls is Realm and "@" not in url:
            return _realm_of(url)  # one request's URL is looked at by every source (no userinfo kept)
        parts = urlsplit(url) if isinstance(url, str) else url
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = parts.port or DEFAULT_PORTS.get(scheme)
        return cls(scheme, host, port)

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port is None or self.port == DEFAULT_PORTS.get(self.scheme):
            return host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.netloc}"


@functools.lru_cache(maxsize=512)
def _realm_of(url: str) -> Realm:
    """Realm.of for a string (cached; a ValueError for a bad port is raised each time)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return Realm(scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(scheme))


def is_path_prefix(prefix: str, path: str) -> bool:
    """uv's segment prefix: `/simple` covers `/simple`, `/simple/x`, not `/simpleevil`."""
    if prefix == path:
        return True
    if not path.startswith(prefix):
        return False
    return prefix.endswith("/") or path[len(prefix)] == "/"


def url_path(url: str) -> str:
    return urlsplit(url).path or "/"


# A path is matched against a credential's prefix in every form a server might read it in:
# as sent, and normalised the way web servers and frameworks do (docs/how-it-works.md,
# "Path tricks"). `/team-a/..%2fteam-b/x` is under `/team-a/` as sent, but a server that
# decodes `%2f` serves `/team-b/x`: such a path is under a prefix only if every form is.
_ENCODED_SEPARATORS = re.compile(r"%(2[fF]|5[cC]|2[eE])")
_DECODED = {"2f": "/", "5c": "/", "2e": "."}


def _decode_separators(path: str) -> str:
    """`%2f` and `%5c` become `/`, `%2e` becomes `.`, `\\` becomes `/` (nothing else is
    decoded: a `%25` stays, so `%252f` is not a separator here, as for one decoding pass)."""
    return _ENCODED_SEPARATORS.sub(lambda m: _DECODED[m.group(1).lower()], path).replace("\\", "/")


def _is_dot_segment(segment: str, dots: str) -> bool:
    """`.`/`..`, also with a `;param` (Tomcat and Spring read `..;x` as `..`)."""
    return segment.partition(";")[0] == dots


def _resolve_dots(segments: list[str]) -> list[str]:
    out: list[str] = []
    for seg in segments:
        if _is_dot_segment(seg, "."):
            continue
        if _is_dot_segment(seg, ".."):
            if out:
                out.pop()
            continue
        out.append(seg)
    return out


def path_views(path: str) -> tuple[str, ...]:
    """The forms a server may read `path` in: as sent; with `%2f %5c %2e` and backslashes
    decoded and dot segments resolved as RFC 3986 does (an empty segment counts); and the
    same with doubled slashes merged first (nginx `merge_slashes`). A trailing slash is kept
    when the path ends in one or in a dot segment."""
    if "%" not in path and "\\" not in path and "/." not in path and "//" not in path and path.startswith("/"):
        return (path,)  # the common case: nothing a server could read differently
    views = [path]
    decoded = _decode_separators(path)
    parts = decoded.split("/")[1:] if decoded.startswith("/") else decoded.split("/")
    trailing = decoded.endswith("/") or bool(parts) and (_is_dot_segment(parts[-1], ".") or _is_dot_segment(parts[-1], ".."))
    for merge in (False, True):
        segs = [s for s in parts if s] if merge else list(parts)
        resolved = _resolve_dots(segs)
        text = "/" + "/".join(resolved)
        if trailing and not text.endswith("/"):
            text += "/"
        if text not in views:
            views.append(text)
    return tuple(views)


def path_under(prefix: str, path: str, *, segments: bool = False) -> bool:
    """Whether every form of `path` (path_views) is under `prefix`: uv's segment prefix
    (is_path_prefix), or with segments=True whole non-empty segments, trailing slashes not
    counting (segments_prefix, the session cache's rule). The one test for every prefix
    match: index roots, store entries, cached credentials."""
    match = segments_prefix if segments else is_path_prefix
    return all(match(prefix, view) for view in path_views(path))


def covered_segments(path: str) -> tuple[str, ...]:
    """The longest run of leading segments that every form of `path` shares: a cached prefix
    applies to `path` only if it is at most this long (and equal to its start)."""
    common: tuple[str, ...] | None = None
    for view in path_views(path):
        segs = path_segments(view)
        if common is None:
            common = segs
            continue
        n = 0
        while n < min(len(common), len(segs)) and common[n] == segs[n]:
            n += 1
        common = common[:n]
    return common or ()


def covers(prefix_url: str, url: str) -> bool:
    """Whether a credential for `prefix_url` (an index root, a store entry, a netrc realm)
    may be sent to `url`: same realm, and every form of the path under the prefix's path on
    whole segments."""
    try:
        if Realm.of(prefix_url) != Realm.of(url):
            return False
    except ValueError:
        return False
    return path_under(url_path(prefix_url), url_path(url), segments=True)


def is_loopback(host: str) -> bool:
    """`localhost`, `*.localhost`, 127.0.0.0/8, ::1 (brackets allowed)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def path_segments(path: str) -> tuple[str, ...]:
    """Non-empty path segments; trailing and doubled slashes do not count (uv's trie)."""
    return tuple(s for s in path.split("/") if s)


def segments_prefix(prefix: str, path: str) -> bool:
    """Prefix on whole segments, ignoring trailing slashes: used for URL caches."""
    p, s = path_segments(prefix), path_segments(path)
    return s[: len(p)] == p


def strip_simple(url: str) -> str:
    """Index root: drop a final `simple`/`+simple` segment (case-insensitive), keeping a
    trailing slash. `https://h/simple/` -> `https://h/`, `https://h/r/simple` -> `https://h/r`."""
    parts = urlsplit(url)
    path = parts.path
    trimmed = path.rstrip("/")
    head, _, last = trimmed.rpartition("/")
    if last.lower() not in ("simple", "+simple"):
        return url
    new_path = head if head else "/"
    return urlunsplit((parts.scheme, parts.netloc, new_path, "", ""))


# --- URLs and userinfo ----------------------------------------------------------------------


def split_userinfo(url: str) -> tuple[str, Credentials | None]:
    """Return (url without userinfo, percent-decoded credentials from the userinfo or None).

    Raises ValueError (with no secret in its text) when the userinfo is not valid UTF-8."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user_raw, sep, pw_raw = userinfo.partition(":")
    try:
        username = unquote(user_raw, errors="strict") if user_raw else None
    except UnicodeDecodeError:
        raise ValueError("URL username contains invalid UTF-8") from None
    try:
        password = unquote(pw_raw, errors="strict") if sep else None
    except UnicodeDecodeError:
        raise ValueError("URL password contains invalid UTF-8") from None
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    creds = Credentials.basic(username, password)
    return clean, (None if creds.is_empty else creds)


def without_userinfo(url: str) -> str:
    try:
        return split_userinfo(url)[0]
    except ValueError:
        parts = urlsplit(url)
        hostport = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))


def with_userinfo(url: str, username: str | None, password: str | None = None) -> str:
    parts = urlsplit(without_userinfo(url))
    userinfo = quote(username or "", safe="")
    if password is not None:
        userinfo += ":" + quote(password, safe="")
    return urlunsplit((parts.scheme, f"{userinfo}@{parts.netloc}", parts.path, parts.query, parts.fragment))


# --- redaction ------------------------------------------------------------------------------

#: Query parameters whose values are masked wherever a URL is shown (compared case-insensitively,
#: after percent-decoding the name). docs/troubleshooting.md lists them for users.
TOKEN_QUERY_PARAMS = frozenset({
    "token", "access_token", "refresh_token", "id_token", "private_token", "auth_token",
    "api_key", "apikey", "api-key", "key", "sig", "signature", "password", "passwd", "pwd",
    "secret", "client_secret", "auth", "authorization", "session", "sessionid", "jwt",
    "x-amz-credential", "x-amz-security-token", "x-amz-signature",
    "x-goog-credential", "x-goog-signature",
})
_GIT_SCHEMES = ("ssh", "git+ssh", "git+https")


def redact_query(query: str) -> str:
    """The query string with the value of every TOKEN_QUERY_PARAMS parameter masked; the rest
    (order, separators, other values) kept byte for byte."""
    if not query:
        return query
    parts = re.split(r"([&;])", query)
    for i in range(0, len(parts), 2):
        name, sep, value = parts[i].partition("=")
        if sep and value and unquote(name.replace("+", " ")).strip().lower() in TOKEN_QUERY_PARAMS:
            parts[i] = f"{name}={MASK}"
    return "".join(parts)


def redact_url(url: str) -> str:
    """uv's display form: `user:****@`, `****@` (username only: it may be a token),
    `:****@`; `git@` kept for ssh/git schemes; token query values (TOKEN_QUERY_PARAMS)
    masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _pw = userinfo.partition(":")
        if sep:
            netloc = f"{user}:{MASK}@{hostport}" if user else f":{MASK}@{hostport}"
        elif user == "git" and parts.scheme in _GIT_SCHEMES:
            netloc = netloc
        else:
            netloc = f"{MASK}@{hostport}"
    query = redact_query(parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secret_forms(secret: str, username: str | None = None) -> list[str]:
    """The ways a secret may show up in text: raw, URL-encoded, base64 of `user:secret`."""
    forms = {secret, quote(secret, safe=""), quote(secret)}
    if username is not None:
        forms.add(base64.b64encode(f"{username}:{secret}".encode()).decode())
    forms.add(base64.b64encode(f":{secret}".encode()).decode())
    return sorted((f for f in forms if f), key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str | None], usernames: Iterable[str | None] = ()) -> str:
    """Replace every known secret (and its encoded forms) in free text, e.g. keyring stderr.
    Pass `usernames` to also catch base64 of `user:secret` (a Basic header value)."""
    names = [u for u in usernames if u]
    for secret in secrets:
        if not secret:
            continue
        forms = set(secret_forms(secret))
        for name in names:
            forms.update(secret_forms(secret, name))
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, MASK)
    return text
