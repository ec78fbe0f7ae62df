"""`credproxy doctor [URL]`: the command; the checks and their report are credproxy/doctor.py."""

from __future__ import annotations

import sys

import click

from .common import _fail, _project_option


@click.command()
@click.argument("url", required=False)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None, help="Config file (TOML).")
@click.option("--host", default=None, help="The proxy's address to check (default from config, else 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="The proxy's port to check (default 8899).")
@_project_option
def doctor(url, config_file, host, port, project) -> None:
    """Check the set-up (proxy, CA, shell variables, config, indexes); with URL, one real
    request. Every problem comes with the command that fixes it; exit 1 when there is one."""
    import os

    from ..credentials.resolver import Resolver, default_sources
    from ..doctor import run_doctor, url_problem

    if url is not None and (problem := url_problem(url)) is not None:
        _fail(problem)  # before anything else, like `explain`
    from ..config import ConfigError, Settings, load_settings

    overrides = {k: v for k, v in {"host": host, "port": port, "project": project}.items() if v is not None}
    resolver = config_error = None
    try:
        settings = load_settings(config_file=config_file, overrides=overrides)
    except ConfigError as e:  # one failed check with its fix; the other checks still run
        settings, config_error = Settings(), str(e)
        settings.host, settings.port = host or settings.host, port or settings.port
    if config_error is None:
        try:
            resolver = Resolver(settings, default_sources(settings))  # the chain `serve` builds
        except Exception as e:  # a broken source must not stop the other checks from running
            _fail(f"cannot build the credential chain: {type(e).__name__}: {e}")
    report = run_doctor(settings, resolver, url, env=os.environ, config_error=config_error)
    click.echo(report.render(), nl=False)
    sys.exit(1 if report.problems else 0)
