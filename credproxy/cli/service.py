"""`credproxy service install|uninstall|status` (`credproxy status` is status.py).

The files and their contents come from credproxy/service.py (pure functions) and
credproxy/status.py (the owner-only state file the proxy writes); this module runs the
service manager's commands and prints."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import click

from .. import service as svc
from .common import _fail

TIMEOUT = 30.0


def _run(argv: list[str]) -> tuple[int, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return 127, f"{argv[0]}: not found"
    except (OSError, subprocess.TimeoutExpired) as e:
        return 1, str(e)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def _systemd_reachable() -> bool:
    """The user's service manager answers (not the case in most containers or over plain su)."""
    code, _ = _run(["systemctl", "--user", "show-environment"])
    return code == 0


def _check_serve_args(args: tuple[str, ...]) -> None:
    """Reject serve options that do not parse, and a secret on the command line."""
    from .serve import serve

    if any(a == "--proxyauth" or a.startswith("--proxyauth=") for a in args):
        _fail("--proxyauth is a secret and would be written into the service file; use "
              "--proxyauth-file FILE (chmod 600) instead, or nothing: the per-user proxy token applies")
    for i, a in enumerate(args):
        value = a.partition("=")[2] if a.startswith("--upstream-proxy=") else (
            args[i + 1] if a == "--upstream-proxy" and i + 1 < len(args) else None)
        if value is not None and svc.has_userinfo(value):
            _fail("--upstream-proxy holds a login, which would be written into the service file; put it in "
                  "~/.netrc (machine <proxy host> login <user> password <password>) and give the URL without it")
    try:
        serve.make_context("serve", list(args), resilient_parsing=False)
    except click.exceptions.Exit:
        pass
    except click.ClickException as e:
        _fail(f"not a `credproxy serve` option set: {e.format_message()}; see `credproxy serve --help`")


@click.group()
def service() -> None:
    """Run the proxy as a per-user service (systemd user unit on Linux, launchd agent on macOS;
    Windows: docs/service.md)."""


@service.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--no-start", is_flag=True, help="Write the unit/agent file only; do not enable or start it.")
@click.argument("serve_args", nargs=-1, type=click.UNPROCESSED)
def install(no_start: bool, serve_args: tuple[str, ...]) -> None:
    """Write the service that runs `credproxy serve SERVE_ARGS...` and start it.

    The service keeps HTTPS_PROXY/HTTP_PROXY/ALL_PROXY/NO_PROXY (the values `credproxy env`
    replaced, when it did), CREDPROXY_CONFIG and the other credproxy paths from this shell;
    never a secret. Example: credproxy service install --system-certs"""
    _check_serve_args(serve_args)
    env = os.environ
    try:
        plan = svc.plan(serve_args, env)
    except svc.ServiceError as e:
        _fail(str(e))
    if plan.platform == "launchd":
        svc.rotate_log(Path(plan.log))
    try:
        svc.write_file(plan.path, svc.render(plan, env))
    except OSError as e:
        _fail(f"cannot write {plan.path}: {e.strerror or e}")
    click.echo(f"wrote {plan.path}")
    if env.get("CREDPROXY_PROXYAUTH"):
        click.echo("  note: CREDPROXY_PROXYAUTH is a secret and is not copied into the service; give the pair "
                   "with --proxyauth-file FILE (chmod 600) if the service must require it")
    click.echo(f"  runs: {' '.join(plan.argv)}")
    if plan.environment:
        click.echo(f"  environment: {', '.join(sorted(plan.environment))}")
    commands = _start_commands(plan)
    if no_start:
        click.echo("not started (--no-start); to start it:")
        click.echo("".join(f"  {' '.join(c)}\n" for c in commands), nl=False)
        return
    if plan.platform == "systemd" and not _systemd_reachable():
        click.echo("the systemd user manager is not reachable from here; run these where it is:")
        click.echo("".join(f"  {' '.join(c)}\n" for c in commands), nl=False)
        return
    for command in commands:
        code, out = _run(command)
        if code != 0 and not (plan.platform == "launchd" and command[1] == "unload"):
            _fail(f"`{' '.join(command)}` failed: {out or f'exit {code}'}")
    click.echo(f"started; logs: {plan.log}; check with `credproxy service status`")


def _start_commands(plan: svc.Plan) -> list[list[str]]:
    if plan.platform == "launchd":
        return [["launchctl", "unload", str(plan.path)], ["launchctl", "load", "-w", str(plan.path)]]
    return [["systemctl", "--user", "daemon-reload"], ["systemctl", "--user", "enable", "--now", svc.UNIT_NAME]]


@service.command()
def uninstall() -> None:
    """Stop the service and remove its unit/agent file."""
    env = os.environ
    kind = svc.platform_kind()
    if kind == "windows":
        _fail("on Windows, remove the task: schtasks /Delete /TN credproxy /F (docs/service.md)")
    path = svc.launchd_plist_path(env) if kind == "launchd" else svc.systemd_unit_path(env)
    if kind == "launchd":
        if path.exists():
            _run(["launchctl", "unload", "-w", str(path)])
    elif _systemd_reachable():
        _run(["systemctl", "--user", "disable", "--now", svc.UNIT_NAME])
    elif path.exists():
        click.echo(f"the systemd user manager is not reachable from here; stop it there with: "
                   f"systemctl --user disable --now {svc.UNIT_NAME}")
    if not path.exists():
        click.echo(f"not installed ({path} does not exist)")
        return
    try:
        path.unlink()
    except OSError as e:
        _fail(f"cannot remove {path}: {e.strerror or e}")
    if kind == "systemd" and _systemd_reachable():
        _run(["systemctl", "--user", "daemon-reload"])
    click.echo(f"removed {path}")


@service.command("status")
def service_status() -> None:
    """Is the service installed, is it running, where is its log."""
    from .. import status as status_file

    env = os.environ
    kind = svc.platform_kind()
    if kind == "windows":
        click.echo("Windows: see the task with `schtasks /Query /TN credproxy` (docs/service.md)")
        return
    path = svc.launchd_plist_path(env) if kind == "launchd" else svc.systemd_unit_path(env)
    if not path.exists():
        click.echo(f"installed: no ({path} does not exist); install with `credproxy service install`")
    else:
        click.echo(f"installed: {path}")
        if kind == "systemd":
            try:
                click.echo(f"  runs: {' '.join(svc.parse_exec_start(path.read_text()))}")
            except (OSError, svc.ServiceError) as e:
                click.echo(f"  unreadable unit: {e}")
    if kind == "launchd":
        code, out = _run(["launchctl", "list", svc.LAUNCHD_LABEL])
        running = code == 0 and '"PID"' in out
        state = "running" if running else ("loaded, not running" if code == 0 else "not loaded")
        log = str(svc.launchd_log_path(env))
    elif _systemd_reachable():
        code, out = _run(["systemctl", "--user", "is-active", svc.UNIT_NAME])
        state = out.splitlines()[0] if out else ("active" if code == 0 else "unknown")
        log = f"journalctl --user -u {svc.UNIT_NAME}"
    else:
        state = "unknown (the systemd user manager is not reachable from here)"
        log = f"journalctl --user -u {svc.UNIT_NAME}"
    click.echo(f"service: {state}")
    click.echo(f"log: {log}")
    proxies, _ = status_file.read_all(env)
    if proxies:
        click.echo("proxies running as this user: " + ", ".join(f"pid {p.pid} on {p.listen}" for p in proxies)
                   + " (details: `credproxy status`)")
