"""The `credproxy` command line (click). Commands stay thin: they parse, call the core or the
proxy, and print. Errors are one line on stderr and exit code 2 (uv's convention).

`main` (the `credproxy = "credproxy.cli:main"` entry point) is the click group; each command
group lives in its own module and is added here:

- common.py   what the commands share: `_fail`, settings with the flags on top, `--project`,
              the start-up report, the --proxyauth-file / CREDPROXY_PROXYAUTH pair
- serve.py    `serve` and `run`: their options and the checks before the proxy starts
- env.py      `env`: the shell variables (and `--unset`)
- ca.py       `ca path`, `ca bundle`
- auth.py     `auth login|logout|token|dir`: uv's `uv auth` on the shared store
- explain.py  `explain URL`: which source would answer, redacted
- doctor.py   `doctor [URL]` (the checks themselves: credproxy/doctor.py)
- service.py  `service install|uninstall|status` (the files: credproxy/service.py)
- status.py   `status`: the running proxies (their state: credproxy/status.py)
- __main__.py `python -m credproxy.cli` (what a service file runs when no script is on PATH)

The commands reach the proxy only through credproxy.proxy's entry points (master, run, token,
envvars), never an addon.
"""

from __future__ import annotations

import click

from .. import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="credproxy")
def main() -> None:
    """A local authenticating proxy for package registries.

    Point any client at it with `eval "$(credproxy env)"`, or run one command through it with
    `credproxy run -- pip install ...`; requests to your registries get credentials from your
    index configuration, UV_INDEX_<NAME>_USERNAME/PASSWORD, ~/.netrc, `credproxy auth login`
    or the keyring."""


# the modules, not their commands, are bound here: `credproxy.cli.serve` stays the module
from . import auth, ca, doctor, env, explain, serve, service, status  # noqa: E402

for _command in (auth.auth, serve.serve, serve.run, env.env, ca.ca, doctor.doctor, explain.explain,
                 service.service, status.status):
    main.add_command(_command)
