"""The environment layer: UV_INDEX*, UV_KEYRING_PROVIDER, UV_INSECURE_HOST, UV_SYSTEM_CERTS,
CREDPROXY_KEYRING_TIMEOUT and the SSL_* variables, as uv reads them."""

from __future__ import annotations

from typing import Mapping

from ..credentials.index import Index, valid_index_name
from .model import KEYRING_PROVIDERS, UV_KEYRING_PROVIDERS, ConfigError, Layer, Settings
from .values import (BOOL_FALSE, BOOL_TRUE, env_value, one_of, parse_boolish, positive_seconds, quote, safe_url,
                     url_problem, url_scheme)


def parse_index_arg(value: str) -> tuple[str | None, str]:
    """uv's `--index`/UV_INDEX item: `name=url` when the part before the first `=` has no `:`
    (so a URL with `=` in its query stays whole), else a bare URL."""
    name, sep, url = value.partition("=")
    if sep and ":" not in name:
        return name, url
    return None, value


def env_layer(env: Mapping[str, str], settings: Settings) -> Layer:
    layer = Layer()
    problems: list[str] = []

    # uv accepts only disabled|subprocess (`native` makes uv exit 2): the OS keyring has its
    # own switch, CREDPROXY_KEYRING_PROVIDER, which wins
    if (v := env_value(env, "CREDPROXY_KEYRING_PROVIDER")) is not None:
        if v in KEYRING_PROVIDERS:
            layer.keyring_provider = v
        else:
            problems.append(f"CREDPROXY_KEYRING_PROVIDER: expected {one_of(KEYRING_PROVIDERS)}, got {quote(v)}")
    elif (v := env_value(env, "UV_KEYRING_PROVIDER")) is not None:
        if v in UV_KEYRING_PROVIDERS:
            layer.keyring_provider = v
        elif v == "native":
            layer.keyring_provider = v
            settings.warnings.append(
                "UV_KEYRING_PROVIDER=native makes uv fail (uv accepts \"disabled\" or \"subprocess\"): "
                "unset it and set CREDPROXY_KEYRING_PROVIDER=native (uv itself reads the OS keyring with "
                "UV_PREVIEW_FEATURES=native-auth)")
        else:
            problems.append(f"UV_KEYRING_PROVIDER: expected {one_of(UV_KEYRING_PROVIDERS)}, got {quote(v)} "
                            "(for the OS keyring: CREDPROXY_KEYRING_PROVIDER=native)")

    if (v := env_value(env, "CREDPROXY_KEYRING_TIMEOUT")) is not None:
        try:
            seconds = float(v)
        except ValueError:
            seconds = -1.0
        if positive_seconds(seconds):
            layer.keyring_timeout = seconds
        else:
            problems.append(f"CREDPROXY_KEYRING_TIMEOUT: expected a positive number of seconds, got {quote(v)}")

    if (v := env_value(env, "CREDPROXY_REQUEST_HEAD_TIMEOUT")) is not None:
        try:
            seconds = float(v)
        except ValueError:
            seconds = -1.0
        if positive_seconds(seconds):
            layer.request_head_timeout = seconds
        else:
            problems.append(f"CREDPROXY_REQUEST_HEAD_TIMEOUT: expected a positive number of seconds, got {quote(v)}")

    if (v := env_value(env, "CREDPROXY_UPSTREAM_PROXY_CONNECT_TIMEOUT")) is not None:
        try:
            seconds = float(v)
        except ValueError:
            seconds = -1.0
        if positive_seconds(seconds):
            layer.upstream_proxy_connect_timeout = seconds
        else:
            problems.append("CREDPROXY_UPSTREAM_PROXY_CONNECT_TIMEOUT: expected a positive number of seconds, "
                            f"got {quote(v)}")

    if (v := env_value(env, "UV_INSECURE_HOST")) is not None:
        layer.allow_insecure_host = v.split()

    for var in ("UV_SYSTEM_CERTS", "UV_NATIVE_TLS"):
        if (v := env_value(env, var)) is None:
            continue
        b = parse_boolish(v)
        if b is None:
            problems.append(f"{var}: expected a boolean ({', '.join(BOOL_TRUE)} or "
                            f"{', '.join(BOOL_FALSE)}), got {quote(v)}")
            continue
        if var == "UV_NATIVE_TLS":
            settings.warnings.append("UV_NATIVE_TLS is deprecated; use UV_SYSTEM_CERTS instead")
        if layer.system_certs is None:  # UV_SYSTEM_CERTS wins over its deprecated alias
            layer.system_certs = b

    items: list[tuple[str, str]] = []  # (variable, item)
    for var, split in (("UV_INDEX", True), ("UV_DEFAULT_INDEX", False),
                       ("UV_INDEX_URL", False), ("UV_EXTRA_INDEX_URL", True)):
        if (v := env_value(env, var)) is not None:
            items += [(var, item) for item in (v.split() if split else [v.strip()])]
    for var, item in items:
        named = var in ("UV_INDEX", "UV_DEFAULT_INDEX")  # the *_INDEX_URL forms take a URL only
        name, url = parse_index_arg(item) if named else (None, item)
        if name is not None and not (name.isascii() and valid_index_name(name)):
            problems.append(f"{var}: expected index names of ASCII letters, digits, `.`, `_` or `-`, "
                            f"got {quote(name)}")
            continue
        if url_scheme(url) not in ("http", "https"):
            # a local directory or file:// index: nothing for a proxy to authenticate
            settings.notes.append(f"{var}: ignored {safe_url(url)} (not an http(s) index)")
            continue
        if (why := url_problem(url)) is not None:
            problems.append(f"{var}: expected {why}, got {quote(safe_url(url))}")
            continue
        layer.indexes.append(Index.from_url(url, name=name, origin=f"env:{var}"))

    if problems:
        if len(problems) == 1:
            raise ConfigError(f"environment variable {problems[0]}")
        raise ConfigError("environment variables:\n" + "\n".join("  " + x for x in problems))

    for attr, var in (("ssl_cert_file", "SSL_CERT_FILE"), ("ssl_cert_dir", "SSL_CERT_DIR"),
                      ("ssl_client_cert", "SSL_CLIENT_CERT")):
        if getattr(settings, attr) is None:  # a flag already set it
            setattr(settings, attr, env_value(env, var))
    return layer

