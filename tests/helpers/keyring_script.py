"""A fake `keyring` executable for tests that run the real subprocess path.

    path = write_keyring_script(tmp_path / "bin", {("https://h/simple", "alice"): "pw",
                                                   ("h", None): ("bob", "pw2")},
                                log=tmp_path / "calls.jsonl")
    source = KeyringSubprocessSource(env={"PATH": str(path.parent)})

answers maps (service, username) -> password, or (service, None) -> (username, password)
for `--mode creds`. A value may also be a dict {"stdout": str, "stderr": str, "exit": int}
for raw control, which may also hold "stdout_bytes": N (N bytes of "x" streamed to stdout,
never held in memory) and "setsid_grandchild": S (first start a grandchild that calls
setsid(), keeps stdout/stderr open and sleeps S seconds; its pid goes to `<log>.grandchild`,
read it with read_grandchild_pids(log)). Unknown keys exit 1. Each call appends its argv[1:] (JSON list) as one line
to `log`; read them with read_calls(log). `sleep` seconds are slept before answering (use a
large value for a hanging keyring); the script writes its pid to `<log>.pid` first. `gate`: a
path; the script waits (polling, at most GATE_LIMIT seconds) until that file exists before it
answers: a lookup that is under way while the test changes something.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

#: the longest the script waits for its `gate` file
GATE_LIMIT = 15.0

_TEMPLATE = '''#!{python}
import json, os, sys, time
ANSWERS = json.loads({answers!r})
with open({log!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
with open({log!r} + ".pid", "a") as f:
    f.write(str(os.getpid()) + "\\n")
time.sleep({sleep!r})
gate, waited = {gate!r}, 0.0
while gate is not None and not os.path.exists(gate) and waited < {gate_limit!r}:
    time.sleep(0.02)
    waited += 0.02
args = sys.argv[1:]
if len(args) == 4 and args[0] == "get" and args[2:] == ["--mode", "creds"]:
    key = json.dumps([args[1], None])
elif len(args) == 3 and args[0] == "get":
    key = json.dumps([args[1], args[2]])
else:
    sys.stderr.write("usage: keyring get SERVICE USERNAME\\n")
    sys.exit(2)
value = ANSWERS.get(key)
if value is None:
    sys.exit(1)
if isinstance(value, dict):
    if value.get("setsid_grandchild"):
        import subprocess
        g = subprocess.Popen([sys.executable, "-c", "import time, sys; time.sleep(float(sys.argv[1]))",
                              str(value["setsid_grandchild"])], start_new_session=True)
        with open({log!r} + ".grandchild", "a") as f:
            f.write(str(g.pid) + "\\n")
    if value.get("stdout_bytes"):
        chunk, left = b"x" * 65536, value["stdout_bytes"]
        try:
            while left > 0:
                n = min(left, len(chunk))
                sys.stdout.buffer.write(chunk[:n])
                left -= n
            sys.stdout.flush()
        except BrokenPipeError:
            sys.exit(1)
    sys.stdout.write(value.get("stdout", ""))
    sys.stderr.write(value.get("stderr", ""))
    sys.exit(value.get("exit", 0))
if isinstance(value, list):
    sys.stdout.write(value[0] + "\\n" + value[1] + "\\n")
else:
    sys.stdout.write(value + "\\n")
'''


def write_keyring_script(directory: Path, answers: dict, *, log: Path, sleep: float = 0, name: str = "keyring",
                         gate: Path | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    encoded = json.dumps({json.dumps(list(k)): v for k, v in answers.items()})
    path = directory / name
    path.write_text(_TEMPLATE.format(python=sys.executable, answers=encoded, log=str(log), sleep=sleep,
                                     gate=None if gate is None else str(gate), gate_limit=GATE_LIMIT))
    path.chmod(0o755)
    return path


def read_calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line]


def read_pids(log: Path) -> list[int]:
    p = Path(str(log) + ".pid")
    return [int(x) for x in p.read_text().split()] if p.exists() else []


def read_grandchild_pids(log: Path) -> list[int]:
    p = Path(str(log) + ".grandchild")
    return [int(x) for x in p.read_text().split()] if p.exists() else []
