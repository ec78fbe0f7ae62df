"""The environment layer: UV_INDEX*, UV_KEYRING_PROVIDER, UV_INSECURE_HOST, UV_SYSTEM_CERTS,
CREDPROXY_KEYRING_TIMEOUT and the SSL_* variables, as uv reads them. A variable that sets a
config key is declared with the key (keys.py `env=`) and parsed by the key's kind."""

from __future__ import annotations

from typing import Mapping

from ..credentials.index import Index, valid_index_name
from .keys import INVALID, TOP_KEYS
from .model import UV_KEYRING_PROVIDERS, ConfigError, Layer, Settings
from .values import Problems, env_value, one_of, quote, safe_url, url_problem, url_scheme


def parse_index_arg(value: str) -> tuple[str | None, str]:
    """uv's `--index`/UV_INDEX item: `name=url` when the part before the first `=` has no `:`
    (so a URL with `=` in its query stays whole), else a bare URL."""
    name, sep, url = value.partition("=")
    if sep and ":" not in name:
        return name, url
    return None, value


def env_layer(env: Mapping[str, str], settings: Settings) -> Layer:
    layer = Layer()
    problems = Problems("environment")

    for key in TOP_KEYS:  # the keys a variable sets, as keys.py declares them
        if key.env is None:
            continue
        if key.name == "keyring-provider" and env_value(env, key.env) is None:
            _uv_keyring_provider(env, layer, problems, settings)
            continue
        for var in (key.env, key.env_alias):
            if var is None or (v := env_value(env, var)) is None:
                continue
            value = key.kind.parse_env(v)
            if value is INVALID:
                problems.add(var, key.kind.env_expected, v, show_value=not key.secret)
                continue
            if var == key.env_alias:
                settings.warnings.append(f"{var} is deprecated; use {key.env} instead")
                if getattr(layer, key.attr) is not None:  # the variable wins over its deprecated alias
                    continue
            setattr(layer, key.attr, value)

    items: list[tuple[str, str]] = []  # (variable, item)
    for var, split in (("UV_INDEX", True), ("UV_DEFAULT_INDEX", False),
                       ("UV_INDEX_URL", False), ("UV_EXTRA_INDEX_URL", True)):
        if (v := env_value(env, var)) is not None:
            items += [(var, item) for item in (v.split() if split else [v.strip()])]
    for var, item in items:
        named = var in ("UV_INDEX", "UV_DEFAULT_INDEX")  # the *_INDEX_URL forms take a URL only
        name, url = parse_index_arg(item) if named else (None, item)
        if name is not None and not (name.isascii() and valid_index_name(name)):
            problems.add(var, "index names of ASCII letters, digits, `.`, `_` or `-`", name)
            continue
        if url_scheme(url) not in ("http", "https"):
            # a local directory or file:// index: nothing for a proxy to authenticate
            settings.notes.append(f"{var}: ignored {safe_url(url)} (not an http(s) index)")
            continue
        if (why := url_problem(url)) is not None:
            problems.add(var, why, safe_url(url))
            continue
        layer.indexes.append(Index.from_url(url, name=name, origin=f"env:{var}"))

    if len(problems.items) == 1:
        raise ConfigError(f"environment variable {problems.items[0]}")
    if problems.items:
        raise ConfigError("environment variables:\n" + "\n".join("  " + x for x in problems.items))

    for attr, var in (("ssl_cert_file", "SSL_CERT_FILE"), ("ssl_cert_dir", "SSL_CERT_DIR"),
                      ("ssl_client_cert", "SSL_CLIENT_CERT")):
        if getattr(settings, attr) is None:  # a flag already set it
            setattr(settings, attr, env_value(env, var))
    return layer



def _uv_keyring_provider(env: Mapping[str, str], layer: Layer, problems: Problems, settings: Settings) -> None:
    """UV_KEYRING_PROVIDER, below CREDPROXY_KEYRING_PROVIDER. uv accepts only disabled|subprocess
    (`native` makes uv exit 2): the OS keyring has its own switch, CREDPROXY_KEYRING_PROVIDER."""
    if (v := env_value(env, "UV_KEYRING_PROVIDER")) is None:
        return
    if v in UV_KEYRING_PROVIDERS:
        layer.keyring_provider = v
    elif v == "native":
        layer.keyring_provider = v
        settings.warnings.append(
            "UV_KEYRING_PROVIDER=native makes uv fail (uv accepts \"disabled\" or \"subprocess\"): "
            "unset it and set CREDPROXY_KEYRING_PROVIDER=native (uv itself reads the OS keyring with "
            "UV_PREVIEW_FEATURES=native-auth)")
    else:
        problems.items.append(f"UV_KEYRING_PROVIDER: expected {one_of(UV_KEYRING_PROVIDERS)}, got {quote(v)} "
                              "(for the OS keyring: CREDPROXY_KEYRING_PROVIDER=native)")
