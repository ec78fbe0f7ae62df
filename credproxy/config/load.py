"""`load_settings()`: every layer read and combined, highest first (flags, environment, config
file, uv imports, pip imports)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from .env import env_layer
from .file import parse_config
from .keys import TOP_KEYS, StringList, Tables
from .merge import dedupe, merge_indexes, name_imported_indexes
from .model import ConfigError, Layer, Settings
from .overrides import override_layer
from .pip import pip_config_paths, pip_layer
from .project import add_project, project_config_file
from .uv import uv_config_paths, uv_layer
from .values import native_auth_enabled, quote, read_toml



def load_settings(
    config_file: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    *,
    pip_config_files: Iterable[str | os.PathLike] | None = None,
    uv_config_files: Iterable[str | os.PathLike] | None = None,
) -> Settings:
    """Build Settings from flags (`overrides`, keys = Settings field names, None = unset),
    the environment (`env`, default os.environ), the config file (`config_file`, else
    CREDPROXY_CONFIG, else the platform config dir's credproxy/config.toml when it exists)
    and the user's uv and pip configuration (discovered from `env` unless `uv_config_files` /
    `pip_config_files` are given, lowest priority first). A project's uv settings are read
    only when named (`overrides["project"]`, or `project` in the config file; a relative
    flag value is relative to `cwd`), never from `cwd` itself: see project.py."""
    env = dict(os.environ if env is None else env)
    cwd_path = Path(os.getcwd() if cwd is None else cwd)
    settings = Settings(env=env)
    overrides = dict(overrides or {})

    # Lazily imported: paths imports platformdirs, config must stay cheap to import in tests.
    from .. import paths

    flags = override_layer(overrides, settings)
    environment = env_layer(env, settings)

    layers: list[Layer] = [flags, environment]
    explicit = config_file is not None or bool(env.get("CREDPROXY_CONFIG"))
    path = Path(config_file) if config_file is not None else paths.default_config_file(env)
    path = Path(os.path.expanduser(path)).absolute()
    if path.is_file():
        layers.append(parse_config(read_toml(path), path))
        settings.config_files.append(str(path))
    elif explicit:
        where = "--config" if config_file is not None else "CREDPROXY_CONFIG"
        raise ConfigError(f"{path}: config file not found (named by {where})")

    uv_paths = [Path(p) for p in uv_config_files] if uv_config_files is not None else uv_config_paths(env)
    if uv_config_files is None and env.get("UV_CONFIG_FILE") and not uv_paths[0].is_file():
        settings.warnings.append(f"UV_CONFIG_FILE names {uv_paths[0]}, which does not exist; "
                                 "no uv configuration imported")
    # highest priority first for combining: user, system
    for uv_path in reversed(uv_paths):
        if not uv_path.is_file():
            continue
        layer = uv_layer(uv_path, settings)
        if layer is not None:
            layers.append(layer)
            settings.config_files.append(str(uv_path))

    pip_paths = [Path(p) for p in pip_config_files] if pip_config_files is not None else pip_config_paths(env)
    layers.append(pip_layer(pip_paths, env, settings))

    def first(attr: str, default):
        for layer in layers:
            value = getattr(layer, attr)
            if value is not None:
                return value
        return default

    # each key the table declares: a single value from the highest layer that sets it (None
    # until the defaults below: a project may still set some), a list combined, highest first
    for key in TOP_KEYS:
        if isinstance(key.kind, StringList):
            setattr(settings, key.attr, dedupe(h for layer in layers for h in getattr(layer, key.attr)))
        elif isinstance(key.kind, Tables):
            if key.attr != "indexes":  # merged as indexes, below
                setattr(settings, key.attr, [c for layer in layers for c in getattr(layer, key.attr)])
        elif key.attr == "upstream_proxy":
            if (upstream := first("upstream_proxy", None)) is not None:
                settings.upstream_proxy, settings.upstream_proxy_origin = upstream
        elif key.attr != "project":  # below: the flag's is relative to cwd, the file's to the file
            setattr(settings, key.attr, first(key.attr, None))
    settings.native_auth = native_auth_enabled(env)
    settings.indexes = name_imported_indexes(
        merge_indexes((i for layer in layers for i in layer.indexes), settings.notes))

    # A project (opt-in only) adds to the user's settings and never changes them (project.py).
    if flags.project is not None:
        settings.project, named_by, base = flags.project, "--project", cwd_path
    else:
        settings.project, named_by, base = first("project", None), f"project in {path}", path.parent
    if settings.project is not None:
        _import_project(settings, settings.project, named_by, base)
    for key in TOP_KEYS:  # what no layer (and no project) set: the default
        if getattr(settings, key.attr) is None:
            setattr(settings, key.attr, key.default)

    # The bundle `credproxy env` exports holds the proxy's own CA: trusting it upstream would
    # let the proxy vouch for itself, so an SSL_CERT_FILE pointing there is not upstream trust.
    if settings.ssl_cert_file and _same_file(settings.ssl_cert_file, paths.bundle_path(env)):
        settings.notes.append("SSL_CERT_FILE is credproxy's own client bundle; not used for upstream trust")
        settings.ssl_cert_file = None
    return settings


def _import_project(settings: Settings, directory: str, named_by: str, base: Path) -> None:
    project_dir, source = project_config_file(directory, base, named_by)
    settings.project = str(project_dir)
    if source is None:
        settings.warnings.append(f"{named_by} {project_dir}: no uv.toml, and no pyproject.toml with [tool.uv], "
                                 "in it or its parents; no project settings imported")
        return
    layer = uv_layer(source, settings)
    if layer is None:  # unreadable: uv_layer warned
        return
    settings.config_files.append(str(source))
    indexes, hosts = add_project(settings, settings.indexes, settings.allow_insecure_host, layer, source)
    settings.indexes += indexes
    settings.allow_insecure_host += hosts
    for attr, key in (("keyring_provider", "keyring-provider"), ("system_certs", "system-certs")):
        value = getattr(layer, attr)
        if value is not None and getattr(settings, attr) is None:  # the user's configuration is silent
            setattr(settings, attr, value)
            shown = str(value).lower() if isinstance(value, bool) else quote(value)
            settings.project_report.append(f"project {source}: sets {key} = {shown}")


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)
