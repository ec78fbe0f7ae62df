"""`credproxy auth login|logout|token|dir`: uv's `uv auth` commands (uv §16) on the store
shared with uv (`CREDPROXY_CREDENTIALS_DIR`, else `UV_CREDENTIALS_DIR`, else uv's default
directory), or, with uv's native store on (UV_PREVIEW_FEATURES=native-auth), the OS keyring
under uv's service names (`uv:host[:port]`), as uv does. Entries still in credproxy's old location are read, and moved on the next write. Arguments, checks and messages follow uv 0.13.9; errors are one line
`error: …` on stderr with exit code 2. Where we differ from uv: the stored service never keeps
URL userinfo (uv 0.13.9 may write `https://user:secret@host/` into the file), and a URL that
carries a secret is never echoed back in an error.
"""

from __future__ import annotations

import getpass
import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator
from urllib.parse import urlsplit

import click

from ..credentials.model import MASK, display_username, looks_like_token, redact_url, split_userinfo, strip_simple
from ..credentials.store import (
    Store,
    StoreEntry,
    StoreError,
    default_store_path,
    find,
    legacy_store_path,
    move_legacy_entries,
    normalize_service,
)

TOKEN_USERNAME = "__token__"
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class CliError(click.ClickException):
    """One line on stderr, exit code 2 (uv's convention)."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


class OneLineErrors(click.Command):
    """Turns click's usage errors (missing argument, unknown option) into one `error:` line."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            raise CliError(e.format_message()) from None


# --- SERVICE -----------------------------------------------------------------------------------


def parse_service(arg: str) -> str:
    """uv's Service: a URL, or a bare host that gets `https://`. `https`, or `http` only for
    loopback. Returns the URL (userinfo kept: login takes credentials from it)."""
    shown = _shown(arg)
    # `host:port/path` reads as scheme `host`: only `scheme://` counts as a scheme, and
    # anything else is a bare host that gets https:// (and keeps its port)
    url = arg if "://" in arg else f"https://{arg}"
    parts = urlsplit(url)
    scheme = parts.scheme.lower()

    def invalid(reason: str) -> CliError:
        return CliError(f"invalid value '{shown}' for '<SERVICE>': {reason}")

    if scheme not in ("http", "https"):
        raise invalid(f"Unsupported scheme: {scheme}")
    try:
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise invalid("invalid port number") from None
    if not host or not parts.netloc:
        raise invalid("empty host")
    if scheme == "http" and host not in _LOCAL_HOSTS:
        raise invalid("HTTPS is required for non-local hosts")
    return url


def _shown(arg: str) -> str:
    """The argument for an error message, with any userinfo masked, even when it does not
    parse as a URL (`user:secret@host` reads as scheme `user`)."""
    if "://" in arg:
        return redact_url(arg)
    if "@" in arg:
        return "****@" + arg.rpartition("@")[2]
    return arg


def _split(arg: str) -> tuple[str, str | None, str | None]:
    """(service without userinfo, URL username, URL password)."""
    url = parse_service(arg)
    try:
        clean, creds = split_userinfo(url)
    except ValueError as e:
        raise CliError(str(e)) from None
    try:
        clean = normalize_service(clean)  # uv's form: lower-case host, `/` path
    except StoreError as e:
        raise CliError(str(e)) from None
    if creds is None:
        return clean, None, None
    return clean, creds.username, creds.password


def _read_stdin_line() -> str:
    return sys.stdin.readline().strip()


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _prompt_hidden(prompt: str) -> str:
    """Ask for a secret on the terminal without echo. getpass, not click.prompt(hide_input=True):
    click 8.1 prints the prompt before it turns echo off, so a password typed or pasted
    right after the prompt appears shows on the screen and is then discarded."""
    try:
        return getpass.getpass(prompt)
    except (KeyboardInterrupt, EOFError):
        click.echo(err=True)
        raise click.Abort() from None


def _display(service: str, username: str | None) -> str:
    """`alice@service` as uv prints it; a token-shaped username (GitHub's `TOKEN:x-oauth-basic`)
    is the secret and shows as `****@`."""
    if username and username != TOKEN_USERNAME:
        return f"{MASK if looks_like_token(username) else username}@{service}"
    return service


def _service_command(f):
    """A command on SERVICE with uv's `-u/--username` and its ignored `--keyring-provider`
    (logout and token take the same arguments as uv's)."""
    for decorate in reversed((
        click.command(cls=OneLineErrors),
        click.argument("service"),
        click.option("-u", "--username", help="The username (default __token__)."),
        click.option("--keyring-provider", hidden=True, help="Accepted for uv compatibility; ignored."),
    )):
        f = decorate(f)
    return f


@contextmanager
def _keyring_errors(doing: str, also: str = "") -> Iterator[None]:
    """A keyring failure as one line, `Unable to DOING (ErrorType); FIX`: the type only, since a
    backend's message may quote the secret. A CliError raised inside passes unchanged."""
    try:
        yield
    except CliError:
        raise
    except Exception as e:  # noqa: BLE001 - any backend error
        raise CliError(f"Unable to {doing} ({type(e).__name__}); {_keyring_fix(e)}{also}") from None


def _store() -> Store:
    return Store(default_store_path(os.environ))


def _native_on() -> bool:
    """uv's native store replaces the file for `auth` commands, as in uv: with
    UV_PREVIEW_FEATURES=native-auth (or UV_PREVIEW), or CREDPROXY_KEYRING_PROVIDER=native."""
    from ..config import native_auth_enabled

    return native_auth_enabled(os.environ) or os.environ.get("CREDPROXY_KEYRING_PROVIDER") == "native"


def native_target(service: str) -> str:
    """uv's native-store service for `auth login SERVICE`: the host (`uv:host[:port]`) for
    https, `uv:scheme://host[:port]` otherwise; the path is dropped (uv §10)."""
    from ..credentials.model import Realm

    realm = Realm.of(service)
    return "uv:" + (realm.netloc if realm.scheme == "https" else str(realm))


def _keyring():
    """uv's native store (credentials/sources/native.py `native_keyring`): on Linux the Secret
    Service, written with uv's attributes. No Secret Service: a CliError naming the fix."""
    from ..credentials.sources.native import NoSecretService, native_keyring

    try:
        return native_keyring()
    except NoSecretService as e:
        raise CliError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - a broken keyring configuration: the type only
        raise CliError(f"no usable system keyring ({type(e).__name__}); {_keyring_fix(e)}, "
                       "or unset UV_PREVIEW_FEATURES to use the file store") from None


def _keyring_fix(e: Exception) -> str:
    from ..credentials.sources.native import keyring_fix

    return keyring_fix(e)


def _legacy() -> Store:
    return Store(legacy_store_path(os.environ))


def _store_for_writing(about: list[tuple[str, str | None]] = ()) -> Store:
    """The shared store, with the old location's entries moved into it first (once). `about`:
    the (service, username) keys this login or logout is about. An old entry the move kept
    for one of them (another secret than uv's store has) goes: the user has just decided that
    key, and a logout must not leave the old secret for the proxy's old-store source."""
    store, legacy = _store(), _legacy()
    try:
        moved = move_legacy_entries(legacy, store)
    except StoreError as e:  # the old file is left as it is; this write goes on
        click.echo(f"warning: {e}; its entries were not moved to {store.path} (fix or remove that file)", err=True)
        return store
    if moved.added:
        click.echo(f"Moved {moved.added} stored credential(s) from {legacy.path} to {store.path} (the store uv reads)", err=True)
    keys = {(normalize_service(service), username) for service, username in about}
    settled = [e for e in moved.kept if e.key in keys]
    if settled:
        _drop_from_legacy(legacy, keys)
    if kept := [e for e in moved.kept if e.key not in keys]:
        shown = ", ".join(e.display for e in kept)
        click.echo(f"warning: {legacy.path} keeps {len(kept)} credential(s) that {store.path} also has, "
                   f"with another password or token: {shown}. The one in {store.path} is used; check which is "
                   f"right (`credproxy auth login` to replace it), then delete {legacy.path}", err=True)
    return store


def _drop_from_legacy(legacy: Store, keys: set[tuple[str, str | None]]) -> None:
    """Remove `keys` from the old file; remove the file when nothing is left in it."""
    left: list[StoreEntry] = []

    def change(entries: list[StoreEntry]) -> list[StoreEntry]:
        left[:] = [e for e in entries if e.key not in keys]
        return list(left)

    legacy.modify(change, write_if_unchanged=False)
    if not left:
        legacy.path.unlink(missing_ok=True)


def _read_entries() -> list[StoreEntry]:
    """The shared store's entries, then the old location's (the shared store wins)."""
    entries = _store().read()
    legacy = _legacy()
    if legacy.path != _store().path and legacy.path.exists():
        have = {e.key for e in entries}
        entries += [e for e in legacy.read() if e.key not in have]
    return entries


def _others_hint(entries: list[StoreEntry], service: str, exact: bool) -> str:
    """`; entries for this URL: alice, bob; pass --username` when usernames other than
    __token__ are stored for the service (`exact`: the same service, as logout removes; else
    every entry a lookup of the URL would consider)."""
    try:
        target = normalize_service(service)
    except StoreError:
        return ""
    names = sorted({
        e.username for e in entries
        if e.username and e.username != TOKEN_USERNAME
        and (e.service == target if exact else find([e], target, e.username) is not None)
    })
    if not names:
        return ""
    return f"; entries for this URL: {', '.join(names)}; pass --username"


# --- commands ----------------------------------------------------------------------------------


@click.command(cls=OneLineErrors)
@click.argument("service")
@click.option("-u", "--username", help="The username to use for the service.")
@click.option("--password", help="The password; `-` reads one line from stdin.")
@click.option("-t", "--token", help="A token (stored with username __token__); `-` reads stdin.")
@click.option("--scheme", type=click.Choice(["basic", "bearer"]), default="basic", show_default=True,
              help="bearer: send the --token as `Authorization: Bearer TOKEN` (npm registries); stored as "
                   "uv's `scheme = \"bearer\"` entry, which uv reads too.")
@click.option("--keyring-provider", hidden=True, help="Accepted for uv compatibility; ignored.")
def login(service: str, username: str | None, password: str | None, token: str | None, scheme: str,
          keyring_provider: str | None) -> None:
    """Store credentials for SERVICE (a URL or a host; `/simple` is stripped)."""
    if scheme == "bearer" and (token is None or username is not None or password is not None):
        raise CliError("`--scheme bearer` stores a token: use it with `--token` (`-` reads stdin), "
                       "without --username and --password")
    if token is not None and username is not None:
        raise CliError("the argument '--token <TOKEN>' cannot be used with '--username <USERNAME>'")
    if token is not None and password is not None:
        raise CliError("the argument '--token <TOKEN>' cannot be used with '--password <PASSWORD>'")
    clean, url_username, url_password = _split(service)
    root = strip_simple(clean)

    if username is not None and url_username is not None:
        raise CliError(  # as uv says it, with a username that may be a token masked
            f"Cannot specify a username both via the URL and CLI; found `--username "
            f"{display_username(username, '')}` and `{display_username(url_username, url_password)}`")
    if token is not None and url_username is not None:
        raise CliError("When using `--token`, a username cannot be provided; found: "
                       f"{display_username(url_username, url_password)}")
    if username is None:
        username = url_username
    if username is None and token is not None:
        username = TOKEN_USERNAME
    if username is None:
        if not _stdin_is_tty():
            raise CliError("No username provided; did you mean to provide `--username` or `--token`?")
        username = click.prompt("Enter username", err=True, default="", show_default=False)
    if not username:
        raise CliError("Username cannot be empty")

    if password is not None and url_password is not None:
        raise CliError("Cannot specify a password both via the URL and CLI")
    if token is not None and url_password is not None:
        raise CliError("Cannot include a password in the URL when using `--token`")
    secret = token if token is not None else password
    if secret == "-":
        secret = _read_stdin_line()
    if secret is None:
        secret = url_password
    if secret is None:
        if not _stdin_is_tty():
            raise CliError("No password provided; did you mean to provide `--password` or `--token`?")
        secret = _prompt_hidden("Enter password: ")
    if not secret:
        raise CliError("Password cannot be empty")

    if _native_on() and scheme != "bearer":  # uv's native store holds username/password pairs
        target = native_target(root)
        backend = _keyring()
        with _keyring_errors(f"store credentials for {_display(target, username)} in the system keyring",
                             ", or unset UV_PREVIEW_FEATURES to use the file store"):
            backend.set_password(target, username, secret)
        click.echo(f"Stored credentials for {_display(root, username)}", err=True)
        return
    entry = StoreEntry.bearer(root, secret) if scheme == "bearer" else StoreEntry.basic(root, username, secret)
    try:
        _store_for_writing(about=[entry.key]).add(entry)
    except StoreError as e:
        raise CliError(str(e)) from None
    if scheme == "bearer":
        click.echo(f"Stored a bearer token for {root}", err=True)
    else:
        click.echo(f"Stored credentials for {_display(root, username)}", err=True)


@_service_command
def logout(service: str, username: str | None, keyring_provider: str | None) -> None:
    """Remove the credentials stored for SERVICE and USERNAME."""
    clean, url_username, _ = _split(service)
    root = strip_simple(clean)
    given = username or url_username
    username = given or TOKEN_USERNAME
    if _native_on():
        target = native_target(root)
        backend = _keyring()
        with _keyring_errors(f"remove credentials for {_display(root, username)} from the system keyring"):
            if backend.get_password(target, username) is None:
                raise CliError(f"No matching entry found for `{_display(root, username)}`")
            backend.delete_password(target, username)
        click.echo(f"Removed credentials for {_display(root, username)}", err=True)
        return
    try:
        store = _store_for_writing(about=[(root, username)] + ([(root, None)] if given is None else []))
        removed = store.remove(root, username)
        if not removed and given is None:
            removed = store.remove(root, None)  # a bearer entry (written by hand)
    except StoreError as e:
        raise CliError(str(e)) from None
    if not removed:
        try:
            hint = _others_hint(store.read(), root, exact=True) if given is None else ""
        except StoreError:
            hint = ""
        raise CliError(f"No matching entry found for `{_display(root, username)}`{hint}")
    click.echo(f"Removed credentials for {_display(root, username)}", err=True)


@_service_command
def token(service: str, username: str | None, keyring_provider: str | None) -> None:
    """Print the password or token stored for SERVICE (longest matching prefix), alone."""
    clean, url_username, _ = _split(service)
    given = username or url_username
    username = given or TOKEN_USERNAME
    if _native_on():
        backend = _keyring()
        with _keyring_errors(f"fetch credentials for {_display(clean, username)} from the system keyring"):
            secret = backend.get_password(native_target(clean), username)
        if not secret:
            raise CliError(f"Failed to fetch credentials for `{_display(clean, username)}`")
        click.echo(secret)
        return
    try:
        entries = _read_entries()
        entry = find(entries, clean, username)
        if entry is None and given is None:
            bearer_only = [e for e in entries if e.scheme == "bearer"]
            entry = find(bearer_only, clean, None)
    except StoreError as e:
        raise CliError(str(e)) from None
    if entry is None:
        raise CliError(f"Failed to fetch credentials for `{_display(clean, username)}`"
                       + (_others_hint(entries, clean, exact=False) if given is None else ""))
    if not entry.secret:
        what = "token" if entry.scheme == "bearer" else "password"
        raise CliError(f"No {what} found for `{_display(clean, username)}`")
    click.echo(entry.secret)


@click.command("dir", cls=OneLineErrors)
@click.argument("service", required=False)
def dir_command(service: str | None) -> None:
    """Print the directory of the credentials store (shared with uv).

    SERVICE is accepted as uv accepts it, and checked, but does not change the answer: one
    store holds the entries of every service."""
    if service is not None:
        parse_service(service)  # validated as uv validates it; the store is one file for all
    click.echo(str(default_store_path(os.environ).parent))


@click.group()
def auth() -> None:
    """Manage stored credentials (uv-compatible credentials.toml)."""


for _command in (login, logout, token, dir_command):
    auth.add_command(_command)
