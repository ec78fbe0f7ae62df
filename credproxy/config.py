"""Settings: CLI flags > environment > config file > imported uv/pip configuration.

`load_settings()` is the one entry point. It never raises for a user's mistake except with
`ConfigError`, whose text names the file, the key and what was expected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal, Mapping

from .credentials.index import Index

KeyringProvider = Literal["disabled", "subprocess", "native"]
InterceptPolicy = Literal["auto", "all"]


class ConfigError(Exception):
    """A configuration problem the user must fix; the message names file, key and fix."""


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
    verbose: int = 0
    # where things were read from, for `doctor`; warnings to show once at start-up
    config_files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # the environment the sources read (UV_INDEX_*, NETRC, HF_TOKEN, SSL_*); a copy, so tests
    # and `credproxy run` can pass their own
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
