"""Messages that lead to the fix: one place that knows, for each problem a user meets, the
command or variable that solves it. The proxy's log lines, `doctor` and `explain` all take
their advice from here, so they never disagree.

Nothing here prints a secret: commands name the entry's URL and username, never the password
(the password is read from stdin: `--password -`). Imports nothing from mitmproxy.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shlex
import stat
import threading
from typing import Mapping
from urllib.parse import urlsplit

from .credentials.model import MASK, Realm, display_username, redact_text, redact_url, without_userinfo

TOKEN_USERNAME = "__token__"

# --- a credential the upstream rejected (issue 10 point 7) -----------------------------------


def entry_url(decision, url: str) -> str:
    """The URL of the entry that answered: the source's own prefix (Decision.prefix), else the
    index root, else the realm of the request. Never carries userinfo."""
    prefix = getattr(decision, "prefix", None)
    if prefix:
        return without_userinfo(prefix)
    index = getattr(decision, "index", None)
    if index is not None:
        return index.root_url
    return f"{Realm.of(url)}/"


def login_command(service: str, username: str | None, bearer: bool = False) -> str:
    """`credproxy auth login SERVICE --username alice --password -` (or `--token -`), quoted for
    a POSIX shell."""
    command = ["credproxy", "auth", "login", service]
    if bearer or not username or username == TOKEN_USERNAME:
        command += ["--token", "-"]
    else:
        command += ["--username", username, "--password", "-"]
    return shlex.join(command)


def shown_username(decision) -> str | None:
    """The username a message may show: not `__token__`, and not a username that is the whole
    credential (no password: often a token, which uv masks as `****@`)."""
    creds = getattr(decision, "credentials", None)
    username = getattr(creds, "username", None)
    if not username or username == TOKEN_USERNAME or not getattr(creds, "password", None):
        return None
    return None if display_username(username, creds.password) == MASK else username


def replace_command(decision, url: str) -> str:
    """What replaces the credential `decision` carried, for the source that gave it."""
    creds = getattr(decision, "credentials", None)
    username = shown_username(decision)
    if username is None and getattr(creds, "username", None) not in (None, TOKEN_USERNAME):
        username = "USER"  # a username we do not print
    bearer = getattr(creds, "scheme", "basic") == "bearer"
    service = entry_url(decision, url)
    source = getattr(decision, "source", "none") or "none"
    login = login_command(service, username, bearer)
    host = urlsplit(url).hostname or "HOST"
    if source in ("store", "old-store"):  # a login also moves an old-store entry
        return login
    if source == "netrc":
        # the netrc comes before the store in the chain: a stored entry would not be used
        return f"edit the password of 'machine {host}' in your netrc file ($NETRC or ~/.netrc)"
    if source.startswith("env:"):
        var = source[len("env:"):]
        return (f"export a working {var}_PASSWORD (and {var}_USERNAME), then restart the proxy "
                "(environment credentials are read at start)")
    if source == "index-url":
        return "correct the password in the index URL (config file, pip.conf or uv.toml), or remove it and: " + login
    if source == "native":
        return f"UV_PREVIEW_FEATURES=native-auth uv auth login {shlex.quote(service)} " + (
            "--token -" if bearer or not username or username == TOKEN_USERNAME
            else f"--username {shlex.quote(username)} --password -")
    if source == "keyring":
        return f"keyring set {shlex.quote(service)} {shlex.quote(username or TOKEN_USERNAME)}"
    if source == "token-command":
        return ("run the index's token-command yourself and check that it prints a current token for "
                "the index's username; credproxy runs it again for the next request")
    if source == "hf-token":
        return "huggingface-cli login (or export a working HF_TOKEN and restart the proxy)"
    return login


def rejected_message(url: str, decision, status: int) -> str:
    """The proxy's WARNING when the upstream answers 401/403 to a credential it injected."""
    creds = getattr(decision, "credentials", None)
    username = shown_username(decision)
    who = f" (username {username})" if username else ""
    verb = "rejected" if status == 401 else "refused"
    text = (f"{redact_url(url)}: the upstream {verb} the credential from {decision.source}{who} "
            f"with {status}; entry {entry_url(decision, url)}. Replace it: {replace_command(decision, url)}")
    # belt and braces: nothing above holds the secret, and nothing may
    return redact_text(text, [getattr(creds, "secret", None)], [getattr(creds, "username", None)])


class RejectedCredentials:
    """Remembers which rejected credentials were reported, so a pip run of fifty requests logs
    one line, and a replaced (still wrong) credential is reported again. Keeps a digest of the
    header value only, never the value; bounded."""

    LIMIT = 1024

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def first_time(self, url: str, decision, status: int) -> bool:
        header = getattr(decision, "header", None) or ""
        parts = (decision.source, entry_url(decision, url), str(status), header)
        key = hashlib.sha256("\0".join(parts).encode()).hexdigest()
        with self._lock:
            if key in self._seen:
                return False
            if len(self._seen) >= self.LIMIT:
                self._seen.clear()
            self._seen.add(key)
            return True


# --- a client that does not trust the proxy's CA (point 9) ------------------------------------

CLIENT_TLS_FIX = ('eval "$(credproxy env)" in the client\'s shell, or point the client at '
                  "`credproxy ca bundle`: PIP_CERT or REQUESTS_CA_BUNDLE (pip, requests), SSL_CERT_FILE "
                  "(uv), CURL_CA_BUNDLE (curl), GIT_SSL_CAINFO (git), NODE_EXTRA_CA_CERTS (npm, node)")


# --- a netrc that others can read (point 13) --------------------------------------------------


def netrc_path(env: Mapping[str, str]) -> str | None:
    """The netrc file the netrc source reads ($NETRC, else ~/.netrc), or None."""
    from .credentials.sources.netrc import NetrcSource

    path, _why = NetrcSource(env)._candidates()
    return path


def netrc_mode_warning(env: Mapping[str, str]) -> str | None:
    """One line when the netrc file is readable or writable by group or others."""
    path = netrc_path(env)
    if path is None:
        return None
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    return (f"netrc file {path} is readable by other users (mode {mode:04o}); it holds passwords: "
            f"chmod 600 {shlex.quote(path)}")


# --- NO_PROXY, as the clients read it (point 14) ----------------------------------------------


def no_proxy_value(env: Mapping[str, str]) -> tuple[str, str] | None:
    """(variable, value) of the NO_PROXY the clients use: urllib (pip, requests) lets the
    lower-case name win; curl reads `no_proxy` first too."""
    for name in ("no_proxy", "NO_PROXY"):
        value = env.get(name)
        if value is not None and value.strip():
            return name, value
    return None


def no_proxy_match(url: str, no_proxy: str) -> str | None:
    """The NO_PROXY entry that makes a client connect to `url` directly, or None.

    The union of what pip/requests (requests.utils.should_bypass_proxies: IP, CIDR, suffix of
    host or host:port, then urllib's proxy_bypass_environment) and curl (suffix on dot
    boundaries, `*`, IPs/CIDR) do: when any of them would bypass the proxy, say so."""
    import urllib.request

    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    host_port = f"{host}:{port}"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return raw.strip()
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return raw.strip()
            except ValueError:
                pass
        bare = entry.lstrip(".")
        if bare.startswith("*."):
            bare = bare[2:]
        if bare.startswith("[") and "]" in bare:  # [::1] or [::1]:port
            bare = bare[1:].replace("]", "", 1)
        if host == bare or host.endswith("." + bare) or host_port == bare:
            return raw.strip()
        # requests: plain suffix of the hostname or host:port
        if host.endswith(entry) or host_port.endswith(entry):
            return raw.strip()
        if urllib.request.proxy_bypass_environment(host, {"no": entry}) or \
                urllib.request.proxy_bypass_environment(host_port, {"no": entry}):
            return raw.strip()
    return None


def no_proxy_line(url: str, env: Mapping[str, str]) -> str | None:
    """`NO_PROXY=localhost,127.0.0.1 matches 127.0.0.1: clients connect directly ...` or None."""
    found = no_proxy_value(env)
    if found is None:
        return None
    name, value = found
    entry = no_proxy_match(url, value)
    if entry is None:
        return None
    return (f"{name}={value} lists {entry}: pip, uv and curl connect to "
            f"{urlsplit(url).hostname} directly, without the proxy, so no credential is added")
