"""`[[index]] token-command = [...]`: a program whose stdout is the index's password.

What people write keyring plugins for (AWS CodeArtifact, Google Artifact Registry, Azure
Artifacts): `aws codeartifact get-authorization-token ... --output text` prints a token that
lives for hours. The command is argv (no shell), run with the proxy's environment, no stdin
and no terminal, bounded by process.run_bounded (OUTPUT_LIMIT bytes, `timeout` seconds,
EOF_GRACE after it exits; what it leaves behind is killed).
Its stdout, stripped, is the password for the index's `username` (none: an empty username, as
JFrog accepts). Its stderr is echoed to ours with the token redacted.

The answer carries `ttl` = the index's `token-lifetime` (default DEFAULT_LIFETIME): the
resolver keeps it that long (single-flight memo and session cache), then runs the command
again; an upstream 401 on it evicts it earlier and the command runs again at once."""

from __future__ import annotations

import logging
import os
from typing import Mapping

from ..index import Index, match_index
from ..model import Credentials, Realm, redact_text, shown_name
from .base import Answer
from .process import OUTPUT_LIMIT, echo_stderr, run_bounded

log = logging.getLogger(__name__)

#: seconds a token is used when the index sets no token-lifetime (cloud tokens live >= 1 h)
DEFAULT_LIFETIME = 600.0


class TokenCommandSource:
    name = "token-command"
    fast = False

    def __init__(self, indexes: list[Index], env: Mapping[str, str] | None = None, timeout: float = 10.0):
        self._indexes = [ix for ix in indexes if ix.token_command]
        self._env = dict(env) if env is not None else None
        self.timeout = timeout

    def lookup(self, url: str, username: str | None, index: Index | None) -> Answer:
        index = index or match_index(self._indexes, url)
        if index is None or not index.token_command:
            return Answer(self.name, detail="no token-command configured for this index", skipped=True)
        if username is not None and index.username is not None and username != index.username:
            return Answer(self.name, detail=f"index {index.display}: token-command is for username "
                                            f"{shown_name(index.username)!r}, not {shown_name(username)!r}")
        user = index.username if index.username is not None else username
        shown = f"token-command of {index.display} ({_program(index)})"
        outcome = run_bounded(self._argv(index), env=self._env, timeout=self.timeout, limit=OUTPUT_LIMIT)
        lines = [line.strip() for line in outcome.out.splitlines() if line.strip()]
        token = lines[0] if len(lines) == 1 else None
        if outcome.stderr:
            learnt = lines  # whatever it printed may be a secret, even when we reject it
            echo_stderr(redact_text(outcome.err, learnt, usernames=[user, ""]))
        if outcome.problem is not None:
            return Answer(self.name, detail=self._warn(f"{shown}: {outcome.problem} (no credentials)"))
        if token is None:
            what = "nothing" if not lines else f"{len(lines)} lines"
            return Answer(self.name, detail=self._warn(
                f"{shown}: expected the token alone on stdout, got {what} (no credentials)"))
        lifetime = index.token_lifetime or DEFAULT_LIFETIME
        who = f"user {shown_name(user)}" if user else "an empty username"
        return Answer(self.name, Credentials.basic(user, token), prefix=index.root_url, ttl=lifetime,
                      detail=f"{shown}: token for {who}, used for {lifetime:g}s")

    def _argv(self, index: Index) -> list[str]:
        return list(index.token_command or ())

    @staticmethod
    def _warn(message: str) -> str:
        log.warning("%s", message)
        return message

    def knows_host(self, scheme: str, host: str, port: int) -> bool:
        realm = Realm(scheme.lower(), host.lower().strip("[]"), port)
        return any(ix.realm == realm for ix in self._indexes)


def _program(index: Index) -> str:
    """The program's name only: its arguments may name accounts, never shown in full."""
    return os.path.basename((index.token_command or ("?",))[0])
