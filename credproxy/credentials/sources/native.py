"""The OS keyring via the `keyring` library, with uv's native-store service names (uv §10).

Backend errors never raise: one warning per service (logging.warning and `warnings`), the
Answer says what failed, never the secret."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from ..index import Index
from ..model import Credentials, Realm
from .base import Answer, realm_prefix, url_prefix

log = logging.getLogger(__name__)


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
            import keyring

            self._backend = keyring.get_keyring()
        return self._backend

    def lookup(self, url: str, username: str | None, index: Index | None) -> Answer:
        if username is None:
            return Answer(self.name, detail="skipped: no username known", skipped=True)
        try:
            backend = self._get_backend()
        except Exception as e:  # noqa: BLE001 - a broken keyring install must not crash us
            return Answer(self.name, detail=self._warn("keyring", f"no keyring backend: {type(e).__name__}"))
        tried: list[str] = []
        errors: list[str] = []
        for service in native_services(url, index):
            try:
                password = backend.get_password(service, username)
            except Exception as e:  # noqa: BLE001 - keyring.errors.* and anything from a backend
                errors.append(self._warn(service, f"Unable to fetch credentials for {service} from system keyring: {type(e).__name__}"))
                continue
            if password is not None:
                return Answer(self.name, Credentials.basic(username, password), detail=f"{service} user {username}",
                              prefix=_prefix(service, url, index))
            tried.append(service)
        detail = f"no entry for user {username} in {', '.join(tried)}" if tried else ""
        return Answer(self.name, detail="; ".join(x for x in [detail, *errors] if x))

    def _warn(self, key: str, message: str) -> str:
        if key not in self._warned:
            self._warned.add(key)
            self.warnings.append(message)
            log.warning("%s", message)
        return message

    def knows_host(self, scheme: str, host: str, port: int) -> bool:
        return False
