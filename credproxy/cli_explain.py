"""`credproxy explain URL`: which source would answer for URL, redacted. Sends nothing
upstream (the keyring may be asked, as the proxy would ask it)."""

from __future__ import annotations

import logging
import os
import sys

import click


def _fail(message: str) -> "NoReturn":  # noqa: F821
    click.echo(f"credproxy: error: {message}", err=True)
    sys.exit(2)


def _env_settings(config_file: str | None):
    """Settings from the environment (and a minimal read of --config) for as long as
    credproxy.config has no load_settings; the integrator switches to it."""
    import tomllib

    from .config import ConfigError, Settings
    from .credentials.index import Index

    env = dict(os.environ)
    indexes: list[Index] = []
    provider = env.get("UV_KEYRING_PROVIDER") or "disabled"
    if config_file is not None:
        try:
            with open(config_file, "rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{config_file}: cannot read config: {type(e).__name__}") from None
        provider = data.get("keyring-provider", provider)
        for table in data.get("index", []):
            indexes.append(Index.from_url(
                table["url"], name=table.get("name"), authenticate=table.get("authenticate", "auto"),
                username=table.get("username"), origin=config_file,
            ))
    for item in (env.get("UV_INDEX") or "").split():
        name, sep, url = item.partition("=")
        indexes.append(Index.from_url(url, name=name, origin="UV_INDEX") if sep and "://" not in name
                       else Index.from_url(item, origin="UV_INDEX"))
    for var in ("UV_DEFAULT_INDEX", "UV_INDEX_URL"):
        if env.get(var):
            indexes.append(Index.from_url(env[var], origin=var))
    for url in (env.get("UV_EXTRA_INDEX_URL") or "").split():
        indexes.append(Index.from_url(url, origin="UV_EXTRA_INDEX_URL"))
    return Settings(indexes=indexes, keyring_provider=provider, env=env)


def _settings(config_file: str | None):
    from . import config as config_module

    load = getattr(config_module, "load_settings", None)
    try:
        if load is not None:
            return load(config_file=config_file)
        return _env_settings(config_file)
    except config_module.ConfigError as e:
        _fail(str(e))


@click.command()
@click.argument("url")
@click.option("--username", "-u", default=None, help="Look up credentials for this username.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None, help="Config file (TOML).")
def explain(url: str, username: str | None, config_file: str | None) -> None:
    """Show which credential source would answer for URL, and what would be sent (redacted).

    Nothing is sent to URL."""
    from .credentials.model import redact_text
    from .credentials.resolver import Resolver

    logging.basicConfig(level=logging.WARNING, format="credproxy: warning: %(message)s", stream=sys.stderr)
    settings = _settings(config_file)
    for warning in getattr(settings, "warnings", []) or []:
        click.echo(f"credproxy: warning: {warning}", err=True)
    resolver = Resolver(settings)
    try:
        explanation = resolver.explain(url, username=username)
    except ValueError as e:  # the message never quotes the URL (it may hold a password)
        _fail(str(e))
    finally:
        resolver.close()
    text = explanation.render()
    text += _tls_lines(settings, url, text.endswith("\n"))
    # Belt and braces: nothing in the rendering should hold a secret; mask any that does.
    secrets = [a.credentials.secret for a in explanation.answers if a.credentials is not None]
    names = [a.credentials.username for a in explanation.answers if a.credentials is not None]
    click.echo(redact_text(text, secrets, usernames=names))


def _tls_lines(settings, url: str, explanation_ends_with_newline: bool) -> str:
    """The upstream TLS settings for the URL's host (roots, client cert, insecure), as the
    proxy would apply them (credproxy.tlsrules)."""
    from urllib.parse import urlsplit

    from .tlsrules import describe, format_description

    try:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            return ""
        text = format_description(describe(settings, parts.hostname, parts.port or 443), style="fields")
    except Exception as e:  # noqa: BLE001 - a TLS description problem must not hide the rest
        text = f"tls:             could not describe ({type(e).__name__})"
    return text if explanation_ends_with_newline else "\n" + text


def register(main: click.Group) -> None:
    main.add_command(explain)
