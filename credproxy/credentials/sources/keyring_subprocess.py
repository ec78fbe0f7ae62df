"""The `keyring` command line, exactly as uv calls it (uv §11).

`keyring get <SERVICE> <USERNAME>` when a username is known, else
`keyring get <SERVICE> --mode creds`. Services: the index URL as configured (or the request
URL), then `host[:port]`, then `scheme://host[:port]` for non-https; first success wins.

The command's stderr is captured and echoed to our stderr afterwards with any secret it
learnt redacted. Nothing here raises: problems become warnings (logging.warning,
`warnings`) and an Answer detail.

Bounds (issue 9, finding 5): the command runs through process.run_bounded, like every
credential helper: stdout and stderr are read up to OUTPUT_LIMIT (64 KiB) each, more is "no
credential" and the command is killed; a command that hangs is killed after `timeout`
seconds; what it leaves behind is killed (reaper.py), and once it has exited its pipes are
waited for at most EOF_GRACE, so a survivor holding them cannot delay the request."""

from __future__ import annotations

import logging
import shutil
from typing import Mapping

from ..index import Index
from ..model import Credentials, Realm, redact_text, shown_name
from .base import Answer, realm_prefix, url_prefix
from .process import STOPPED, echo_stderr, run_bounded

log = logging.getLogger(__name__)

MODE_UNSUPPORTED = (
    "Attempted to fetch credentials using the keyring command, but it does not support "
    "--mode creds; upgrade to keyring>=v25.2.1 or provide a username"
)


def keyring_services(url: str, index: Index | None) -> list[str]:
    """The index URL (else the request URL without userinfo, query and fragment: a query
    may hold a token, and the service is the command's argument, which every local user can
    read in /proc/PID/cmdline, and is named in log lines), `host[:port]`, then
    `scheme://host[:port]` for plain http."""
    first = index.url if index is not None else url_prefix(url)
    realm = Realm.of(url)
    services = [first, realm.netloc]
    if realm.scheme != "https":
        services.append(str(realm))
    return list(dict.fromkeys(services))


def service_prefix(service: str, url: str, index: Index | None) -> str:
    """The prefix a keyring entry answered for `service` may be used under: the index root
    (the service was the index URL), the URL asked about (no index), else the realm (the
    service was `host[:port]` or `scheme://host[:port]`)."""
    if index is not None and service == index.url:
        return index.root_url
    if "/" in service.partition("://")[2]:  # a URL with a path: the request URL
        return url_prefix(service)
    return realm_prefix(url)


class KeyringSubprocessSource:
    name = "keyring"
    fast = False

    def __init__(self, command: str = "keyring", timeout: float = 10.0, env: Mapping[str, str] | None = None):
        self.command = command
        self.timeout = timeout
        self._env = dict(env) if env is not None else None
        self._mode_warned = False
        self.warnings: list[str] = []

    def _warn(self, message: str) -> str:
        self.warnings.append(message)
        log.warning("%s", message)
        return message

    def _resolve(self) -> str | None:
        path = self._env.get("PATH", "") if self._env is not None else None
        return shutil.which(self.command, path=path)

    def lookup(self, url: str, username: str | None, index: Index | None) -> Answer:
        exe = self._resolve()
        if exe is None:
            where = "PATH" if self._env is None else "the configured PATH"
            return Answer(self.name, detail=self._warn(f"keyring command {self.command!r} not found on {where}"))
        details: list[str] = []
        for service in keyring_services(url, index):
            creds, detail = self._ask(exe, service, username)
            details.append(detail)
            if detail.endswith(STOPPED):
                break  # the proxy is stopping: no command for the next service name
            if creds is not None:
                return Answer(self.name, creds, detail=detail, prefix=service_prefix(service, url, index))
        return Answer(self.name, detail="; ".join(details))

    def _ask(self, exe: str, service: str, username: str | None) -> tuple[Credentials | None, str]:
        argv = [exe, "get", service, username] if username is not None else [exe, "get", service, "--mode", "creds"]
        shown = f"keyring get {service} {username if username is not None else '--mode creds'}"
        result = run_bounded(argv, env=self._env, timeout=self.timeout)
        if result.stopped:
            return None, f"{shown}: {STOPPED}"
        if not result.exited:
            return None, self._warn(f"{shown}: {result.problem} (no credentials)")
        stdout, stderr = result.out, result.err
        creds: Credentials | None = None
        detail = ""
        if result.returncode != 0:
            detail = f"{shown}: exit {result.returncode}"
            if username is None and "unrecognized arguments: --mode" in stderr and not self._mode_warned:
                self._mode_warned = True
                self._warn(MODE_UNSUPPORTED)
        elif username is not None:
            password = stdout.rstrip()
            creds = Credentials.basic(username, password)
            detail = f"{shown}: found"
            if password == "":
                self._warn(f"{shown}: keyring returned an empty password")
        else:
            lines = stdout.splitlines()
            if len(lines) < 2:
                detail = self._warn(f"{shown}: expected username and password on two lines, got {len(lines)} line(s)")
            else:
                user, password = lines[0].rstrip("\r"), lines[1].rstrip()
                creds = Credentials.basic(user or None, password)
                detail = f"{shown}: found user {shown_name(user)}" if user else f"{shown}: found"
                if password == "":
                    self._warn(f"{shown}: keyring returned an empty password")
        if stderr:
            learnt = [creds.password] if creds is not None else []
            # Whatever keyring printed on stdout may be a secret even when we rejected it.
            learnt += [line.strip() for line in stdout.splitlines() if line.strip()]
            names = [username, creds.username if creds is not None else None]
            echo_stderr(redact_text(stderr, learnt, usernames=names))
        return creds, detail

    def knows_host(self, scheme: str, host: str, port: int) -> bool:
        return False

