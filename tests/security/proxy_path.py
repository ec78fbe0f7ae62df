"""The proxy-path attacks' preset (issue 9 findings 2, 5, 6, 8, 9) of
tests.helpers.upstream.World: an HTTPS upstream that records what each request arrived with (TLS
server name, Host, Authorization), a real `credproxy serve`, and a raw client that writes exactly
the bytes a test wants through a CONNECT tunnel. Any wrong credential is answered 401.

    with PathWorld(tmp_path, netrc="machine pkgs.test login alice password SECRET\\n") as w:
        w.start()
        reply = w.raw_request("pkgs.test", b"GET /private/x HTTP/1.1\\r\\nHost: evil.test\\r\\n\\r\\n")
        w.upstream.requests -> [Seen(sni, host, path, authorization), ...]

The upstream's paths are listed in tests/helpers/upstream.py.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import upstream
from tests.helpers.proxy_client import RawReply, drain_response, read_response  # noqa: F401 (imported from here)
from tests.helpers.upstream import Seen  # noqa: F401

USER = "alice"
SECRET = "Pr0xy-path/s3cr3t+&?%z"
NAMES = ("pkgs.test", "evil.test", "other.test")


class PathWorld(upstream.World):
    def __init__(self, tmp: Path, *, netrc: str | None = None, config: str = "",
                 extra_env: dict[str, str] | None = None):
        super().__init__(tmp, user=USER, password=SECRET, names=NAMES, netrc=netrc, config=config,
                         extra_env=extra_env, wrong_status=401)
