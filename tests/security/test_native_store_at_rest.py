"""uv's native store must be the OS keyring uv reads, never a plaintext file.

Before: with `UV_PREVIEW_FEATURES=native-auth` and no Secret Service (a headless machine, a
container), `credproxy auth login` asked Python's keyring for its default backend, which is
keyrings.alt's PlaintextKeyring whenever keyrings.alt is installed (Debian's
python3-keyrings.alt, or a test extra here): it printed "Stored credentials" and wrote the
password, base64 only, to ~/.local/share/python_keyring/keyring_pass.cfg, where uv never looks.
The user asked for the OS keyring and got a secret at rest in a file.

Now: on Linux the native store is the Secret Service or nothing; without one the login
fails, names the fix, and no file anywhere under HOME holds the secret in any form. A real
`credproxy auth login` against a real (absent) D-Bus, keyrings.alt importable."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from credproxy.credentials.model import secret_forms
from tests.helpers.proxy import credproxy_cmd, proxy_env

pytestmark = pytest.mark.e2e

SECRET = "at-rest-S3cret-9fQ"


def _files_holding_secret(root: Path) -> list[str]:
    forms = [f.encode() for f in secret_forms(SECRET, "alice")]
    import base64

    forms.append(base64.b64encode(SECRET.encode()))  # keyrings.alt's "encoding"
    found = []
    for path in root.rglob("*"):
        if path.is_file() and any(form in path.read_bytes() for form in forms):
            found.append(str(path.relative_to(root)))
    return found


@pytest.mark.parametrize("bus", ["unset", "dead"])
def test_native_login_without_a_secret_service_writes_no_file(tmp_path, bus):
    pytest.importorskip("keyrings.alt")  # the backend the old code fell back to
    env = proxy_env(tmp_path, extra={"UV_PREVIEW_FEATURES": "native-auth", "PYTHON_KEYRING_BACKEND": None,
                                     "CREDPROXY_DATA_DIR": str(tmp_path / "data"),
                                     "DBUS_SESSION_BUS_ADDRESS": None if bus == "unset"
                                     else f"unix:path={tmp_path}/no-bus"})
    r = subprocess.run(credproxy_cmd("auth", "login", "https://pkgs.corp.test/simple/", "--username", "alice",
                                     "--password", "-"),
                       env=env, input=SECRET + "\n", capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, "stored the secret somewhere although no Secret Service runs: " + r.stderr
    assert "no Secret Service answers on D-Bus" in r.stderr and "unset UV_PREVIEW_FEATURES" in r.stderr, r.stderr
    assert _files_holding_secret(tmp_path) == []
    assert not any(form in r.stdout + r.stderr for form in secret_forms(SECRET, "alice"))
