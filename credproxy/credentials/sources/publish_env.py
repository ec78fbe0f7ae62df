"""Upload credentials from uv's publish variables: `UV_PUBLISH_TOKEN` (sent as user
`__token__`), else `UV_PUBLISH_USERNAME`/`UV_PUBLISH_PASSWORD` (an empty username is allowed:
JFrog Artifactory takes a token as the password of no user). They answer only for a
configured index's `publish-url` (Index.matches_publish), never for downloads, so a token
meant for uploads is not sent anywhere else."""

from __future__ import annotations

from typing import Mapping

from ..index import Index, match_index
from ..model import Credentials, shown_name
from .base import Answer

TOKEN_USERNAME = "__token__"


class PublishEnvSource:
    name = "env:UV_PUBLISH"
    fast = True

    def __init__(self, indexes: list[Index], env: Mapping[str, str]):
        self._indexes = list(indexes)
        self._env = env

    def credentials(self) -> tuple[str, Credentials | None]:
        """(label, credentials) from the environment; the token wins (as in uv, where it is
        the password of `__token__`)."""
        token = self._env.get("UV_PUBLISH_TOKEN")
        if token:
            return "env:UV_PUBLISH_TOKEN", Credentials.basic(TOKEN_USERNAME, token)
        user = self._env.get("UV_PUBLISH_USERNAME")
        password = self._env.get("UV_PUBLISH_PASSWORD")
        if user is None and password is None:
            return self.name, None
        creds = Credentials.basic(user or None, password)
        return "env:UV_PUBLISH_USERNAME/PASSWORD", (None if creds.is_empty else creds)

    def lookup(self, url: str, username: str | None, index: Index | None) -> Answer:
        index = index or match_index(self._indexes, url)
        if index is None or not index.matches_publish(url):
            return Answer(self.name, detail="not a configured publish-url", skipped=True)
        label, creds = self.credentials()
        if creds is None:
            return Answer(self.name, detail="UV_PUBLISH_TOKEN/_USERNAME/_PASSWORD not set")
        if username is not None and creds.username is not None and creds.username != username:
            return Answer(label, detail=f"publish-url of {index.display}: username {shown_name(creds.username)!r} is not {shown_name(username)!r}")
        if username is not None and creds.username is None and not creds.is_complete:
            creds = Credentials.basic(username, None)
        return Answer(label, creds, detail=f"publish-url of {index.display}", prefix=index.publish_url)

    def knows_host(self, scheme: str, host: str, port: int) -> bool:
        return False  # the resolver intercepts every publish-url's host itself
