"""`credproxy ca path|bundle`: the proxy's CA certificate and the combined trust bundle."""

from __future__ import annotations

from pathlib import Path

import click

from .common import _fail, _settings


@click.group()
def ca() -> None:
    """The proxy's CA certificate and the combined trust bundle."""


@ca.command("path")
def ca_path() -> None:
    """Print the proxy CA certificate's path (created on first use); import it elsewhere."""
    from ..certs.ca import CAError, ensure_ca

    try:
        click.echo(str(ensure_ca().cert_file))
    except CAError as e:
        _fail(str(e))


@ca.command("bundle")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Write here instead of the default.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Config file (TOML) whose ca-bundle / system-certs settings add upstream roots.")
def ca_bundle(output, config_file) -> None:
    """Write public roots + configured upstream CA + the proxy CA into one PEM; print its path."""
    from ..certs.bundle import write_bundle
    from ..certs.ca import CAError

    settings = _settings(config_file)
    try:
        click.echo(str(write_bundle(settings, Path(output) if output else None)))
    except (OSError, CAError) as e:
        _fail(str(e))
