"""A project's uv settings, imported only when the user asks (`--project DIR`, `project = "DIR"`).

A project folder is not the user: a repository's `pyproject.toml` says what its author wants.
So the working directory's `uv.toml` / `[tool.uv]` is never read just because `serve` runs
there (issue 9, finding 3). When the user opts in, the project can only add to what the
user's own configuration (flags, environment, credproxy config, user/system uv.toml, pip)
says, never change it:

- its indexes are added after the user's; one whose name the user's configuration already
  has (compared as `UV_INDEX_<NAME>_*` spells it, so `corp`, `CORP` and `c-orp`/`c_orp` are
  one name), or whose URL the user already configured, is ignored with a warning / a note;
- each `allow-insecure-host` entry the user does not list already is a warning;
- `keyring-provider` / `system-certs` apply only where the user's configuration is silent.

Everything the project added goes into `Settings.project_report`, which `serve` and `run`
print at start-up."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Iterable

from ..credentials.index import Index, env_name
from .merge import derived_index_name, merge_indexes
from .model import ConfigError, Layer, Settings
from .uv import uv_project_config_file
from .values import quote, safe_url, url_key


def project_config_file(directory: str, base: Path, named_by: str) -> tuple[Path, Path | None]:
    """The project directory (absolute) and the uv file uv would read for it: from the
    directory upwards, the first `uv.toml` or `pyproject.toml` with `[tool.uv]`."""
    path = Path(os.path.expanduser(directory))
    if not path.is_absolute():
        path = base / path
    if not path.is_dir():
        # the path as written may hold what looks like userinfo or a signed URL: masked (safe_url)
        raise ConfigError(f"{safe_url(str(path))}: project directory not found (named by {named_by}); "
                          "give the directory that holds the project's pyproject.toml or uv.toml")
    return path, uv_project_config_file(path)


def add_project(settings: Settings, user_indexes: list[Index], user_hosts: list[str],
                layer: Layer, source: Path) -> tuple[list[Index], list[str]]:
    """What the project may add: (its indexes, named; its allow-insecure-host entries).
    Refusals become warnings, additions lines in `settings.project_report`."""
    names = {env_name(i.name): i for i in user_indexes if i.name}
    urls = {url_key(i.url): i for i in user_indexes}
    added: list[Index] = []
    for index in merge_indexes(layer.indexes, settings.notes):
        mine = names.get(env_name(index.name)) if index.name else None
        if mine is not None:
            settings.warnings.append(
                f"{source}: ignored index {quote(index.name)} ({safe_url(index.url)}): your own configuration "
                f"defines {quote(mine.name)} as {safe_url(mine.url)} ({mine.origin}); a project cannot rebind "
                "an index name (rename it in the project, or remove yours)")
            continue
        if url_key(index.url) in urls:
            settings.notes.append(f"{source}: index {safe_url(index.url)} is already configured by you "
                                  f"({urls[url_key(index.url)].origin}); the project's entry is not used")
            continue
        added.append(index)
    added = _name_project_indexes(added, names)
    for index in added:
        creds = " (with credentials in the URL)" if index.url_credentials is not None else ""
        settings.project_report.append(f"project {source}: added index {quote(index.name)} "
                                       f"{safe_url(index.url)}{creds}")

    hosts: list[str] = []
    for host in layer.allow_insecure_host:
        if host in user_hosts or host in hosts:
            continue
        hosts.append(host)
        settings.warnings.append(
            f"project {source} adds allow-insecure-host {quote(safe_url(host))}: upstream certificates for it "
            "are not verified (remove it from the project, or list it in your own configuration)")
    return added, hosts


def _name_project_indexes(indexes: Iterable[Index], taken: dict[str, Index]) -> list[Index]:
    """A project's unnamed index gets its host as a name (as every imported one does), never
    one that, spelt as UV_INDEX_<NAME>_*, is already in use."""
    used = set(taken) | {env_name(i.name) for i in indexes if i.name}
    out = []
    for index in indexes:
        if index.name is None:
            base = derived_index_name(index.url)
            name, n = base, 2
            while env_name(name) in used:
                name, n = f"{base}-{n}", n + 1
            used.add(env_name(name))
            index = replace(index, name=name)
        out.append(index)
    return out
