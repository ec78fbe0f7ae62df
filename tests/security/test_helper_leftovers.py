"""A token command or a git credential helper that answers and leaves a daemon behind.

Real programs do this: a credential agent or an `aws` wrapper that starts a background
process, git's `credential-cache--daemon`. The daemon calls setsid() (so it leaves the
process group a timeout kills) and keeps the pipe to credproxy open: for a token command its
stdout, for a git helper git's stderr (which is credproxy's pipe). Against a real `credproxy
serve` and a real curl, each request must succeed with the answer the program already
printed, in well under the timeout (before the one runner, the proxy read until the timeout,
then threw the answer away: "no answer within 20s, killed"), the daemon must be gone
afterwards (checked by the pid the program wrote down), and the secret is not in the log."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from credproxy.credentials.model import secret_forms
from tests.e2e.conftest import credproxy_factory, echo_factory, proxied_env, tls_certs  # noqa: F401 (fixtures)
from tests.helpers.clients import curl
from tests.helpers.registries import TokenRegistry
from tests.helpers.timing import pid_alive, wait_gone

from .test_credential_helpers import _gitconfig
from .test_registry_sources_scope import calls, logging_program

pytestmark = pytest.mark.e2e

TOKEN = "tc-T0ken-leftover-s3cret"
GIT_PASSWORD = "g1t-leftover-S3cret"
TIMEOUT = 20  # keyring-timeout: what the request waited for before


def _daemon(pid_file: Path, **popen: str) -> str:
    """Program text: start a setsid() child that lives 30 s (keeping the inherited pipes
    except those in `popen`), write its pid to `pid_file`."""
    extra = "".join(f", {key}={value}" for key, value in popen.items())
    return ("import subprocess\n"
            "daemon = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'], "
            f"start_new_session=True, stdin=subprocess.DEVNULL{extra})\n"
            f"open({str(pid_file)!r}, 'w').write(str(daemon.pid))\n")


@pytest.fixture
def world(tmp_path, tls_certs, echo_factory, credproxy_factory, proxied_env):  # noqa: F811
    """An index whose token comes from a token-command and a git host whose password comes
    from git's credential helper (in the proxy's own ~/.gitconfig); both leave a daemon."""
    registry = TokenRegistry.start(tls_certs, base="/pypi/repo", username="aws", token=TOKEN)
    git_host = echo_factory(host="pkgs.test", credentials=("alice", GIT_PASSWORD))
    command = logging_program(tmp_path / "bin" / "aws", _daemon(tmp_path / "command-daemon.pid")
                              + f"print({TOKEN!r}, flush=True)\n")  # the daemon holds this stdout
    helper = logging_program(tmp_path / "bin" / "agent-helper", (
        "if sys.argv[1:] == ['get']:\n"
        # its stdout is git's pipe: the daemon keeps git's stderr, which is credproxy's
        + "".join("    " + line + "\n" for line in _daemon(tmp_path / "helper-daemon.pid",
                                                          stdout="subprocess.DEVNULL").splitlines())
        + f"    print('username=alice'); print('password=' + {GIT_PASSWORD!r}, flush=True)\n"))
    _gitconfig(tmp_path, helper)
    (tmp_path / "credproxy-config.toml").write_text(f'''
keyring-timeout = {TIMEOUT}
git-credential-hosts = ["pkgs.test:{git_host.port}"]

[[index]]
url = "{registry.index_url()}"
username = "aws"
token-command = ["{command}", "codeartifact", "get-authorization-token"]
''')
    proxy = credproxy_factory("-v")
    yield proxy, proxied_env(proxy), {
        "token-command": (registry.index_url(), command, tmp_path / "command-daemon.pid", TOKEN, "aws"),
        "git helper": (git_host.url_for("pkgs.test", "/team/repo.git/info/refs"), helper,
                       tmp_path / "helper-daemon.pid", GIT_PASSWORD, "alice"),
    }
    registry.stop()


@pytest.mark.parametrize("kind", ["token-command", "git helper"])
def test_a_daemon_left_holding_the_pipe_neither_delays_the_answer_nor_survives(world, kind):
    proxy, env, programs = world
    url, program, pid_file, secret, user = programs[kind]
    started = time.monotonic()
    reply = curl("-o", "/dev/null", "-w", "%{http_code}", url, env=env, timeout=60)
    elapsed = time.monotonic() - started
    print(f"{kind}: answered {reply.stdout} in {elapsed:.2f}s (timeout {TIMEOUT}s)")  # pytest -s, for the report
    assert calls(program), f"the {kind} was never run"
    daemon = int(pid_file.read_text())
    try:
        assert reply.stdout == "200", (reply.stdout, reply.stderr, proxy.stderr())  # the printed answer was used
        assert elapsed < 5, f"{kind}: the request took {elapsed:.1f}s: it waited for the daemon holding the pipe"
        assert wait_gone([daemon]) == [], f"{kind}: the setsid() daemon (pid {daemon}) outlived the program"
    finally:
        if pid_alive(daemon):
            os.kill(daemon, signal.SIGKILL)  # by its pid, so a failing run leaves nothing behind
    proxy.stop()
    log = proxy.stderr() + proxy.stdout()
    source = {"token-command": "token-command", "git helper": "git-credential"}[kind]
    assert f"source={source}" in log, log  # -v: the request and where its credential came from
    leaked = [form for form in secret_forms(secret, user) if form in log]
    assert leaked == [], f"the {kind}'s secret reached the proxy's log: {len(leaked)} form(s)"
