"""One terminal for tests that follow a doc page literally (docs/quick-start.md, docs/recipes/).

    shell = Shell(tmp_path, env, cwd)
    shell.run('eval "$(credproxy env)"')     # exported variables and the directory carry over
    shell.run("pip install ...")

Each command runs in a fresh `bash --noprofile --norc -c` that first loads the variables the
previous commands exported and changes to the directory they left, as one terminal would
(shell functions and unexported variables do not carry over). Bounded by `timeout` (then the
command's process group is killed); stdin is empty unless given (`--password -` reads it).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from pathlib import Path

TIMEOUT = 300


class Shell:
    """One terminal: exported variables and the directory carry over between commands."""

    def __init__(self, tmp: Path, env: dict[str, str], cwd: Path, *, timeout: float = TIMEOUT):
        self.state = tmp / "shell-state.sh"
        self.cwd_file = tmp / "shell-cwd"
        self.cwd_file.write_text(str(cwd))
        self.base = env
        self.timeout = timeout

    def run(self, command: str, *, stdin: str | None = None) -> subprocess.CompletedProcess:
        script = (f'[ -f {shlex.quote(str(self.state))} ] && . {shlex.quote(str(self.state))}\n'
                  f'cd "$(cat {shlex.quote(str(self.cwd_file))})" || exit 99\n'
                  f'{command}\n'
                  f'__rc=$?\n'
                  f'export -p > {shlex.quote(str(self.state))}\n'
                  f'pwd > {shlex.quote(str(self.cwd_file))}\n'
                  f'exit $__rc\n')
        # its own process group: on timeout the whole command goes (an `npm` launcher's node too)
        proc = subprocess.Popen(["bash", "--noprofile", "--norc", "-c", script], env=self.base,
                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(stdin, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def export(self, name: str, value: str) -> None:
        """`export NAME=value` in this terminal (for what the test, not the page, sets)."""
        r = self.run(f"export {name}={shlex.quote(value)}")
        assert r.returncode == 0, r.stderr

    def env(self) -> dict[str, str]:
        r = self.run("env -0")
        assert r.returncode == 0, r.stderr
        return dict(item.split("=", 1) for item in r.stdout.split("\0") if "=" in item)

    @property
    def cwd(self) -> Path:
        return Path(self.cwd_file.read_text().strip())
