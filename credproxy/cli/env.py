"""`credproxy env`: the shell variables that send clients through the proxy (and `--unset`)."""

from __future__ import annotations

import click

from .common import _fail, _proxyauth_pair, _settings


@click.command()
@click.option("--shell", "shell", type=click.Choice(["bash", "zsh", "fish", "powershell"]), default="bash", show_default=True)
@click.option("--unset", is_flag=True, help="Print the commands that put back what the last `env` replaced.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Config file (TOML) naming the proxy's host and port, the upstream CA for the bundle, "
                   "and the registries whose hosts stay out of NO_PROXY.")
@click.option("--host", default=None, help="The proxy's address (default from config, else 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, envvar="CREDPROXY_PORT",
              help="The proxy's port (default $CREDPROXY_PORT, else 8899).")
@click.option("--proxyauth-file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="The USER:TOKEN the proxy was started with (else CREDPROXY_PROXYAUTH, else the per-user token).")
def env(shell, unset, config_file, host, port, proxyauth_file) -> None:
    """Print the variables that send clients through the proxy and make them trust it.

    The proxy URL carries your proxy token (http://credproxy:TOKEN@127.0.0.1:8899), created on
    first use in credproxy's data directory; only clients that send it may use the proxy.
    NO_PROXY is merged with yours (loopback added, registries credproxy knows left out); each
    variable replaced is remembered as CREDPROXY_PREVIOUS_<VAR>, and --unset restores it."""
    import os

    from ..certs.bundle import write_bundle
    from ..proxy.envvars import proxy_url, registry_urls, render, restore_environment, shell_environment
    from ..proxy.token import TokenError, ensure_token

    if unset:
        restore, names = restore_environment(os.environ)
        click.echo(render(restore, shell, unset=True, unset_names=names), nl=False)
        return
    settings = _settings(config_file, host=host, port=port)
    host = host or getattr(settings, "host", None) or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"  # listening everywhere; reach it on loopback
    port = port or getattr(settings, "port", None) or 8899
    try:
        bundle = write_bundle(settings)
    except OSError as e:
        _fail(str(e))
    credential = _proxyauth_pair(proxyauth_file)
    if credential is None:
        try:
            credential = ensure_token()
        except TokenError as e:
            _fail(str(e))
    url = proxy_url(host, port, credential)
    variables, dropped = shell_environment(url, bundle, os.environ, registry_urls(settings))
    if dropped:
        click.echo(f"credproxy: note: NO_PROXY without {', '.join(dropped)}: it would send a registry "
                   "credproxy holds credentials for around the proxy", err=True)
    click.echo(render(variables, shell), nl=False)
