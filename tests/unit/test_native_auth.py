"""UV_PREVIEW_FEATURES=native-auth: the switch, the chain order, the `auth` commands' target."""

from __future__ import annotations

import pytest

from credproxy.cli.auth import native_target
from credproxy.config import Settings, load_settings, native_auth_enabled
from credproxy.credentials.resolver import default_sources


@pytest.mark.parametrize("env, on", [
    ({}, False),
    ({"UV_PREVIEW_FEATURES": "native-auth"}, True),
    ({"UV_PREVIEW_FEATURES": "json-output, native-auth"}, True),
    ({"UV_PREVIEW_FEATURES": "native-authx"}, False),
    ({"UV_PREVIEW": "1"}, True),
    ({"UV_PREVIEW": "false"}, False),
])
def test_the_switch_is_uvs(env, on):
    assert native_auth_enabled(env) is on


def test_load_settings_reads_it(tmp_path):
    env = {"HOME": str(tmp_path), "UV_NO_CONFIG": "1", "PIP_CONFIG_FILE": "/dev/null",
           "UV_PREVIEW_FEATURES": "native-auth"}
    settings = load_settings(env=env, cwd=tmp_path, config_file=None)
    assert settings.native_auth is True


@pytest.mark.parametrize("provider, native, names", [
    ("disabled", True, ["native"]),
    ("subprocess", True, ["native", "keyring"]),  # uv's order: its native store, then the command
    ("subprocess", False, ["keyring"]),
    ("native", False, ["native"]),
    ("disabled", False, []),
])
def test_native_store_and_keyring_command_in_uvs_order(tmp_path, provider, native, names):
    env = {"HOME": str(tmp_path), "CREDPROXY_DATA_DIR": str(tmp_path / "d")}
    chain = [s.name for s in default_sources(Settings(keyring_provider=provider, native_auth=native, env=env))]
    assert [n for n in chain if n in ("native", "keyring")] == names


@pytest.mark.parametrize("service, target", [
    ("https://pkgs.test/simple/", "uv:pkgs.test"),
    ("https://pkgs.test:8443/a/b", "uv:pkgs.test:8443"),
    ("http://127.0.0.1:8080/simple", "uv:http://127.0.0.1:8080"),
])
def test_login_target_is_uvs_host_level_service(service, target):
    assert native_target(service) == target
