"""`credproxy serve/run/env/ca` as a user runs them: real subprocesses on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from credproxy.proxy.envvars import ALL_VARS, CA_VARS

from tests.helpers.proxy import credproxy_cmd, hermetic_env, start_credproxy
from tests.helpers.servers import die_with_parent, read_line, stop_pid

pytestmark = pytest.mark.e2e


def run_cli(env, *args, timeout=60, **kw):
    return subprocess.run(credproxy_cmd(*args), env=env, capture_output=True, text=True, timeout=timeout, **kw)


def connect_ok(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        try:
            s.connect((host, port))
            return True
        except OSError:
            return False


def test_serve_port_0_prints_the_port_listens_and_stops_on_sigterm(tmp_path):
    env = hermetic_env(tmp_path)
    proxy = start_credproxy(tmp_path, env=env)
    try:
        assert connect_ok("127.0.0.1", proxy.port)
        if socket.has_ipv6 and _ipv6_loopback():
            assert connect_ok("::1", proxy.port), "localhost may resolve to ::1: listen there too"
        # quiet: no flow lines, no mitmproxy banner on stdout
        time.sleep(0.2)
    finally:
        code = proxy.stop(sig=signal.SIGTERM)
    assert code == 0
    assert not connect_ok("127.0.0.1", proxy.port)


def test_serve_stops_cleanly_on_sigint(tmp_path):
    proxy = start_credproxy(tmp_path, env=hermetic_env(tmp_path))
    assert proxy.stop(sig=signal.SIGINT) == 0
    assert "Traceback" not in proxy.stderr()


def test_port_in_use_is_a_one_line_error_naming_the_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(hermetic_env(tmp_path), "serve", "--port", str(port), timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(port) in lines[0] and "--port" in lines[0]
    assert result.stdout == ""


def test_non_loopback_listen_is_refused_without_proxy_auth(tmp_path):
    result = run_cli(hermetic_env(tmp_path), "serve", "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 2
    assert "0.0.0.0" in result.stderr and "--proxyauth" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_non_loopback_listen_with_proxy_auth_requires_it(tmp_path):
    env = hermetic_env(tmp_path)
    pair = tmp_path / "proxyauth"
    pair.write_text("alice:tok3n-value-0123456789\n")
    pair.chmod(0o600)
    proc = subprocess.Popen(
        credproxy_cmd("serve", "--host", "0.0.0.0", "--port", "0", "--proxyauth-file", str(pair)),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
    try:
        line = read_line(proc.stdout, timeout=30)
        assert line.startswith("credproxy listening on http://0.0.0.0:"), line
        port = int(line.strip().rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"CONNECT pkgs.test:443 HTTP/1.1\r\nHost: pkgs.test:443\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 407")
    finally:
        stop_pid(proc, grace=10)
    assert "tok3n-value" not in proc.stderr.read()


def test_ca_path_creates_the_ca_once_with_a_private_key(tmp_path):
    env = hermetic_env(tmp_path)
    first = run_cli(env, "ca", "path")
    assert first.returncode == 0, first.stderr
    cert = first.stdout.strip()
    assert cert.endswith("mitmproxy-ca-cert.pem")
    ca_dir = os.path.dirname(cert)
    assert ca_dir.startswith(str(tmp_path / "data"))
    assert stat.S_IMODE(os.stat(ca_dir).st_mode) == 0o700
    key = os.path.join(ca_dir, "mitmproxy-ca.pem")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert "PRIVATE KEY" not in open(cert).read()
    before = open(cert).read()
    again = run_cli(env, "ca", "path")
    assert again.stdout.strip() == cert
    assert open(cert).read() == before, "the CA is reused, not regenerated"


def test_ca_bundle_holds_public_roots_configured_ca_and_proxy_ca(tmp_path):
    import certifi
    import trustme

    upstream_ca = trustme.CA()
    upstream_pem = tmp_path / "corp-ca.pem"
    upstream_ca.cert_pem.write_to_path(str(upstream_pem))
    env = hermetic_env(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(f'ca-bundle = "{upstream_pem}"\n')
    out = tmp_path / "bundle.pem"
    result = run_cli(env, "ca", "bundle", "--output", str(out), "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    text = out.read_text()
    proxy_ca = open(run_cli(env, "ca", "path").stdout.strip()).read().strip()
    assert proxy_ca in text
    assert "PRIVATE KEY" not in text
    first_certifi = open(certifi.where()).read().split("-----END CERTIFICATE-----")[0]
    assert first_certifi.split("-----BEGIN CERTIFICATE-----")[1] in text
    assert upstream_ca.cert_pem.bytes().decode().strip() in text
    # default location: paths.bundle_path()
    default = run_cli(env, "ca", "bundle")
    assert default.stdout.strip() == str(tmp_path / "data" / "ca-bundle.pem")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish", "powershell"])
def test_env_prints_every_variable_for_each_shell(tmp_path, shell):
    env = hermetic_env(tmp_path)
    result = run_cli(env, "env", "--shell", shell)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    bundle = str(tmp_path / "data" / "ca-bundle.pem")
    assert os.path.exists(bundle)
    for name in ALL_VARS:
        assert name in out
    lines = out.strip().splitlines()
    assert lines[-1].startswith("# ") and "credproxy env" in lines[-1]
    token = (tmp_path / "data" / "proxy-token").read_text().strip()
    url = f"http://credproxy:{token}@127.0.0.1:8899"
    if shell in ("bash", "zsh"):
        assert f"export HTTPS_PROXY='{url}'" in out
        assert f"export SSL_CERT_FILE='{bundle}'" in out
        assert 'eval "$(credproxy env' in lines[-1]
    elif shell == "fish":
        assert f"set -gx HTTPS_PROXY '{url}'" in out
        assert "| source" in lines[-1]
    else:
        assert f"$Env:HTTPS_PROXY = '{url}'" in out
        assert "Invoke-Expression" in lines[-1]
    unset = run_cli(env, "env", "--shell", shell, "--unset")
    for name in ALL_VARS:
        assert name in unset.stdout


def test_env_output_works_when_evaluated_by_bash(tmp_path):
    env = hermetic_env(tmp_path)
    script = 'eval "$(' + " ".join(credproxy_cmd("env")) + ')" && env'
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    seen = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    token = (tmp_path / "data" / "proxy-token").read_text().strip()
    assert seen["HTTPS_PROXY"] == f"http://credproxy:{token}@127.0.0.1:8899"
    assert seen["no_proxy"] == "localhost,127.0.0.1,::1"
    for name in CA_VARS:
        assert seen[name] == str(tmp_path / "data" / "ca-bundle.pem")


def test_run_gives_the_command_the_variables_and_returns_its_exit_code(tmp_path):
    env = hermetic_env(tmp_path)
    child = (
        "import os, socket, sys\n"
        "p = os.environ['HTTPS_PROXY']\n"
        "assert p.startswith('http://credproxy:') and '@127.0.0.1:' in p, p\n"
        "port = int(p.rsplit(':', 1)[1])\n"
        "socket.create_connection(('127.0.0.1', port), timeout=5).close()\n"
        "print('PROXY', p)\n"
        "print('CA', os.environ['SSL_CERT_FILE'], os.environ['REQUESTS_CA_BUNDLE'], os.environ['PIP_CERT'])\n"
        "print('NO', os.environ['NO_PROXY'])\n"
        "sys.exit(3)\n"
    )
    result = run_cli(env, "run", "--", sys.executable, "-c", child)
    assert result.returncode == 3, result.stderr
    bundle = str(tmp_path / "data" / "ca-bundle.pem")
    assert f"CA {bundle} {bundle} {bundle}" in result.stdout
    assert "NO localhost,127.0.0.1,::1" in result.stdout
    port = int(result.stdout.split("PROXY ")[1].split()[0].rsplit(":", 1)[1])
    assert not connect_ok("127.0.0.1", port), "the ephemeral proxy is stopped afterwards"


def test_run_forwards_sigterm_to_the_command(tmp_path):
    env = hermetic_env(tmp_path)
    child = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('got TERM', flush=True), sys.exit(7)))\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.Popen(credproxy_cmd("run", "--", sys.executable, "-c", child), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
    try:
        assert read_line(proc.stdout, timeout=60).strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 7
        assert "got TERM" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False
