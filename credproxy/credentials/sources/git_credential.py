"""git's own credential helpers (`git credential fill`), for hosts the config names.

`git-credential-hosts = ["git.corp.example", "*.corp.example"]`: for a request to such a host
that the server challenged (401, as git itself asks its helper only then), credproxy runs
`git credential fill` with `protocol`, `host` (with a non-default port) and `path`, and, when
known, `username`. git applies the user's `credential.*` configuration (helpers, useHttpPath)
exactly as for its own requests.

Never interactive: GIT_TERMINAL_PROMPT=0, GIT_ASKPASS empty, SSH_ASKPASS removed, stdin is
the request and then closed, no terminal (own session). Bounded like the keyring, by the
same process.run_bounded: the timeout kills git and its helpers, output is capped at
OUTPUT_LIMIT, and what a helper leaves behind (a daemon holding git's stderr, which is ours)
is killed and waited for at most EOF_GRACE once git has exited.
git's stderr is echoed with the password redacted."""

from __future__ import annotations

import logging
import os
import re
import shutil
from typing import Callable, Mapping
from urllib.parse import urlsplit

from ..index import Index
from ..model import DEFAULT_PORTS, Credentials, Realm, redact_text, shown_name
from .base import Answer
from .process import NEUTRAL_DIR, OUTPUT_LIMIT, echo_stderr, run_bounded

log = logging.getLogger(__name__)

#: what ends a line in git's credential protocol (git splits on LF and drops a CR before it;
#: a NUL ends a C string)
_LINE_BREAK = re.compile("[\n\r\x00]")


#: variables that point git at a repository (and so at its config)
_REPOSITORY_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR")

#: what git's smart and dumb HTTP protocols add to a repository's URL
_PROTOCOL_TAIL = re.compile(r"/(?:info/refs|git-upload-pack|git-receive-pack|info/lfs(?:/.*)?|HEAD|objects/.*)$")


def repository_path(path: str) -> str:
    """The repository's path, as git sends it to its helpers (`team/repo.git` for a request
    to `/team/repo.git/info/refs`): up to a segment ending in `.git`, else without the tail
    git's HTTP protocols add."""
    path = path.lstrip("/")
    head = re.match(r"(.*?\.git)(?:/|$)", path)
    if head:
        return head.group(1)
    return _PROTOCOL_TAIL.sub("", "/" + path).lstrip("/")


# what git is sent on stdin (protocol, host, path, username), at most; a pipe holds 64 KiB
MAX_REQUEST = 8192


class GitCredentialSource:
    name = "git-credential"
    fast = False
    #: asked for the hosts it names even without an index or a username (after a challenge),
    #: and it can say which hosts those are (so they are intercepted)
    scoped_to_hosts = True

    def __init__(self, matches: Callable[[str, int], bool], env: Mapping[str, str] | None = None,
                 timeout: float = 10.0, git: str = "git"):
        self._matches = matches
        self._env = dict(env) if env is not None else None
        self.timeout = timeout
        self.git = git

    def _git_env(self) -> dict[str, str]:
        env = dict(self._env if self._env is not None else os.environ)
        env.pop("SSH_ASKPASS", None)
        for name in _REPOSITORY_VARS:  # a repository's config is not the user's (see NEUTRAL_DIR)
            env.pop(name, None)
        env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "GCM_INTERACTIVE": "never"})
        return env

    def lookup(self, url: str, username: str | None, index: Index | None) -> Answer:
        parts = urlsplit(url)
        realm = Realm.of(url)
        if realm.scheme != "https" or not self._matches(realm.host, realm.port or 443):
            return Answer(self.name, detail="host not in git-credential-hosts", skipped=True)
        env = self._git_env()
        exe = shutil.which(self.git, path=env.get("PATH"))
        if exe is None:
            return Answer(self.name, detail=self._warn("git-credential: git not found on PATH (no credentials)"))
        host = realm.host if ":" not in realm.host else f"[{realm.host}]"
        if realm.port != DEFAULT_PORTS["https"]:
            host += f":{realm.port}"
        values = {"host": host, "path": repository_path(parts.path), "username": username}
        broken = [key for key, value in values.items() if value is not None and _LINE_BREAK.search(value)]
        if broken:
            # git's credential protocol is one `key=value` per line: a line break in a value
            # would add keys of the caller's choosing (`host=another.example`)
            return Answer(self.name, detail=f"the request's {' and '.join(broken)} holds a line break or NUL, "
                                            "which git's credential protocol cannot carry (git not asked)")
        request = f"protocol=https\nhost={host}\npath={values['path']}\n"
        if username is not None:
            request += f"username={username}\n"
        if len(request) > MAX_REQUEST:
            # written to git's stdin before the timeout starts: kept far below a pipe's buffer
            return Answer(self.name, detail=f"the request's path and username are longer than {MAX_REQUEST} "
                                            "characters (git not asked)")
        outcome = run_bounded([exe, "credential", "fill"], env=env, timeout=self.timeout,
                              limit=OUTPUT_LIMIT, stdin_data=(request + "\n").encode(), cwd=NEUTRAL_DIR)
        fields: dict[str, str] = {}
        for line in outcome.out.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key] = value
        user, password = fields.get("username"), fields.get("password")
        if outcome.stderr:
            echo_stderr(redact_text(outcome.err, [password], usernames=[user]))
        shown = f"git credential fill for https://{host}/"
        if outcome.problem is not None:
            return Answer(self.name, detail=f"{shown}: {outcome.problem} (no helper had credentials)")
        if password is None:
            return Answer(self.name, detail=f"{shown}: no password")
        if username is not None and user is not None and user != username:
            return Answer(self.name, detail=f"{shown}: a credential for another username")
        who = f"user {shown_name(user)}" if user else "no username"
        # git echoes `path` only when credential.useHttpPath applies to this URL: then the
        # helper answered for this repository, and the credential goes to it alone
        scope = f"{realm}/{values['path']}/" if fields.get("path") and values["path"] else f"{realm}/"
        return Answer(self.name, Credentials.basic(user, password), prefix=scope,
                      detail=f"{shown}: found ({who}{', for this repository' if scope != f'{realm}/' else ''})")

    def memo_scope(self, url: str) -> str:
        """What, besides the host and username, a remembered answer depends on: the
        repository (with useHttpPath, another repository may have another credential)."""
        return repository_path(urlsplit(url).path)

    @staticmethod
    def _warn(message: str) -> str:
        log.warning("%s", message)
        return message

    def knows_host(self, scheme: str, host: str, port: int) -> bool:
        return scheme.lower() == "https" and self._matches(host.strip("[]").lower(), port)
