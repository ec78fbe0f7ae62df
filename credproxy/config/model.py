"""What configuration produces: Settings (what the proxy runs with), the Layer each source
contributes (flags, environment, config file, an import), ConfigError, and the fixed value sets."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Literal, Mapping

from ..credentials.index import Index
from ..credentials.model import MASK

KeyringProvider = Literal["disabled", "subprocess", "native"]
InterceptPolicy = Literal["auto", "all"]

KEYRING_PROVIDERS = ("disabled", "subprocess", "native")
UV_KEYRING_PROVIDERS = ("disabled", "subprocess")  # what uv itself accepts in UV_KEYRING_PROVIDER
INTERCEPT_POLICIES = ("auto", "all")
NETRC_DEFAULT_SCOPES = ("indexes", "any-host")  # netrc-default: who the `default` entry answers
NETRC_LOOPBACK_SCOPES = ("index-ports", "any-port")  # netrc-loopback: `machine localhost` ports
AUTH_POLICIES = ("auto", "always", "never")
LOG_FORMATS = ("text", "json")


# `[scheme://]userinfo@host` anywhere in a message; a password already shown as ****@ (or a
# `user:****@` as uv displays it) stays as it is
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)?(?P<userinfo>[^\s\"'`<>()\[\]{}@/]+)@")


def mask_userinfo(text: str) -> str:
    """Every `userinfo@` in free text masked (keeping a `user:` before an already masked
    password). The last line of defence for messages; values are masked where they are
    quoted (values.quote), which also handles passwords with spaces or `/`."""

    def mask(m: re.Match) -> str:
        userinfo = m.group("userinfo")
        if userinfo == MASK or userinfo.endswith(":" + MASK):
            return m.group(0)
        return (m.group("scheme") or "") + MASK + "@"

    return _USERINFO.sub(mask, text)


class ConfigError(Exception):
    """A configuration problem the user must fix; the message names file, key and fix.
    Any userinfo in the message is masked (issue 9, finding 9: `got "u:SECRET@host"`)."""

    def __init__(self, message: object = "") -> None:
        super().__init__(mask_userinfo(str(message)))


@dataclass(frozen=True)
class ClientCertRule:
    """`[[client-cert]]`: a host pattern (`host`, `*.suffix`, `host:port`) and one PEM file
    holding the certificate chain and the key."""

    host: str
    cert: str
    origin: str = "config"


@dataclass
class Settings:
    indexes: list[Index] = field(default_factory=list)
    keyring_provider: KeyringProvider = "disabled"
    # seconds a `keyring` command may take before it is killed (a hanging keyring must not
    # hold requests); raise it for keyrings that prompt (a device-code sign-in)
    keyring_timeout: float = 10.0
    # seconds from the first byte of a request head to its end (proxy/limits.py)
    request_head_timeout: float = 30.0
    # seconds to connect to a proxy a PAC file names before its next entry is tried (egress.py)
    upstream_proxy_connect_timeout: float = 5.0
    allow_insecure_host: list[str] = field(default_factory=list)
    system_certs: bool = False
    ca_bundle: str | None = None
    client_certs: list[ClientCertRule] = field(default_factory=list)
    intercept: InterceptPolicy = "auto"
    # serve options
    host: str = "127.0.0.1"
    port: int = 8899
    log_format: Literal["text", "json"] = "text"
    save_flows: str | None = None
    # the request log's file (None = stderr); `credproxy run` sets it so the command's own
    # output stays readable. Not read from the config file or the environment.
    log_file: str | None = None
    verbose: int = 0
    # where things were read from, for `doctor`; warnings to show once at start-up
    config_files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # the environment the sources read (UV_INDEX_*, NETRC, HF_TOKEN, SSL_*); a copy, so tests
    # and `credproxy run` can pass their own. Not in repr: it holds passwords and tokens.
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)
    # `user:password` clients must send as Proxy-Authorization; required to bind off loopback
    proxyauth: str | None = field(default=None, repr=False)
    # SSL_CERT_FILE / SSL_CERT_DIR / SSL_CLIENT_CERT as uv reads them (empty = unset); the
    # upstream TLS code applies them
    ssl_cert_file: str | None = None
    ssl_cert_dir: str | None = None
    ssl_client_cert: str | None = None
    # hosts (`host`, `*.suffix`, `host:port`) intercepted even without a credential source
    intercept_hosts: list[str] = field(default_factory=list)
    # things `-v`/doctor may show but that are not worth a warning (ignored file:// indexes...)
    notes: list[str] = field(default_factory=list)
    # hosts (`host`, `*.suffix`, `host:port`) whose credentials git's own credential helpers
    # (`git credential fill`) may give, after the host asked for them; they are intercepted
    git_credential_hosts: list[str] = field(default_factory=list)
    # the netrc `default` entry answers configured indexes only, or any host (uv's way)
    netrc_default: str = "indexes"
    # a netrc machine entry for a loopback name applies to the ports indexes name, or all
    netrc_loopback: str = "index-ports"
    # `serve --remember`: store credentials a client sent itself that the upstream accepted;
    # never for hosts matching `remember_exclude` (`host`, `*.suffix`, `host:port`)
    remember: bool = False
    remember_exclude: list[str] = field(default_factory=list)
    # uv's native store (the OS keyring under `uv:` service names) in the chain, before a
    # `keyring` command: on with UV_PREVIEW_FEATURES=native-auth (or UV_PREVIEW), as in uv
    native_auth: bool = False
    # `--project DIR` / `project = "DIR"`: a project whose uv/pip settings are imported (opt-in;
    # the working directory's are never read). What it added, for the start-up log.
    project: str | None = None
    project_report: list[str] = field(default_factory=list)
    # the company proxy to chain to (`--upstream-proxy`, `upstream-proxy`): a URL, or "none"
    # (`--no-upstream-proxy`); None = from HTTPS_PROXY & co (credproxy/egress.py). Not in repr:
    # the URL may hold the proxy password. `upstream_proxy_origin` names the flag or file.
    upstream_proxy: str | None = field(default=None, repr=False)
    upstream_proxy_origin: str | None = None


@dataclass
class Layer:
    """What one layer (flags, environment, config file, an import) contributes. None = unset."""

    indexes: list[Index] = field(default_factory=list)
    keyring_provider: str | None = None
    keyring_timeout: float | None = None
    request_head_timeout: float | None = None
    upstream_proxy_connect_timeout: float | None = None
    allow_insecure_host: list[str] = field(default_factory=list)
    system_certs: bool | None = None
    ca_bundle: str | None = None
    intercept: str | None = None
    intercept_hosts: list[str] = field(default_factory=list)
    client_certs: list[ClientCertRule] = field(default_factory=list)
    git_credential_hosts: list[str] = field(default_factory=list)
    project: str | None = None
    netrc_default: str | None = None
    netrc_loopback: str | None = None
    upstream_proxy: tuple[str, str] | None = None  # (URL or "none", where it was set)
