"""What the commands share: the one-line error and exit code 2 (uv's convention), loading the
settings with the command line's flags on top, `--project`, the start-up report, and the
--proxyauth-file / CREDPROXY_PROXYAUTH pair."""

from __future__ import annotations

import sys
from typing import NoReturn

import click


def _fail(message: str) -> "NoReturn":  # noqa: F821
    click.echo(f"credproxy: error: {message}", err=True)
    sys.exit(2)


def _load_settings(config_file: str | None = None, **overrides):
    """Settings from every layer (credproxy.config); flags given on the command line (not
    None) win. Raises ConfigError."""
    from ..config import load_settings

    return load_settings(config_file=config_file,
                         overrides={k: v for k, v in overrides.items() if v is not None})


def _settings(config_file: str | None = None, **overrides):
    """_load_settings, exiting with the config error's message."""
    from ..config import ConfigError

    try:
        return _load_settings(config_file, **overrides)
    except ConfigError as e:
        _fail(str(e))


_project_option = click.option(
    "--project", "project", type=click.Path(file_okay=False), default=None, metavar="DIR",
    help="Also import this project's uv settings (uv.toml / [tool.uv]); never read from the current directory "
         "otherwise. A project adds indexes but cannot rebind yours.")


def _announce(settings) -> None:
    """Start-up lines `serve`, `run` and `explain` print on stderr: what a project added
    (opt-in, so the user sees what it brought) and the settings' warnings."""
    for line in getattr(settings, "project_report", []) or []:
        click.echo(f"credproxy: {line}", err=True)
    for warning in getattr(settings, "warnings", []) or []:
        click.echo(f"credproxy: warning: {warning}", err=True)


def _proxyauth_pair(proxyauth_file):
    """The --proxyauth-file / CREDPROXY_PROXYAUTH pair (warnings printed), or None."""
    from ..proxy.token import TokenError, configured_pair

    try:
        pair, warnings = configured_pair(proxyauth_file)
    except TokenError as e:
        _fail(str(e))
    for warning in warnings:
        click.echo(f"credproxy: warning: {warning}", err=True)
    return pair
