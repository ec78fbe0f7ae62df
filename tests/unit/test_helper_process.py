"""credentials/sources/process.py: the environment and the stderr echo of credential helpers
(token-command, git's helpers, the keyring command), and run_bounded, the one runner for all of them."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from credproxy.credentials.sources.process import echo_stderr, helper_environment, run_bounded
from tests.helpers.timing import pid_alive, wait_gone

TOKEN = "pr0xy-t0ken-s3cret"


def test_the_proxy_pair_and_proxy_variables_that_carry_it_are_removed():
    env = helper_environment({
        "PATH": "/usr/bin", "CREDPROXY_PROXYAUTH": f"me:{TOKEN}",
        "HTTPS_PROXY": f"http://me:{TOKEN}@127.0.0.1:8899",
        "http_proxy": f"http://credproxy:{TOKEN}@[::1]:8899",
        "ALL_PROXY": "http://corp.example:3128",
    })
    assert env == {"PATH": "/usr/bin", "ALL_PROXY": "http://corp.example:3128"}


def test_what_credproxy_env_replaced_comes_back():
    env = helper_environment({
        "CREDPROXY_ENV_ACTIVE": "1", "HTTPS_PROXY": "http://127.0.0.1:8899",
        "CREDPROXY_PREVIOUS_HTTPS_PROXY": "http://corp.example:3128", "HTTP_PROXY": "http://127.0.0.1:8899",
    })
    assert env["HTTPS_PROXY"] == "http://corp.example:3128" and "HTTP_PROXY" not in env


def test_all_proxy_is_not_one_credproxy_env_sets():
    env = {"CREDPROXY_ENV_ACTIVE": "1", "ALL_PROXY": "socks5://corp.example:1080"}
    assert helper_environment(env) == env


def test_a_company_proxy_with_its_own_password_is_kept():
    env = {"HTTPS_PROXY": "http://bob:corp-pw@corp.example:3128", "NO_PROXY": "localhost"}
    assert helper_environment(env) == env


def test_the_runner_uses_it(monkeypatch):
    monkeypatch.setenv("CREDPROXY_PROXYAUTH", f"me:{TOKEN}")
    show = [sys.executable, "-c", "import os; print(os.environ.get('CREDPROXY_PROXYAUTH', 'absent'))"]
    assert run_bounded(show, env=None, timeout=10).stdout.strip() == b"absent"


def test_stderr_is_echoed_with_controls_escaped(capfd):
    echo_stderr("one\x1b[31m red\r\nbell\x07 \u202eevil")
    err = capfd.readouterr().err
    assert err == "one\\x1b[31m red\\x0d\nbell\\x07 \\u202eevil\n"


# --- run_bounded: the one runner (keyring, token-command, git credential fill, certs) -----------


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", "import os, subprocess, sys, time\n" + code]


def test_stdin_data_reaches_the_program_then_eof():
    request = b"protocol=https\nhost=h.example\n\n" * 5000  # 160 KB: more than a pipe holds
    outcome = run_bounded(_py("data = sys.stdin.buffer.read(); print(len(data), data.count(b'host='))"),
                          env=None, timeout=10, stdin_data=request)
    assert outcome.problem is None and outcome.out.split() == [str(len(request)), "5000"]


def test_no_stdin_data_is_an_empty_stdin():
    outcome = run_bounded(_py("print(len(sys.stdin.read()))"), env=None, timeout=10)
    assert outcome.out.strip() == "0"


def test_cwd_and_environment():
    outcome = run_bounded(_py("print(os.getcwd()); print(os.environ['ONLY'])"), env={"ONLY": "this"},
                          timeout=10, cwd="/tmp")
    assert outcome.out.split() == [os.path.realpath("/tmp"), "this"]


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_one_byte_over_the_limit_kills_it(stream):
    code = f"sys.{stream}.write('s3cret\\n' + 'y' * 1018); sys.{stream}.flush(); time.sleep(60)"
    started = time.monotonic()
    outcome = run_bounded(_py(code), env=None, timeout=30, limit=1024)
    assert time.monotonic() - started < 10
    assert outcome.problem == f"printed more than 1 KiB on {stream}, killed" and not outcome.exited
    assert len(getattr(outcome, stream)) <= 1024
    exactly = run_bounded(_py(code.replace("1018", "1017").replace("time.sleep(60)", "")), env=None, timeout=30, limit=1024)
    assert exactly.problem is None and len(getattr(exactly, stream)) == 1024


def test_timeout_kills_it_and_its_children():
    pids = run_bounded(_py("print(os.getpid(), subprocess.Popen(['sleep', '60']).pid, flush=True); time.sleep(60)"),
                       env=None, timeout=1)
    assert pids.problem == "no answer within 1s, killed" and pids.returncode == 124
    assert wait_gone([int(pid) for pid in pids.out.split()]) == []


def test_exit_status_and_a_program_that_cannot_start(tmp_path):
    assert run_bounded(_py("sys.exit(3)"), env=None, timeout=10).problem == "exit 3"
    script = tmp_path / "helper"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    outcome = run_bounded([str(script)], env=None, timeout=10)
    assert outcome.problem == "cannot run: No such file or directory" and outcome.stderr == b""


def test_a_setsid_child_holding_the_pipes_does_not_delay_the_answer_and_is_killed():
    """The program prints its answer and exits, leaving a child in its own session (setsid)
    that holds stdout and stderr for 30 s: the answer comes within EOF_GRACE of the exit, and
    the child is gone (on Linux the reaper kills every descendant)."""
    code = ("child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'], start_new_session=True)\n"
            "print('answer'); print(child.pid, flush=True)")
    started = time.monotonic()
    outcome = run_bounded(_py(code), env=None, timeout=20)
    elapsed = time.monotonic() - started
    print(f"answer after {elapsed:.2f}s")  # pytest -s
    assert outcome.problem is None and outcome.out.split()[0] == "answer"
    assert elapsed < 2, f"waited {elapsed:.1f}s for the child holding the pipes"
    assert wait_gone([int(outcome.out.split()[1])]) == []


def test_without_a_subreaper_the_pipes_are_waited_for_at_most_the_eof_grace(tmp_path, monkeypatch):
    """Elsewhere than Linux the reaper cannot find a child that called setsid(), which keeps
    the pipes open after the program exited: the runner takes the answer EOF_GRACE later.
    (The reaper, run with its Linux-only prctl calls switched off, stands in for macOS.)"""
    from credproxy.credentials.sources import process

    stand_in = tmp_path / "reaper_without_prctl.py"
    stand_in.write_text(f"import sys\nsys.path.insert(0, {os.path.dirname(process._REAPER)!r})\nimport reaper\n"
                        "reaper._prctl = lambda option, value: False\nsys.exit(reaper.main(sys.argv))\n")
    monkeypatch.setattr(process, "_REAPER", str(stand_in))
    code = ("child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'], start_new_session=True)\n"
            "print('answer'); print(child.pid, flush=True)")
    started = time.monotonic()
    outcome = run_bounded(_py(code), env=None, timeout=20)
    elapsed = time.monotonic() - started
    survivor = int(outcome.out.split()[1])
    try:
        assert outcome.problem is None and outcome.out.split()[0] == "answer"
        assert process.EOF_GRACE <= elapsed < process.EOF_GRACE + 1.5, elapsed
        assert pid_alive(survivor)  # the documented limit: the setsid child outlived the program
    finally:
        os.kill(survivor, signal.SIGKILL)


def test_leaving_the_last_serving_scope_stops_the_programs_under_way(tmp_path):
    """Two proxies in one process: the first to stop leaves the other's helpers alone; when the
    last stops, the program under way is stopped at once (its Outcome says so), and nothing is
    refused afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    from credproxy.credentials.sources import process

    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(30)"
    with ThreadPoolExecutor(1) as pool:
        with process.serving():
            with process.serving():
                pending = pool.submit(run_bounded, [sys.executable, "-c", code], env=None, timeout=30)
                deadline = time.monotonic() + 10
                while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
                    time.sleep(0.01)
            assert not pending.done()  # another proxy still serves: its helper runs on
            started = time.monotonic()
        outcome = pending.result(timeout=10)
        assert time.monotonic() - started < 5
        assert outcome.stopped and outcome.problem == "stopped: the proxy is stopping"
        assert wait_gone([int(pid_file.read_text())]) == []
    assert run_bounded([sys.executable, "-c", "print('x')"], env=None, timeout=10).out == "x\n"


def test_a_sigterm_while_the_command_starts_still_kills_it(tmp_path):
    """The review reproduced it: SIGTERM (stop_all at shutdown) arriving while the reaper's
    Popen was starting the command made the reaper exit 143 without killing it, and the
    command (in its own process group) ran on. The signal now waits for Popen to return.
    The reaper runs in a process of its own here (it kills every descendant of its process)."""
    import subprocess

    pid_file = tmp_path / "pid"
    script = f"""
import os, signal, subprocess, sys
sys.path.insert(0, {os.path.dirname(os.path.abspath(__import__("credproxy").__file__))!r} + "/..")
from credproxy.credentials.sources import reaper
real = subprocess.Popen
def popen_then_sigterm(*args, **kwargs):
    child = real(*args, **kwargs)
    open({str(pid_file)!r}, "w").write(str(child.pid))
    os.kill(os.getpid(), signal.SIGTERM)  # as if stop_all's signal came now
    return child
reaper.subprocess.Popen = popen_then_sigterm
sys.exit(reaper.main(["reaper.py", "30", "--", "sleep", "30"]))
"""
    with open(tmp_path / "stderr", "w+") as err:  # a file, not a pipe the command would hold open
        done = subprocess.run([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=err, timeout=60)
        err.seek(0)
        done.stderr = err.read()
    pid = int(pid_file.read_text())
    left = wait_gone([pid])
    if left:
        os.kill(pid, signal.SIGKILL)  # the command we started, by its pid
    assert done.returncode == 143, done.stderr
    assert left == [], "the command outlived the reaper"
