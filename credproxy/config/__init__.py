"""Settings: CLI flags > environment > config file > imported uv/pip configuration.

`load_settings()` is the one entry point. It never raises for a user's mistake except with
`ConfigError`, whose text names the file, the key and what was expected.

Scalars (keyring-provider, system-certs, ca-bundle, intercept, ...) take the value of the
highest layer that sets them. Lists (indexes, allow-insecure-host, client certificates,
intercept-hosts) are combined, highest layer first, as uv combines CLI/env and config
values. Indexes pointing at the same URL are merged into one: the higher layer's fields win,
missing fields (name, username, URL credentials) are filled from the lower ones.

Imported files (uv.toml, pyproject.toml `[tool.uv]`, pip.conf) never make loading fail: a
broken one is skipped with a warning, so a stray file in a project cannot stop the proxy.

One module per concern, as uv's uv-auth crate is laid out:

- model.py      Settings, ClientCertRule, ConfigError, Layer, the fixed value sets
- values.py     value parsers and checks, message quoting (never a secret), TOML reading
- keys.py       the config file's keys as tables: one declaration per key (kind, field,
                variable, secret or not) that file.py, env.py, overrides.py and the docs
                check are driven from
- file.py       the credproxy config file (strict)
- env.py        the environment (UV_*, CREDPROXY_*, SSL_*)
- uv.py         uv.toml / pyproject.toml `[tool.uv]` import (lenient)
- pip.py        pip.conf / PIP_* import (lenient)
- overrides.py  command-line flags
- merge.py      combining indexes across layers
- load.py       load_settings(): every layer, highest first
"""

from __future__ import annotations

from .env import parse_index_arg
from .file import parse_config
from .load import load_settings
from .merge import derived_index_name, merge_indexes, name_imported_indexes
from .model import (
    AUTH_POLICIES,
    INTERCEPT_POLICIES,
    KEYRING_PROVIDERS,
    LOG_FORMATS,
    NETRC_DEFAULT_SCOPES,
    NETRC_LOOPBACK_SCOPES,
    ClientCertRule,
    ConfigError,
    InterceptPolicy,
    KeyringProvider,
    UV_KEYRING_PROVIDERS,
    Settings,
)
from .pip import pip_config_paths
from .uv import uv_config_paths, uv_project_config_file, uv_system_config_files, uv_user_config_file
from .values import native_auth_enabled, parse_boolish, safe_url, url_problem, url_scheme, valid_host_pattern

__all__ = [
    "native_auth_enabled",
    "AUTH_POLICIES", "INTERCEPT_POLICIES", "KEYRING_PROVIDERS", "LOG_FORMATS", "NETRC_DEFAULT_SCOPES", "NETRC_LOOPBACK_SCOPES", "UV_KEYRING_PROVIDERS",
    "ClientCertRule", "ConfigError", "InterceptPolicy", "KeyringProvider", "Settings",
    "derived_index_name", "load_settings", "merge_indexes", "name_imported_indexes",
    "parse_boolish", "parse_config", "parse_index_arg", "pip_config_paths", "safe_url",
    "url_problem", "url_scheme", "uv_config_paths", "uv_project_config_file",
    "uv_system_config_files", "uv_user_config_file", "valid_host_pattern",
]
