"""HF_TOKEN as a Bearer token for https://huggingface.co only (uv §12)."""

from __future__ import annotations

from typing import Mapping

from ..index import Index
from ..model import Credentials, Realm, shown_name
from .base import Answer

HF_REALM = Realm("https", "huggingface.co", 443)


class HuggingFaceSource:
    name = "hf-token"
    fast = True

    def __init__(self, env: Mapping[str, str]):
        self._env = env

    def _token(self) -> str | None:
        if "UV_NO_HF_TOKEN" in self._env:
            return None
        return self._env.get("HF_TOKEN") or None

    def lookup(self, url: str, username: str | None, index: Index | None) -> Answer:
        if Realm.of(url) != HF_REALM:
            return Answer(self.name, detail=f"not {HF_REALM}", skipped=True)
        if "UV_NO_HF_TOKEN" in self._env:
            return Answer(self.name, detail="disabled by UV_NO_HF_TOKEN", skipped=True)
        token = self._token()
        if token is None:
            return Answer(self.name, detail="HF_TOKEN unset or empty")
        if username is not None:
            # A Bearer token has no username; a request that names one wants Basic.
            return Answer(self.name, detail=f"HF_TOKEN is a bearer token, username {shown_name(username)!r} requested")
        return Answer(self.name, Credentials.bearer(token), detail="HF_TOKEN", prefix=f"{HF_REALM}/")

    def knows_host(self, scheme: str, host: str, port: int) -> bool:
        return self._token() is not None and Realm(scheme.lower(), host.lower(), port) == HF_REALM
