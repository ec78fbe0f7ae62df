"""Attack: another local user learns which registries you use, and with what, from the
proxy's status (credproxy/status.py). The status is a file, not a loopback endpoint, because
any local user reaches 127.0.0.1; the file must be the owner's alone.

A real `credproxy serve` answers a request, so its state file names a realm; then a process
running as another user (`nobody`) tries to list the status directory and read the file,
with every directory above the data directory open to it (0755), so only the modes credproxy
sets stand in the way (`credproxy status` reads nothing else). Needs root to switch users; skipped otherwise."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers.clients import client_env, curl
from tests.helpers.loopback import LoopbackServer, canned_handler
from tests.helpers.proxy import proxy_env, start_credproxy

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user (nobody) needs root")

NOBODY = 65534


def _as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def test_another_user_cannot_read_the_status(tmp_path):
    server = LoopbackServer(canned_handler(200, b"ok")).start()
    shared = Path(tempfile.mkdtemp(prefix="credproxy-shared-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        data_dir = shared / "data"
        data_dir.mkdir(mode=0o755)
        data_dir.chmod(0o755)
        proxy = start_credproxy(tmp_path, env=proxy_env(tmp_path), data_dir=data_dir)
        try:
            realm = f"http://127.0.0.1:{server.port}"
            out = curl("-s", "-o", os.devnull, "-w", "%{http_code}", realm + "/simple/",
                       env=client_env(tmp_path, proxy_url=proxy.url))
            assert out.stdout == "200"
            state = data_dir / "status" / f"{proxy.pid}.json"
            deadline = time.monotonic() + 10
            while not (state.exists() and realm in state.read_text()) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert realm in state.read_text()  # the owner sees it

            direct = subprocess.run(["cat", str(state)], preexec_fn=_as_nobody, capture_output=True, text=True,
                                    timeout=30)
            assert direct.returncode != 0 and "Permission denied" in direct.stderr
            assert realm not in direct.stdout
            listing = subprocess.run(["ls", str(data_dir / "status")], preexec_fn=_as_nobody, capture_output=True,
                                     text=True, timeout=30)
            assert listing.returncode != 0 and f"{proxy.pid}.json" not in listing.stdout

        finally:
            proxy.stop()
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", "--", str(shared)], timeout=30)
