"""docs/quick-start.md, followed literally (issue 10, acceptance).

The test reads the page's ```console blocks: a line `$ CMD` is typed into one shell (its
variables, functions aside, and its directory carry over from step to step, as in a
terminal), and the lines under it are what the doc says the user sees: each must appear,
in order, in what the command printed (`...` stands for lines that vary; a command with no
lines under it must print nothing). Every command must succeed. So the test fails when a
step's command or its output drifts from the doc.

What the test supplies, and nothing more:
- the placeholders: `https://pkgs.example.com` is a real pypiserver behind TLS on
  127.0.0.1 (served as `pkgs.test:PORT`, a name only the proxy resolves), with user `alice`
  and a password the test types at the prompt; `127.0.0.1:8899` in an expected line is the
  free port the test chose and sets as CREDPROXY_PORT;
- a machine: HOME, PATH (`uv`, `python3`, `~/.local/bin`), a CA bundle that trusts the
  index's internal CA (SSL_CERT_FILE, as a corporate machine has), and nothing of this
  machine's pip/uv configuration;
- offline installs: `uv tool install .` gets `--offline --no-index --find-links` with a
  wheelhouse packed from this venv (tests/helpers/wheelhouse.py), run in a fresh clone;
- `credproxy serve` runs in "a second terminal": in the background, its first line compared
  with the doc; `auth login`'s password prompt is answered on a pseudo-terminal.
"""

from __future__ import annotations

import os
import pty
import select
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from credproxy.credentials.model import secret_forms
from tests.helpers.clients import REAL_PYTHON, UV, home_env, installed
from tests.helpers.servers import die_with_parent, free_port, stop_pid
from tests.helpers.shell import Shell
from tests.helpers.wheelhouse import wheelhouse

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "quick-start.md"
PLACEHOLDER_INDEX = "https://pkgs.example.com"
PLACEHOLDER_PROXY = "127.0.0.1:8899"
PASSWORD = "qs-Pa55word-7h"


@dataclass
class Step:
    command: str
    expected: list[str]


def doc_steps(text: str) -> list[Step]:
    steps: list[Step] = []
    blocks = text.split("```")
    for i in range(1, len(blocks), 2):
        body = blocks[i]
        if not body.startswith("console\n"):
            continue
        for line in body.splitlines()[1:]:
            if line.startswith("$ "):
                steps.append(Step(line[2:], []))
            elif line.strip():
                assert steps, f"output before any command in {body!r}"
                steps[-1].expected.append(line)
    return steps


def test_the_doc_walks_the_whole_way():
    """From the README's install line to pip and uv installing from the private index."""
    commands = [s.command for s in doc_steps(DOC.read_text())]
    readme = (REPO / "README.md").read_text().split("## Install", 1)[1].split("```", 2)[1]
    assert commands[0] == "uv tool install ." and commands[0] in readme
    for needed in ("credproxy serve", f"credproxy auth login {PLACEHOLDER_INDEX}/simple/ --username alice",
                   'eval "$(credproxy env)"', f"pip install --index-url {PLACEHOLDER_INDEX}/simple/ private-pkg"):
        assert needed in commands, needed
    assert any(c.startswith("uv pip install") for c in commands)
    assert commands.index("credproxy serve") < commands.index('eval "$(credproxy env)"') < commands.index(
        f"pip install --index-url {PLACEHOLDER_INDEX}/simple/ private-pkg")


def _acquire_controlling_tty() -> None:
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def run_on_terminal(argv: list[str], env: dict[str, str], cwd: Path, answers: dict[bytes, bytes]) -> tuple[int, str]:
    """Run argv on a pseudo-terminal, typing answers[prompt] when a prompt appears."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                            start_new_session=True, preexec_fn=_acquire_controlling_tty)
    os.close(slave)
    seen = b""
    pending = dict(answers)
    deadline = time.monotonic() + 60
    try:
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"terminal session did not finish: {seen!r}"
            ready, _, _ = select.select([master], [], [], min(remaining, 0.2))
            if ready:
                try:
                    chunk = os.read(master, 1024)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                seen += chunk
                for prompt in [p for p in pending if p in seen]:
                    os.write(master, pending.pop(prompt))
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            stop_pid(proc)
        os.close(master)
    return code, seen.decode(errors="replace").replace("\r\n", "\n")


def assert_output(step: Step, output: str, subst) -> None:
    expected = [subst(line).strip() for line in step.expected]
    lines = [line.strip() for line in output.splitlines()]
    if not expected:
        assert output.strip() == "", f"`{step.command}` should print nothing (the doc shows nothing):\n{output}"
        return
    at = 0
    for want in expected:
        if want == "...":
            continue
        try:
            at = lines.index(want, at) + 1
        except ValueError:
            pytest.fail(f"`{step.command}`: the doc says {want!r}, not found (in order) in:\n{output}")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    return wheelhouse(tmp_path_factory.mktemp("qs-wheelhouse"), ["credproxy", "setuptools>=77"])


def test_quick_start_literally(tmp_path, tls_certs, index_factory, wheels):
    index = index_factory(username="alice", password=PASSWORD)
    index_base = f"https://pkgs.test:{index.port}"
    port = free_port()

    def subst(text: str) -> str:
        return text.replace(PLACEHOLDER_INDEX, index_base).replace(PLACEHOLDER_PROXY, f"127.0.0.1:{port}")

    clone = tmp_path / "credproxy"
    r = subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(clone)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    tools = tmp_path / "tools"  # what the machine has: uv and python3, nothing of this venv
    tools.mkdir()
    (tools / "uv").symlink_to(UV)
    (tools / "python3").symlink_to(REAL_PYTHON)
    home = tmp_path / "home"
    machine = home_env(home)
    machine.update({
        "PATH": f"{home / '.local/bin'}:{tools}:/usr/bin:/bin",
        "CREDPROXY_PORT": str(port),
        "CREDPROXY_TEST_RESOLVE": "pkgs.test=127.0.0.1",
        "SSL_CERT_FILE": str(tls_certs.ca_plus_certifi_pem),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
    })
    shell = Shell(tmp_path, machine, clone)
    server: subprocess.Popen | None = None
    outputs: list[str] = []
    try:
        for step in doc_steps(DOC.read_text()):
            command = subst(step.command)
            if command.startswith("uv tool install"):
                command += f" --offline --no-index --find-links {shlex.quote(str(wheels))}"
            if command == "credproxy serve":
                server, output = start_in_second_terminal(shell, tmp_path)
            elif any("Enter password:" in line for line in step.expected):
                code, output = run_on_terminal(["bash", "--noprofile", "--norc", "-c", command], shell.env(), shell.cwd,
                                               {b"Enter password:": PASSWORD.encode() + b"\n"})
                assert code == 0, f"`{command}` failed ({code}):\n{output}"
            else:
                r = shell.run(command)
                output = r.stdout + r.stderr
                assert r.returncode == 0, f"`{command}` failed ({r.returncode}):\n{output}"
            outputs.append(output)
            assert_output(step, output, subst)
        proxy_log = (tmp_path / "serve.stderr").read_text()
    finally:
        if server is not None:
            stop_pid(server)

    # pip and uv installed from the private index with the stored credential, via the proxy
    demo = shell.cwd
    assert installed(demo / ".venv").get("private-pkg") == "1.0"
    assert any(f"{index_base}/simple/private-pkg/ 200" in line and "source=store" in line
               for line in proxy_log.splitlines()), proxy_log
    assert index.count(200, auth=True) >= 4
    for text in outputs + [proxy_log]:
        for form in secret_forms(PASSWORD, "alice"):
            assert form not in text, "the password leaked into a step's output or the proxy log"


def start_in_second_terminal(shell: Shell, tmp: Path) -> tuple[subprocess.Popen, str]:
    """`credproxy serve` as the user starts it; returns once its first line is out."""
    env = shell.env()
    out, err = tmp / "serve.stdout", tmp / "serve.stderr"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(["credproxy", "serve"], env=env, cwd=shell.cwd, stdin=subprocess.DEVNULL,
                                stdout=o, stderr=e, preexec_fn=die_with_parent)
    deadline = time.monotonic() + 30
    while b"\n" not in out.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_pid(proc)
            pytest.fail(f"credproxy serve did not start:\n{err.read_text()}")
        time.sleep(0.05)
    return proc, out.read_text()
