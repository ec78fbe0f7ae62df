"""The `credproxy` command line (click). Commands stay thin: they parse, call the core or the
proxy, and print. Errors are one line on stderr and exit code 2 (uv's convention)."""

from __future__ import annotations

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


# auth login/logout/token/dir live in cli_auth.py (one file per concern)
from .cli_auth import register as _register_auth_commands  # noqa: E402

_register_auth_commands(auth)

# explain lives in cli_explain.py
from .cli_explain import register as _register_explain  # noqa: E402

_register_explain(main)


if __name__ == "__main__":  # pragma: no cover
    main()
