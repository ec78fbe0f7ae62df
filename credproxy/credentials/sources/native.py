"""The OS keyring via the `keyring` library, with uv's native-store service names (uv §10).

The keyring is the one uv uses (`native_keyring`): on Linux the Secret Service, which uv talks
to over D-Bus whatever Python's keyring would pick (keyrings.alt's file is invisible to uv);
its items are written with uv's own attributes, so `uv auth login` replaces them and `uv auth
logout` removes them. Answers live NATIVE_TTL seconds in the proxy's cache and memo: a logout
or a new password (by uv or by us) reaches a running proxy without a restart.

Backend errors never raise: one warning per service (logging.warning and `warnings`), the
Answer says what failed, never the secret."""

from __future__ import annotations

import logging
import sys
from contextlib import closing

from ..index import Index
from ..model import Credentials, Realm, shown_name
from .base import Answer, realm_prefix, url_prefix

log = logging.getLogger(__name__)

#: seconds a native-store answer is reused before the keyring is asked again (a D-Bus round trip)
NATIVE_TTL = 2.0

HEADLESS_FIX = ("start a Secret Service and unlock it: a desktop session runs one; on a headless machine "
                "install gnome-keyring and run `dbus-run-session -- sh -c 'gnome-keyring-daemon --unlock "
                "--components=secrets < password-file && exec \"$SHELL\"'` (docs/quick-start.md, \"uv's native store\")")

LOCKED_FIX = ("unlock the keyring: your desktop's keyring prompt; headless, `gnome-keyring-daemon --replace --unlock "
              "--components=secrets < password-file` (in the session whose DBUS_SESSION_BUS_ADDRESS credproxy has)")


def keyring_fix(e: Exception) -> str:
    """What to do about a keyring error (only its type is shown: a message may quote a secret)."""
    if type(e).__name__ == "KeyringLocked":
        return LOCKED_FIX
    return "check PYTHON_KEYRING_BACKEND and keyringrc.cfg (`python -m keyring diagnose` shows both)"


class NoSecretService(RuntimeError):
    """uv's native store on Linux is the Secret Service, and none answers. The text names the fix."""


class UvSecretService:
    """keyring's Secret Service backend, writing items as uv does: attributes `application=uv`,
    `service`, `target=default`, `username` and uv's label form. uv looks items up by
    service and username, so it finds these; and its own login replaces (its logout removes)
    exactly this attribute set, which Python keyring's (`application=Python keyring library`,
    no target) is not: a second item for the same pair would shadow or outlive the first.
    Writing and deleting therefore act on every item of the (service, username) pair."""

    def __init__(self, backend):
        self.backend = backend

    def __repr__(self) -> str:
        return "Secret Service (uv's attributes)"

    def get_password(self, service: str, username: str) -> str | None:
        return self.backend.get_password(service, username)

    def _items(self, collection, service: str, username: str) -> list:
        return list(collection.search_items({"service": service, "username": username}))

    def set_password(self, service: str, username: str, password: str) -> None:
        collection = self.backend.get_preferred_collection()
        with closing(collection.connection):
            for item in self._items(collection, service, username):
                item.delete()
            attributes = {"application": "uv", "service": service, "target": "default", "username": username}
            collection.create_item(f"{username}@{service}:default (credproxy)", attributes,
                                   password.encode(), replace=True)

    def delete_password(self, service: str, username: str) -> None:
        from keyring.errors import PasswordDeleteError

        collection = self.backend.get_preferred_collection()
        with closing(collection.connection):
            items = self._items(collection, service, username)
            if not items:
                raise PasswordDeleteError("No such password!")
            for item in items:
                item.delete()


def native_keyring():
    """The keyring uv's native store is. PYTHON_KEYRING_BACKEND or a keyringrc.cfg choose, as
    for Python's keyring (the user said so); otherwise, on Linux, the Secret Service (what uv
    uses; NoSecretService when none answers), elsewhere keyring's default (macOS Keychain,
    Windows Credential Manager: uv's too). A Secret Service backend writes as uv does."""
    import keyring
    import keyring.core
    from keyring.backends import SecretService

    chosen = keyring.core.load_env() or keyring.core.load_config()
    if chosen is None and sys.platform.startswith("linux"):
        try:
            SecretService.Keyring.priority  # noqa: B018 - raises when no Secret Service answers
        except Exception as e:  # noqa: BLE001 - RuntimeError, or anything from D-Bus
            raise NoSecretService(f"no Secret Service answers on D-Bus ({_reason(e)}): uv's native store on Linux is "
                                  f"the Secret Service; {HEADLESS_FIX}, or unset UV_PREVIEW_FEATURES "
                                  "(credproxy and uv then share the file store)") from None
        chosen = SecretService.Keyring()
    if chosen is None:
        chosen = keyring.get_keyring()
    if isinstance(chosen, SecretService.Keyring):
        return UvSecretService(chosen)
    return chosen


def _reason(e: Exception) -> str:
    """The exception's text, short; backends' availability errors name no secret."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]


def backend_name(backend) -> str:
    """`keyrings.alt.file.PlaintextKeyring`, `Secret Service (uv's attributes)`: for doctor/explain."""
    if isinstance(backend, UvSecretService):
        return repr(backend)
    cls = type(backend)
    return f"{cls.__module__}.{cls.__name__}"


def native_services(url: str, index: Index | None) -> list[str]:
    """`uv:<index root or request URL>`, `uv:<host[:port]>`, then `uv:<scheme>://<host[:port]>`
    for non-https."""
    # never the query: it may hold a token, and the service is named in answers and logs
    target = index.root_url if index is not None else url_prefix(url)
    realm = Realm.of(url)
    services = [f"uv:{target}", f"uv:{realm.netloc}"]
    if realm.scheme != "https":
        services.append(f"uv:{realm}")
    return list(dict.fromkeys(services))


def _prefix(service: str, url: str, index: Index | None) -> str:
    """`uv:<index root>` -> the index root, `uv:<request URL>` -> that URL, a host form ->
    the realm."""
    target = service[len("uv:"):]
    if index is not None and target == index.root_url:
        return index.root_url
    if "/" in target.partition("://")[2]:
        return url_prefix(target)
    return realm_prefix(url)


class NativeKeyringSource:
    name = "native"
    fast = False

    def __init__(self, backend=None):
        self._backend = backend
        self._warned: set[str] = set()
        self.warnings: list[str] = []

    def _get_backend(self):
        if self._backend is None:
            self._backend = native_keyring()
        return self._backend

    def lookup(self, url: str, username: str | None, index: Index | None) -> Answer:
        if username is None:
            return Answer(self.name, detail="skipped: no username known", skipped=True)
        try:
            backend = self._get_backend()
        except Exception as e:  # noqa: BLE001 - a broken keyring install must not crash us
            reason = str(e) if isinstance(e, NoSecretService) else type(e).__name__
            return Answer(self.name, detail=self._warn("keyring", f"no keyring backend: {reason}"))
        tried: list[str] = []
        errors: list[str] = []
        for service in native_services(url, index):
            try:
                password = backend.get_password(service, username)
            except Exception as e:  # noqa: BLE001 - keyring.errors.* and anything from a backend
                errors.append(self._warn(service, f"Unable to fetch credentials for {service} from system keyring: {type(e).__name__}"))
                continue
            if password is not None:
                return Answer(self.name, Credentials.basic(username, password),
                              detail=f"{service} user {shown_name(username)} ({backend_name(backend)})",
                              prefix=_prefix(service, url, index), ttl=NATIVE_TTL)
            tried.append(service)
        detail = f"no entry for user {shown_name(username)} in {', '.join(tried)}" if tried else ""
        # asked again after NATIVE_TTL, not the resolver's negative_ttl: a login shows soon
        return Answer(self.name, detail="; ".join(x for x in [detail, *errors] if x), ttl=NATIVE_TTL)

    def _warn(self, key: str, message: str) -> str:
        if key not in self._warned:
            self._warned.add(key)
            self.warnings.append(message)
            log.warning("%s", message)
        return message

    def knows_host(self, scheme: str, host: str, port: int) -> bool:
        return False
