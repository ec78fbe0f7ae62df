"""The observe e2e tests' preset of tests.helpers.upstream.World: their user, secret and test
names, a netrc for pkgs.test unless the test gives one, 403 for a wrong credential.

    with World(tmp_path, netrc=..., config_extra=...) as w:
        proxy = w.start("--log-format", "json")
        reply = w.get("https://pkgs.test:{port}/private/x")
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import upstream
from tests.helpers.upstream import wait_for  # noqa: F401 (imported from here by tests)

USER = "alice"
SECRET = "N0-leak/s3cr3t+&?%x"  # characters that URL-encoding changes
NAMES = ("pkgs.test", "other.test", "retry.test")


class World(upstream.World):
    def __init__(self, tmp: Path, *, netrc: str | None = None, config_extra: str = "",
                 user: str = USER, password: str = SECRET, extra_env: dict[str, str] | None = None,
                 names: tuple[str, ...] = NAMES):
        if netrc is None:
            netrc = f"machine pkgs.test login {user} password {password}\n"
        super().__init__(tmp, user=user, password=password, names=names, netrc=netrc,
                         config=config_extra, extra_env=extra_env, wrong_status=403)


def leaks(text: str, secret: str = SECRET, user: str = USER) -> list[str]:
    """The forms of the secret that occur in text (raw, URL-encoded, base64 of user:secret)."""
    return upstream.leaks(text, secret, user)
