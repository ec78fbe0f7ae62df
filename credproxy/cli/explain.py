"""`credproxy explain URL`: which source would answer for URL, redacted. Sends nothing
upstream (the keyring may be asked, as the proxy would ask it)."""

from __future__ import annotations

import logging
import sys

import click

from .common import _announce, _fail, _settings


@click.command()
@click.argument("url")
@click.option("--username", "-u", default=None, help="Look up credentials for this username.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None, help="Config file (TOML).")
@click.option("--project", "project", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Also import this project's uv settings, as `serve --project DIR` would.")
def explain(url: str, username: str | None, config_file: str | None, project: str | None) -> None:
    """Show which credential source would answer for URL, and what would be sent (redacted).

    Nothing is sent to URL."""
    import os

    from ..credentials.model import redact_text
    from ..credentials.resolver import Resolver
    from ..hints import netrc_mode_warning, no_proxy_line

    logging.basicConfig(level=logging.WARNING, format="credproxy: warning: %(message)s", stream=sys.stderr)
    settings = _settings(config_file, project=project)
    _announce(settings)
    if (loose := netrc_mode_warning(getattr(settings, "env", None) or {})) is not None:
        click.echo(f"credproxy: warning: {loose}", err=True)
    resolver = Resolver(settings)
    try:
        explanation = resolver.explain(url, username=username)
        interception = _interception_line(settings, resolver, url)
    except ValueError as e:  # the message never quotes the URL (it may hold a password)
        _fail(str(e))
    finally:
        resolver.close()
    text = explanation.render()
    if not text.endswith("\n"):
        text += "\n"
    text += interception + _proxy_line(url, os.environ, no_proxy_line) + _tls_lines(settings, url, True)
    resolver = Resolver(settings)
    try:
        egress_text, proxy_creds = _egress_lines(settings, resolver, url)
    finally:
        resolver.close()
    text += ("" if text.endswith("\n") else "\n") + egress_text
    # Belt and braces: nothing in the rendering should hold a secret; mask any that does.
    found = [a.credentials for a in explanation.answers if a.credentials is not None] + proxy_creds
    secrets = [c.secret for c in found]
    names = [c.username for c in found]
    click.echo(redact_text(text, secrets, usernames=names))


def _interception_line(settings, resolver, url: str) -> str:
    """Whether the proxy would terminate TLS to the URL's host (credproxy.interception): a
    host passed through gets nothing from any source above, not even on a challenge."""
    from urllib.parse import urlsplit

    from ..config import ConfigError
    from ..interception import InterceptionPolicy
    from ..tlsrules import build_plan

    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return f"{'intercepted:':<17}yes (plain HTTP: every request passes through the proxy's addons)\n"
    try:
        plan = build_plan(settings)
    except ConfigError as e:
        return f"{'intercepted:':<17}unknown (TLS configuration error: {e})\n"
    policy = InterceptionPolicy(settings, plan, lambda h, p: resolver.knows_host("https", h, p))
    decision = policy.decide(parts.hostname, parts.port or 443)
    if decision.intercept:
        return f"{'intercepted:':<17}yes ({decision.reason})\n"
    return (f"{'intercepted:':<17}NO ({decision.reason}): the proxy adds nothing to this host, "
            "not even after a 401; name the index in the config (or pip.conf/uv.toml), or list "
            "the host in intercept-hosts\n")


def _proxy_line(url: str, env, no_proxy_line) -> str:
    """Whether a client in this shell would send the request to the proxy at all: NO_PROXY
    read as pip/requests, uv and curl read it."""
    line = no_proxy_line(url, env)
    if line is None:
        return ""
    return f"{'proxy:':<17}BYPASSED: {line}; run: eval \"$(credproxy env)\" (it keeps registries out of NO_PROXY)\n"


def _tls_lines(settings, url: str, explanation_ends_with_newline: bool) -> str:
    """The upstream TLS settings for the URL's host (roots, client cert, insecure), as the
    proxy would apply them (credproxy.tlsrules)."""
    from urllib.parse import urlsplit

    from ..tlsrules import describe, format_description

    try:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            return ""
        text = format_description(describe(settings, parts.hostname, parts.port or 443), style="fields")
    except Exception as e:  # noqa: BLE001 - a TLS description problem must not hide the rest
        text = f"tls:             could not describe ({type(e).__name__})"
    return text if explanation_ends_with_newline else "\n" + text


def _egress_lines(settings, resolver, url: str) -> tuple[str, list]:
    """Direct or via which company proxy, why, and the login credproxy would give it
    (credproxy/egress.py, the plan the proxy uses). Returns the text and every credential
    found (for the final redaction)."""
    from urllib.parse import urlsplit

    from ..egress import ProxyURLError, build_egress, login_label, proxy_login_explained

    found = []
    try:
        egress = build_egress(settings)
    except ProxyURLError as e:
        return f"{'upstream proxy:':<17}configuration error: {e}\n", found
    parts = urlsplit(url)
    scheme = "http" if parts.scheme == "http" else "https"
    port = parts.port or (80 if scheme == "http" else 443)
    if egress.pac is not None:  # the PAC proxies a running proxy could not connect to
        from ..status import bad_proxy_marks

        egress.apply_marks(bad_proxy_marks(getattr(settings, "env", None)))
    route = egress.route(scheme, parts.hostname or "", port)
    lines = [f"{'upstream proxy:':<17}{route.describe()}"]
    for i, entry in enumerate(egress.pac_lines(scheme, parts.hostname or "", port)):
        lines.append(f"{'pac entries:' if i == 0 else '':<17}{entry}")
    proxy = route.proxy
    if proxy is not None:
        try:
            creds, source, why = proxy_login_explained(proxy, resolver)
        except ValueError as e:
            login = f"not looked up ({e})"
        else:
            if creds is not None:
                found.append(creds)
                login = f"{creds.redacted()} from {login_label(source)}"
            else:
                login = f"none ({why}); a proxy that demands one answers 407"
        lines.append(f"{'proxy login:':<17}{login} (Basic, sent on each CONNECT to the proxy only)")
    for note in egress.notes:
        lines.append(f"{'note:':<17}{note}")
    return "\n".join(lines) + "\n", found

