"""One hermetic world for the observe e2e tests: a trustme CA, a misbehaving upstream, a netrc,
a config file, and `credproxy serve` as a subprocess with the test names resolved to 127.0.0.1.

    with World(tmp_path, netrc=..., config_extra=...) as w:
        proxy = w.start("--log-format", "json")
        reply = w.get("https://pkgs.test:{port}/private/x")
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import trustme

from credproxy.credentials.model import secret_forms

from .fault_upstream import Upstream
from .proxy_client import Reply, client_context, get
from tests.helpers.proxy import Proxy, credproxy_cmd, hermetic_env, start_credproxy

USER = "alice"
SECRET = "N0-leak/s3cr3t+&?%x"  # characters that URL-encoding changes
NAMES = ("pkgs.test", "other.test", "retry.test")


class World:
    def __init__(self, tmp: Path, *, netrc: str | None = None, config_extra: str = "",
                 user: str = USER, password: str = SECRET, extra_env: dict[str, str] | None = None,
                 names: tuple[str, ...] = NAMES):
        self.tmp = tmp
        self.ca = trustme.CA()
        self.ca_pem = tmp / "upstream-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_pem))
        self.upstream = Upstream(ca=self.ca, user=user, password=password,
                                 names=(*names, "localhost", "127.0.0.1"))
        self.port = self.upstream.port
        resolve = ",".join(f"{n}=127.0.0.1" for n in names)
        self.env = hermetic_env(tmp, CREDPROXY_TEST_RESOLVE=resolve, **(extra_env or {}))
        self.home = Path(self.env["HOME"])
        if netrc is None:
            netrc = f"machine pkgs.test login {user} password {password}\n"
        self.netrc_path = self.home / ".netrc"
        self.netrc_path.write_text(netrc.replace("{port}", str(self.port)))
        os.chmod(self.netrc_path, 0o600)
        self.config = Path(self.env["CREDPROXY_CONFIG"])
        self.config.write_text(f'ca-bundle = "{self.ca_pem}"\n' + config_extra.replace("{port}", str(self.port)))
        self.proxy: Proxy | None = None
        self._started = 0
        self._context = None

    def url(self, host: str, path: str) -> str:
        return self.upstream.url(host, path)

    def start(self, *args: str) -> Proxy:
        self.stop()
        self._started += 1
        self.proxy = start_credproxy(self.tmp, *args, env=self.env, name=f"proxy-{self._started}", timeout=30)
        return self.proxy

    @property
    def proxy_ca(self) -> str:
        return str(Path(self.env["CREDPROXY_DATA_DIR"]) / "ca" / "mitmproxy-ca-cert.pem")

    @property
    def context(self):
        """Trusts the proxy's CA (intercepted hosts) and the upstream's (passthrough)."""
        if self._context is None:
            self._context = client_context(self.proxy_ca, str(self.ca_pem))
        return self._context

    def get(self, host: str, path: str, **kw) -> Reply:
        assert self.proxy is not None
        return get(self.proxy, self.url(host, path), self.context, **kw)

    def cli(self, *args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(credproxy_cmd(*args), env=env or self.env, capture_output=True, text=True,
                              timeout=timeout)

    def stop(self) -> str:
        """Stop the proxy; return everything it wrote to stderr (the request log)."""
        if self.proxy is None:
            return ""
        self.proxy.stop()
        text = self.proxy.stderr()
        self.proxy = None
        return text

    def close(self) -> None:
        self.stop()
        self.upstream.close()

    def __enter__(self) -> "World":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def leaks(text: str, secret: str = SECRET, user: str = USER) -> list[str]:
    """The forms of the secret that occur in text (raw, URL-encoded, base64 of user:secret)."""
    return [form for form in secret_forms(secret, user) if form in text]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
