"""Who may use the proxy: the per-user proxy token, and `--proxyauth` pairs.

Loopback is not a boundary: every local user (and every program) reaches 127.0.0.1. The proxy
therefore admits only clients that send `Proxy-Authorization: Basic base64(USER:TOKEN)`
(addons/owner.py checks it); `credproxy env` and `credproxy run` put USER:TOKEN in the proxy
URLs they export, so the owner's clients send it without being told.

- The default pair is `credproxy:TOKEN`. TOKEN (`secrets.token_urlsafe(32)`) lives in
  `paths.token_file()`: 0600, in credproxy's 0700 data directory. Whichever of `serve` and
  `env` runs first creates it: the token is written to a temporary file (O_CREAT|O_EXCL|
  O_NOFOLLOW, 0600) and hard-linked into place, which never replaces an existing file, so a
  reader never sees half a token and two processes racing agree on one. An existing file is
  never overwritten; a corrupt, foreign or group/world-readable one is an error that names
  the fix (delete it; the next `credproxy env` makes a new token). Deleting the file rotates
  the token: a running `serve` notices and stops accepting the old one.
- `credproxy run` uses a one-off token of its own, kept in memory and given to its child only.
- `--proxyauth-file FILE` (one line USER:TOKEN) or `CREDPROXY_PROXYAUTH=USER:TOKEN`: a pair the
  user chooses, required to listen beyond loopback. It replaces the default pair (one secret
  at a time; `credproxy env` reads the same file or variable). Never from argv: `ps` shows
  every process's command line to every user.

This module imports no mitmproxy; it is shared by the CLI, the proxy and `doctor`.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hmac
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .. import paths

USER = "credproxy"
TOKEN_BYTES = 32  # token_urlsafe(32): 43 characters, 256 bits
ENV_VAR = "CREDPROXY_PROXYAUTH"
MAX_FILE_BYTES = 4096
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,512}")
_ROTATE = "delete it and run `credproxy env` again to make a new token"


class TokenError(Exception):
    """The token or a --proxyauth pair cannot be used; one line that names the fix and never
    the secret."""


@dataclass(frozen=True)
class ProxyCredential:
    """A USER:TOKEN pair clients must present. The token stays out of repr()."""

    user: str
    token: str = field(repr=False)
    origin: str = ""  # where it came from, for messages: "the token file", "--proxyauth-file F"

    def header_value(self) -> str:
        raw = f"{self.user}:{self.token}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def matches(self, header_value: str | None) -> bool:
        """Whether a Proxy-Authorization value carries exactly this pair. Constant time in the
        content (hmac.compare_digest); malformed values are simply no match."""
        presented = decode_basic(header_value)
        if presented is None:
            return False
        expected = f"{self.user}:{self.token}".encode()
        return hmac.compare_digest(presented, expected)


def decode_basic(value: str | None) -> bytes | None:
    """`Basic <base64>` -> the decoded `user:password` bytes, or None."""
    if not value:
        return None
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(encoded.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


# --- the per-user token file ------------------------------------------------------------------


def _euid() -> int | None:
    return os.geteuid() if hasattr(os, "geteuid") else None


def ensure_private_dir(directory: Path) -> None:
    """Create credproxy's data directory 0700, or tighten an existing one we own."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.stat(directory)
    except OSError as e:
        raise TokenError(f"cannot create {directory}: {e.strerror or e}; set CREDPROXY_DATA_DIR to a "
                         "directory you own") from None
    euid = _euid()
    if euid is not None and st.st_uid != euid:
        raise TokenError(f"{directory} belongs to another user (uid {st.st_uid}); set CREDPROXY_DATA_DIR "
                         "to a directory you own")
    if stat.S_IMODE(st.st_mode) & 0o077:
        try:
            os.chmod(directory, 0o700)
        except OSError as e:
            raise TokenError(f"cannot make {directory} private (chmod 700): {e.strerror or e}") from None


def read_token(path: Path) -> ProxyCredential:
    """The token in `path`. FileNotFoundError when there is none yet; TokenError when the file
    is unusable (a link, not ours, readable by others, not a token)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise TokenError(f"{path} is a symbolic link; credproxy never follows one for its token: "
                             f"{_ROTATE} (rm {path})") from None
        raise TokenError(f"cannot read the proxy token {path}: {e.strerror or e}; fix its permissions "
                         f"(chmod 600 {path}) or {_ROTATE}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TokenError(f"{path} is not a regular file; {_ROTATE}")
        euid = _euid()
        if euid is not None and st.st_uid != euid:
            raise TokenError(f"{path} belongs to another user (uid {st.st_uid}): its token may be known "
                             f"to them; {_ROTATE}")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise TokenError(f"{path} is readable by other users (mode {mode:o}): the token may be known; "
                             f"{_ROTATE}")
        data = os.read(fd, MAX_FILE_BYTES + 1)
    except OSError as e:
        raise TokenError(f"cannot read the proxy token {path}: {e.strerror or e}; {_ROTATE}") from None
    finally:
        os.close(fd)
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        text = ""
    if len(data) > MAX_FILE_BYTES or not _TOKEN.fullmatch(text):
        raise TokenError(f"{path} is not a credproxy proxy token (expected one line of URL-safe "
                         f"characters); {_ROTATE}")
    return ProxyCredential(USER, text, origin=f"the token file {path}")


def _create(path: Path) -> None:
    """Write a new token at `path` unless one exists (then leave that one alone)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
        try:
            os.write(fd, (token + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic, and never replaces an existing file
        except FileExistsError:
            pass  # another process made one first: everybody uses that one
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS):
                raise
            _create_in_place(path, token)  # a file system without hard links
    except OSError as e:
        raise TokenError(f"cannot create the proxy token {path}: {e.strerror or e}; set CREDPROXY_DATA_DIR "
                         "to a directory you own") from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _create_in_place(path: Path, token: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")


def ensure_token(env: Mapping[str, str] | None = None, path: Path | None = None) -> ProxyCredential:
    """The owner's credproxy:TOKEN pair, created on first use."""
    path = path or paths.token_file(env)
    ensure_private_dir(path.parent)
    for _ in range(3):
        try:
            return read_token(path)
        except FileNotFoundError:
            _create(path)
    raise TokenError(f"the proxy token {path} keeps disappearing; is another program deleting it?")


class TokenFile:
    """The token file as a running proxy sees it: read on every use (an open, an fstat and a
    read: microseconds, once per CONNECT or plain-HTTP request), re-created when it was
    deleted. So rotating (delete the file, run `credproxy env`) needs no restart and the old
    token stops working at once; a file that became unsafe refuses everyone."""

    def __init__(self, path: Path):
        self.path = path

    def current(self) -> ProxyCredential:
        """Raises TokenError when the file became unusable: the caller refuses everyone."""
        try:
            return read_token(self.path)
        except FileNotFoundError:
            return ensure_token(path=self.path)


# --- --proxyauth pairs ------------------------------------------------------------------------


def parse_pair(text: str, origin: str) -> ProxyCredential:
    """`USER:TOKEN` -> ProxyCredential. Messages name `origin`, never the token."""
    user, sep, token = text.strip().partition(":")
    if not sep:
        raise TokenError(f"{origin}: expected USER:TOKEN (a user name, a colon, a token)")
    if not user or not token:
        empty = "the user and the token are" if not user and not token else (
            "the user is" if not user else "the token is")
        raise TokenError(f"{origin}: {empty} empty; anyone could authenticate with that. Use a user name "
                         "and a long random token, e.g. me:$(python3 -c 'import secrets; print(secrets.token_urlsafe())')")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in user + token):
        raise TokenError(f"{origin}: the user and the token must not contain spaces or control characters")
    return ProxyCredential(user, token, origin=origin)


def read_pair_file(path: str | os.PathLike) -> tuple[ProxyCredential, list[str]]:
    """(pair, warnings) from a --proxyauth-file: its first non-empty line is USER:TOKEN."""
    origin = f"--proxyauth-file {path}"
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise TokenError(f"{origin}: cannot read it: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise TokenError(f"{origin}: too large for one USER:TOKEN line")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TokenError(f"{origin}: not UTF-8 text; write one line USER:TOKEN") from None
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    warnings = []
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        warnings.append(f"{path} is readable by other users (mode {mode:o}); protect the token: chmod 600 {path}")
    return parse_pair(line, origin), warnings


def configured_pair(proxyauth_file: str | None, env: Mapping[str, str] | None = None
                    ) -> tuple[ProxyCredential | None, list[str]]:
    """The --proxyauth pair, if any: `--proxyauth-file` first, else CREDPROXY_PROXYAUTH."""
    env = os.environ if env is None else env
    if proxyauth_file:
        return read_pair_file(proxyauth_file)
    value = env.get(ENV_VAR)
    if value:  # set but empty counts as unset, like other variables
        return parse_pair(value, ENV_VAR), []
    return None, []


def client_credential(proxyauth_file: str | None = None, env: Mapping[str, str] | None = None
                      ) -> tuple[ProxyCredential, list[str]]:
    """What the owner's clients send: the --proxyauth pair when one is configured, else the
    per-user token (created on first use)."""
    pair, warnings = configured_pair(proxyauth_file, env)
    if pair is not None:
        return pair, warnings
    return ensure_token(env), warnings
