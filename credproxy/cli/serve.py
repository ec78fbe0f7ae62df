"""`credproxy serve` and `credproxy run`: their options, and the checks made before the proxy
starts (one-line errors, not a traceback from inside the proxy). The proxy itself is
credproxy.proxy (master.serve_forever, run.run_command)."""

from __future__ import annotations

import sys

import click

from .common import _announce, _fail, _load_settings, _project_option, _proxyauth_pair, _settings


def _serve_options(f=None, *, run: bool = False):
    """The options of `serve` and `run`, listed in --help in this order. `serve` also takes
    its port from CREDPROXY_PORT (as `env` does), `run` never: it picks a free one."""
    if f is None:
        return lambda g: _serve_options(g, run=run)
    port_help = ("Listen port (default: a free one, so runs never collide)." if run
                 else "Listen port (default $CREDPROXY_PORT, else 8899; 0 picks a free one).")
    verbose_help = ("Show the request log on stderr instead of a file (-vv: connections and decisions)." if run
                    else "Add why no credential was sent to the request log, which is on without it "
                         "(-vv: connections and decisions).")
    options = [
        click.option("--host", default=None, help="Listen address (default 127.0.0.1; non-loopback needs --proxyauth-file)."),
        click.option("--port", type=click.IntRange(0, 65535), default=None, envvar=None if run else "CREDPROXY_PORT",
                     help=port_help),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None, help="Config file (TOML)."),
        _project_option,
        click.option("--intercept-all", is_flag=True, default=False, help="Intercept TLS for every host (debugging)."),
        click.option("--proxyauth-file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="Clients must send the USER:TOKEN in FILE (chmod 600) instead of the per-user "
                          "proxy token; or set CREDPROXY_PROXYAUTH=USER:TOKEN."),
        # refused: a secret on the command line is visible to every user (ps)
        click.option("--proxyauth", default=None, metavar="USER:TOKEN", hidden=True),
        click.option("--log-format", type=click.Choice(["text", "json"]), default=None, help="Request log format."),
        click.option("--save-flows", type=click.Path(dir_okay=False), default=None, help="Save redacted flows to FILE."),
        click.option("-v", "--verbose", count=True, help=verbose_help),
        # upstream TLS, as uv spells them
        click.option("--allow-insecure-host", "--trusted-host", "allow_insecure_host", multiple=True,
                     metavar="HOST[:PORT]", help="Skip upstream certificate checks for this host (repeatable)."),
        click.option("--system-certs", is_flag=True, default=None, help="Verify upstream servers with the OS trust store."),
        click.option("--native-tls", is_flag=True, default=None, hidden=True, help="Deprecated alias of --system-certs."),
        click.option("--remember", is_flag=True, default=None,
                     help="Store credentials a client sent itself that the server accepted, so the next "
                          "client needs none (the store, or the OS keyring with the native store on)."),
        click.option("--remember-exclude", "remember_exclude", multiple=True, metavar="HOST[:PORT]",
                     help="Never remember credentials for this host (`host`, `*.suffix`, `host:port`; repeatable)."),
        # egress through the company proxy (default: HTTPS_PROXY & co from serve's environment)
        click.option("--upstream-proxy", "upstream_proxy", default=None, metavar="URL",
                     help="Send upstream traffic through this company proxy (http://[user:password@]host:port), "
                          "or the one a PAC file names per host (pac+https://…, pac+file:///…; the pac extra); "
                          "overrides HTTPS_PROXY/HTTP_PROXY/ALL_PROXY; NO_PROXY still applies."),
        click.option("--no-upstream-proxy", "no_upstream_proxy", is_flag=True, default=False,
                     help="Connect to every host directly, whatever HTTPS_PROXY & co say."),
    ]
    for option in reversed(options):  # click lists the last-applied decorator first
        f = option(f)
    return f


def _check_upstream_tls(settings) -> None:
    """Validate the upstream TLS settings (client-cert PEMs, host patterns) before starting:
    a one-line error naming the file, not a traceback from inside the proxy. The plan itself
    (tlsrules, no mitmproxy); the proxy turns it into mitmproxy's options when it starts."""
    from ..config import ConfigError
    from ..tlsrules import build_plan

    try:
        build_plan(settings)
    except ConfigError as e:
        _fail(str(e))


def _check_remember(settings) -> None:
    """--remember-exclude patterns parse (a one-line error, before the proxy starts)."""
    from .. import tlsrules
    from ..config import ConfigError

    try:
        tlsrules.parse_host_patterns(getattr(settings, "remember_exclude", []) or [], "--remember-exclude")
    except ConfigError as e:
        _fail(str(e))


def _tls_overrides(allow_insecure_host=(), system_certs=None, native_tls=None) -> dict:
    """Settings overrides from the upstream-TLS flags (None = not given)."""
    if native_tls and not system_certs:
        click.echo("credproxy: warning: --native-tls is deprecated; use --system-certs", err=True)
        system_certs = True
    return {"allow_insecure_host": list(allow_insecure_host) or None, "system_certs": system_certs}


_PROXYAUTH_ON_ARGV = (
    "--proxyauth on the command line shows the token to every user of this machine (ps, "
    "/proc/PID/cmdline); put USER:TOKEN in a file (chmod 600 FILE) and pass --proxyauth-file FILE, "
    "or set CREDPROXY_PROXYAUTH=USER:TOKEN in the environment")


def _serve_setup(host, port, config_file, project, intercept_all, proxyauth, log_format, save_flows, verbose,
                 proxyauth_file=None, remember=None, remember_exclude=(), **tls_flags):
    from ..proxy.master import ServeConfig, configure_logging

    if proxyauth is not None:
        _fail(_PROXYAUTH_ON_ARGV)
    pair = _proxyauth_pair(proxyauth_file)
    upstream_proxy = tls_flags.pop("upstream_proxy", None)
    if tls_flags.pop("no_upstream_proxy", False):
        if upstream_proxy:
            _fail("--upstream-proxy and --no-upstream-proxy contradict each other; give one")
        upstream_proxy = "none"
    overrides = dict(
        host=host, port=port, log_format=log_format, save_flows=save_flows, project=project,
        verbose=verbose or None, intercept="all" if intercept_all else None, upstream_proxy=upstream_proxy,
        remember=remember, remember_exclude=list(remember_exclude) or None,
        **_tls_overrides(**tls_flags),
    )
    settings = _settings(config_file, **overrides)
    _announce(settings)
    configure_logging(getattr(settings, "verbose", 0) or 0)
    _check_upstream_tls(settings)
    _check_remember(settings)
    config = ServeConfig(
        host=host or getattr(settings, "host", None) or "127.0.0.1",
        port=port if port is not None else getattr(settings, "port", 8899),
        proxyauth=f"{pair.user}:{pair.token}" if pair else getattr(settings, "proxyauth", None),
        intercept_all=intercept_all,
    )
    # the same flags over whatever the files say then: what a reload (proxy/reload.py) loads
    config.reload_settings = lambda: _load_settings(config_file, **overrides)
    return settings, config


@click.command()
@_serve_options
def serve(host, port, config_file, project, intercept_all, proxyauth, log_format, save_flows, verbose,
          **tls_flags) -> None:
    """Run the proxy (127.0.0.1:8899 by default) until Ctrl-C or SIGTERM.

    Only clients that send your proxy token may use it (others get 407): point them at it with
    eval "$(credproxy env)", which puts the token in HTTPS_PROXY."""
    from ..proxy.master import ServeError, serve_forever

    settings, config = _serve_setup(host, port, config_file, project, intercept_all, proxyauth, log_format, save_flows,
                                    verbose, **tls_flags)
    try:
        serve_forever(settings, config, reload_settings=config.reload_settings, config_file=config_file)
    except ServeError as e:
        _fail(str(e))


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@_serve_options(run=True)
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def run(host, port, config_file, project, intercept_all, proxyauth, log_format, save_flows, verbose, command,
        **tls_flags) -> None:
    """Run one command through an ephemeral proxy: credproxy run -- pip install ...

    The proxy listens on a free loopback port for as long as the command runs. The request
    log goes to a file named on stderr at the end (-v: on stderr); warnings show as they
    happen."""
    from ..proxy.master import ServeError
    from ..proxy.run import run_command

    settings, config = _serve_setup(host, port, config_file, project, intercept_all, proxyauth, log_format, save_flows,
                                    verbose, **tls_flags)
    if port is None:
        config.port = 0  # ephemeral: a free port unless one was asked for
    config.one_off_token = True  # the child alone gets it (unless a --proxyauth pair is configured)
    if not getattr(config, "host", None) or host is None:
        config.host = "127.0.0.1"
    try:
        code = run_command(settings, config, list(command))
    except ServeError as e:
        _fail(str(e))
    except OSError as e:
        _fail(str(e))
    sys.exit(code)
