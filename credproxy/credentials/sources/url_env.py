"""Credentials configured with an index: UV_INDEX_<NAME>_USERNAME/_PASSWORD, else the
index URL's userinfo (uv §3). The env vars are used exclusively when either is set."""

from __future__ import annotations

from typing import Mapping

from ..index import Index, env_name, match_index
from ..model import Credentials, Realm, shown_name
from .base import Answer


class IndexCredentialsSource:
    name = "index-url"
    fast = True

    def __init__(self, indexes: list[Index], env: Mapping[str, str]):
        self._indexes = list(indexes)
        self._env = env

    def configured(self, index: Index) -> tuple[str, Credentials | None]:
        """(label, credentials) configured for `index`: env first, exclusively, else URL."""
        if index.name:
            prefix = f"UV_INDEX_{env_name(index.name)}"
            user = self._env.get(f"{prefix}_USERNAME")
            password = self._env.get(f"{prefix}_PASSWORD")
            if user is not None or password is not None:
                creds = Credentials.basic(user or None, password)
                return f"env:{prefix}", (None if creds.is_empty else creds)
        return "index-url", index.url_credentials

    def lookup(self, url: str, username: str | None, index: Index | None) -> Answer:
        index = index or match_index(self._indexes, url)
        if index is None:
            return Answer(self.name, detail="no configured index matches", skipped=True)
        label, creds = self.configured(index)
        if creds is None:
            where = f"{label} set but empty" if label != "index-url" else "no userinfo in index URL"
            return Answer(label, detail=f"index {index.display}: {where}")
        if username is not None and creds.username is not None and creds.username != username:
            return Answer(label, detail=f"index {index.display}: username {shown_name(creds.username)!r} is not {shown_name(username)!r}")
        if username is not None and creds.username is None:
            creds = Credentials.basic(username, creds.password)
        return Answer(label, creds, detail=f"index {index.display}", prefix=index.root_url)

    def knows_host(self, scheme: str, host: str, port: int) -> bool:
        realm = Realm(scheme.lower(), host.lower(), port)
        return any(ix.realm == realm and self.configured(ix)[1] is not None for ix in self._indexes)
