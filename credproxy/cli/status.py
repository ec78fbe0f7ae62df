"""`credproxy status`: the running proxies, read from the owner-only state file each one keeps
(credproxy/status.py; the proxy writes it with addons/status.py)."""

from __future__ import annotations

import json
import os
import sys

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
def status(as_json: bool) -> None:
    """Show the running proxies: address, uptime, upstream proxy, and per realm the
    credential source, since when it is cached, requests and 401s (nothing secret).

    Read from the owner-only state file each proxy keeps in credproxy's data directory.
    Exit 1 when no proxy is running."""
    from .. import status as status_file

    proxies, problems = status_file.read_all(os.environ)
    for problem in problems:
        click.echo(f"credproxy: warning: {problem}", err=True)
    if as_json:
        click.echo(json.dumps([json.loads(p.to_json()) for p in proxies], indent=1))
    elif not proxies:
        click.echo(f"no credproxy is running as this user (no live state in {status_file.status_dir()}); "
                   "start one with `credproxy serve` or `credproxy service install`")
    else:
        click.echo("\n".join(status_file.render(p) for p in proxies), nl=False)
    sys.exit(0 if proxies else 1)

