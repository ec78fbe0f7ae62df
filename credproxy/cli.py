"""The `credproxy` command line (click). Commands stay thin: they parse, call the core or the
proxy, and print. Errors are one line on stderr and exit code 2 (uv's convention)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="credproxy")
def main() -> None:
    """A local authenticating proxy for package registries.

    Point any client at it with `eval "$(credproxy env)"`, or run one command through it with
    `credproxy run -- pip install ...`; requests to your registries get credentials from your
    index configuration, UV_INDEX_<NAME>_USERNAME/PASSWORD, ~/.netrc, `credproxy auth login`
    or the keyring."""


@main.group()
def auth() -> None:
    """Manage stored credentials (uv-compatible credentials.toml)."""


# --- proxy commands (serve, run, env, ca) ---------------------------------------------------


def _fail(message: str) -> "NoReturn":  # noqa: F821
    click.echo(f"credproxy: error: {message}", err=True)
    sys.exit(2)


def _load_settings(config_file: str | None = None, **overrides):
    """Settings from the config layer when present; flags given on the command line win.
    Raises ConfigError."""
    from . import config as config_module

    overrides = {k: v for k, v in overrides.items() if v is not None}
    load = getattr(config_module, "load_settings", None)
    if load is not None:
        return load(config_file=config_file, overrides=overrides)
    settings = config_module.Settings()
    for key, value in overrides.items():
        setattr(settings, key, value)
    return settings


def _settings(config_file: str | None = None, **overrides):
    """_load_settings, exiting with the config error's message."""
    from . import config as config_module

    try:
        return _load_settings(config_file, **overrides)
    except config_module.ConfigError as e:
        _fail(str(e))


_project_option = click.option(
    "--project", "project", type=click.Path(file_okay=False), default=None, metavar="DIR",
    help="Also import this project's uv settings (uv.toml / [tool.uv]); never read from the current directory "
         "otherwise. A project adds indexes but cannot rebind yours.")


def _announce(settings) -> None:
    """Start-up lines every command that runs the proxy prints on stderr: what a project
    added (opt-in, so the user sees what it brought) and the warnings."""
    for line in getattr(settings, "project_report", []) or []:
        click.echo(f"credproxy: {line}", err=True)
    for warning in getattr(settings, "warnings", []) or []:
        click.echo(f"credproxy: warning: {warning}", err=True)


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
    from .config import ConfigError
    from .tlsrules import build_plan

    try:
        build_plan(settings)
    except ConfigError as e:
        _fail(str(e))


def _check_remember(settings) -> None:
    """--remember-exclude patterns parse (a one-line error, before the proxy starts)."""
    from . import tlsrules
    from .config import ConfigError

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


def _proxyauth_pair(proxyauth_file):
    """The --proxyauth-file / CREDPROXY_PROXYAUTH pair (warnings printed), or None."""
    from .proxy.token import TokenError, configured_pair

    try:
        pair, warnings = configured_pair(proxyauth_file)
    except TokenError as e:
        _fail(str(e))
    for warning in warnings:
        click.echo(f"credproxy: warning: {warning}", err=True)
    return pair


def _serve_setup(host, port, config_file, project, intercept_all, proxyauth, log_format, save_flows, verbose,
                 proxyauth_file=None, remember=None, remember_exclude=(), **tls_flags):
    from .proxy.master import ServeConfig, configure_logging

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


@main.command()
@_serve_options
def serve(host, port, config_file, project, intercept_all, proxyauth, log_format, save_flows, verbose,
          **tls_flags) -> None:
    """Run the proxy (127.0.0.1:8899 by default) until Ctrl-C or SIGTERM.

    Only clients that send your proxy token may use it (others get 407): point them at it with
    eval "$(credproxy env)", which puts the token in HTTPS_PROXY."""
    from .proxy.master import ServeError, serve_forever

    settings, config = _serve_setup(host, port, config_file, project, intercept_all, proxyauth, log_format, save_flows,
                                    verbose, **tls_flags)
    try:
        serve_forever(settings, config, reload_settings=config.reload_settings, config_file=config_file)
    except ServeError as e:
        _fail(str(e))


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@_serve_options(run=True)
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def run(host, port, config_file, project, intercept_all, proxyauth, log_format, save_flows, verbose, command,
        **tls_flags) -> None:
    """Run one command through an ephemeral proxy: credproxy run -- pip install ...

    The proxy listens on a free loopback port for as long as the command runs. The request
    log goes to a file named on stderr at the end (-v: on stderr); warnings show as they
    happen."""
    from .proxy.master import ServeError
    from .proxy.run import run_command

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


@main.command()
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

    from .certs.bundle import write_bundle
    from .proxy.envvars import proxy_url, registry_urls, render, restore_environment, shell_environment
    from .proxy.token import TokenError, ensure_token

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


@main.group()
def ca() -> None:
    """The proxy's CA certificate and the combined trust bundle."""


@ca.command("path")
def ca_path() -> None:
    """Print the proxy CA certificate's path (created on first use); import it elsewhere."""
    from .certs.ca import CAError, ensure_ca

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
    from .certs.bundle import write_bundle
    from .certs.ca import CAError

    settings = _settings(config_file)
    try:
        click.echo(str(write_bundle(settings, Path(output) if output else None)))
    except (OSError, CAError) as e:
        _fail(str(e))


@main.command()
@click.argument("url", required=False)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None, help="Config file (TOML).")
@click.option("--host", default=None, help="The proxy's address to check (default from config, else 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="The proxy's port to check (default 8899).")
@_project_option
def doctor(url, config_file, host, port, project) -> None:
    """Check the set-up (proxy, CA, shell variables, config, indexes); with URL, one real
    request. Every problem comes with the command that fixes it; exit 1 when there is one."""
    import os

    from .doctor import run_doctor, url_problem
    from .proxy.master import build_resolver

    if url is not None and (problem := url_problem(url)) is not None:
        _fail(problem)  # before anything else, like `explain`
    from .config import ConfigError, Settings, load_settings

    overrides = {k: v for k, v in {"host": host, "port": port, "project": project}.items() if v is not None}
    resolver = config_error = None
    try:
        settings = load_settings(config_file=config_file, overrides=overrides)
    except ConfigError as e:  # one failed check with its fix; the other checks still run
        settings, config_error = Settings(), str(e)
        settings.host, settings.port = host or settings.host, port or settings.port
    if config_error is None:
        try:
            resolver = build_resolver(settings)
        except Exception as e:  # a broken source must not stop the other checks from running
            _fail(f"cannot build the credential chain: {type(e).__name__}: {e}")
    report = run_doctor(settings, resolver, url, env=os.environ, config_error=config_error)
    click.echo(report.render(), nl=False)
    sys.exit(1 if report.problems else 0)


# auth login/logout/token/dir live in cli_auth.py (one file per concern)
from .cli_auth import register as _register_auth_commands  # noqa: E402

_register_auth_commands(auth)

# explain lives in cli_explain.py
from .cli_explain import register as _register_explain  # noqa: E402

_register_explain(main)

# service install/uninstall/status and status live in cli_service.py
from .cli_service import register as _register_service  # noqa: E402

_register_service(main)


if __name__ == "__main__":  # pragma: no cover
    main()
