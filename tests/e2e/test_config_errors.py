"""Issue 10 point 12, as a user meets it: a broken config file. `serve` stops with the
loader's error, which suggests the key that was meant; `doctor` reports it as one failed
check with its fix and still runs its other checks (instead of exiting with the error)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.proxy import hermetic_env
from tests.helpers.servers import free_port

pytestmark = pytest.mark.e2e

BROKEN = '''keyring-provder = "subprocess"

[[index]]
url = "https://u:Hidden-S3cret@pkgs.example/simple/"
authentication = "always"
'''


def credproxy(tmp_path: Path, *args: str, config: str) -> subprocess.CompletedProcess:
    path = tmp_path / "config.toml"
    path.write_text(config)
    env = hermetic_env(tmp_path, CREDPROXY_CONFIG=str(path))
    return subprocess.run([sys.executable, "-m", "credproxy.cli", *args], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)


def test_serve_names_the_key_that_was_meant(tmp_path):
    result = credproxy(tmp_path, "serve", "--port", "0", config=BROKEN)
    assert result.returncode == 2
    err = result.stderr
    assert f"credproxy: error: {tmp_path / 'config.toml'}: 2 problems:" in err, err
    assert '"keyring-provder": expected a known key: did you mean "keyring-provider"?' in err
    assert 'index[1]."authentication": expected a known key: did you mean "authenticate"?' in err
    assert "Hidden-S3cret" not in err


def test_doctor_reports_a_broken_config_as_one_failed_check(tmp_path):
    port = free_port()
    result = credproxy(tmp_path, "doctor", "--port", str(port), "https://pkgs.example/simple/x/", config=BROKEN)
    out = result.stdout
    assert result.returncode == 1, result.stderr
    assert "credproxy: error" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    # the other checks still ran
    assert f"no proxy is running on http://127.0.0.1:{port}" in out and "CA" in out and "Shell environment" in out
    config = out[out.index("Configuration\n"):out.index("Indexes\n")]
    assert config.count("✗") == 1, config
    assert "✗ the configuration does not load" in config
    assert 'did you mean "keyring-provider"?' in config and 'did you mean "authenticate"?' in config
    assert f"fix: edit {tmp_path / 'config.toml'} as the message says, then run `credproxy doctor` again" in config
    assert "not checked: the configuration does not load" in out and "not sent: the configuration does not load" in out
    assert "Hidden-S3cret" not in out + result.stderr


def test_doctor_reports_invalid_toml_with_its_line(tmp_path):
    result = credproxy(tmp_path, "doctor", "--port", str(free_port()), config='intercept = "auto"\nbad = [\n')
    assert result.returncode == 1, result.stderr
    assert "✗ the configuration does not load" in result.stdout
    assert "invalid TOML" in result.stdout and "line 2" in result.stdout, result.stdout
