"""Issue 11 point 5: `credproxy status` and `credproxy service install|status|uninstall`,
with the real `credproxy serve`, a real pypiserver index behind TLS and real curl.

- status: two requests through the proxy to a realm whose credential comes from
  UV_INDEX_<NAME>_USERNAME/PASSWORD and one that answers 401; `credproxy status` shows the
  listening address, the realm, its source, cached-since and the counts, and no secret (in
  any form) is in its output or the state file, which is 0600 in a 0700 directory and gone
  after the proxy stops.
- service: `service install` under a temporary XDG_CONFIG_HOME writes a unit that
  `systemd-analyze verify --user` accepts; the ExecStart parsed back from the unit, started
  as it stands (plus --port 0, with the unit's Environment and a hermetic rest), is a proxy
  that serves a registry request."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from credproxy import service as svc
from credproxy.credentials.model import secret_forms
from tests.helpers.clients import client_env, curl
from tests.helpers.proxy import CREDPROXY, hermetic_env, proxy_env, start_credproxy

from .conftest import INDEX_PASSWORD, INDEX_USERNAME

pytestmark = pytest.mark.e2e


def _status(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = hermetic_env(data_dir.parent, CREDPROXY_DATA_DIR=str(data_dir))
    return subprocess.run([str(CREDPROXY), "status", *args], env=env, capture_output=True, text=True, timeout=60)


def _get(proxy, url: str, tmp_path: Path) -> int:
    out = curl("-o", os.devnull, "-w", "%{http_code}", url,
               env=client_env(tmp_path, proxy_url=proxy.url, ca_bundle=proxy.ca_cert))
    return int(out.stdout or 0)


def _leaks(text: str) -> list[str]:
    return [form for form in secret_forms(INDEX_PASSWORD, INDEX_USERNAME) if form in text]


def test_status_shows_realms_sources_and_counts_without_secrets(tmp_path, tls_certs, private_index,
                                                               index_factory, credproxy_factory):
    other = index_factory()  # another realm, no credential for it: 401
    (tmp_path / "credproxy-config.toml").write_text(
        f'intercept-hosts = ["other.test"]\n[[index]]\nname = "private"\nurl = "{private_index.url}"\n')
    proxy = credproxy_factory(extra_env={"UV_INDEX_PRIVATE_USERNAME": INDEX_USERNAME,
                                         "UV_INDEX_PRIVATE_PASSWORD": INDEX_PASSWORD})
    assert _get(proxy, private_index.url + "private-pkg/", tmp_path) == 200
    assert _get(proxy, private_index.url + "private-dep/", tmp_path) == 200
    assert _get(proxy, other.url_for("other.test") + "private-pkg/", tmp_path) == 401

    stranger = curl("-o", os.devnull, "-w", "%{http_code}", f"http://stranger.test:{other.port}/",
                    env=client_env(tmp_path, proxy_url=proxy.bare_url))  # no proxy token
    assert stranger.stdout == "407"

    realm = f"https://pkgs.test:{private_index.port}"
    other_realm = f"https://other.test:{other.port}"
    deadline = time.monotonic() + 10
    while True:  # the state file is written at most once a second
        out = _status(proxy.data_dir)
        if f"{other_realm} |" in out.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert out.returncode == 0, out.stderr
    assert f"credproxy (pid {proxy.pid}) listening on {proxy.bare_url}" in out.stdout
    assert "upstream proxy: none (direct)" in out.stdout
    line = next(ln for ln in out.stdout.splitlines() if ln.strip().startswith(realm + " |"))
    cells = [c.strip() for c in line.split("|")]
    assert cells[1] == "env:UV_INDEX_PRIVATE" and cells[2].endswith("ago") and cells[3:] == ["2", "0"], line
    other_line = next(ln for ln in out.stdout.splitlines() if ln.strip().startswith(other_realm + " |"))
    assert [c.strip() for c in other_line.split("|")][1:] == ["none", "-", "1", "1"], other_line
    assert "stranger.test" not in out.stdout  # a refused client leaves no trace in the status

    as_json = _status(proxy.data_dir, "--json")
    (state,) = json.loads(as_json.stdout)
    assert state["realms"][realm]["requests"] == 2 and state["listen"] == proxy.bare_url

    status_dir = proxy.data_dir / "status"
    files = list(status_dir.glob("*.json"))
    assert [f.name for f in files] == [f"{proxy.pid}.json"]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(status_dir.stat().st_mode) == 0o700
    for label, text in (("status", out.stdout + out.stderr), ("status --json", as_json.stdout),
                        ("state file", files[0].read_text())):
        assert _leaks(text) == [], f"{label} leaks {_leaks(text)}"

    proxy.stop()
    after = _status(proxy.data_dir)
    assert after.returncode == 1 and "no credproxy is running" in after.stdout
    assert list(status_dir.glob("*.json")) == []


def _systemd_analyze() -> str | None:
    return shutil.which("systemd-analyze")


def _install(tmp_path: Path, *serve_args: str, extra: dict[str, str] | None = None) -> tuple[Path, dict]:
    env = hermetic_env(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "xdg-config"), **(extra or {}))
    out = subprocess.run([str(CREDPROXY), "service", "install", "--no-start", *serve_args], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    unit = tmp_path / "xdg-config" / "systemd" / "user" / "credproxy.service"
    assert f"wrote {unit}" in out.stdout and "systemctl --user enable --now credproxy.service" in out.stdout
    return unit, env


@pytest.mark.skipif(_systemd_analyze() is None, reason="systemd-analyze is not installed (Debian package `systemd`)")
def test_installed_unit_passes_systemd_analyze_verify(tmp_path):
    unit, env = _install(tmp_path, "--system-certs", extra={"HTTPS_PROXY": "http://proxy.corp.test:3128",
                                                            "NO_PROXY": "localhost,.corp.test"})
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    verify = subprocess.run(["systemd-analyze", "verify", "--user", str(unit)],
                            env={**env, "XDG_RUNTIME_DIR": str(runtime)}, capture_output=True, text=True,
                            timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stderr.strip() == "", verify.stderr  # no warning either (unknown keys, bad quoting)
    text = unit.read_text()
    assert "Restart=on-failure" in text and "StandardError=journal" in text
    assert 'Environment="HTTPS_PROXY=http://proxy.corp.test:3128"' in text
    assert f'Environment="CREDPROXY_CONFIG={env["CREDPROXY_CONFIG"]}"' in text


def test_the_units_command_line_runs_a_working_proxy(tmp_path, private_index):
    (tmp_path / "credproxy-config.toml").write_text(f'[[index]]\nname = "private"\nurl = "{private_index.url}"\n')
    unit, env = _install(tmp_path)
    text = unit.read_text()
    argv = svc.parse_exec_start(text)
    assert Path(argv[0]).is_absolute() and argv[1:] == ["serve"]
    unit_env = dict(line[len('Environment="'):-1].split("=", 1) for line in text.splitlines()
                    if line.startswith("Environment="))
    assert unit_env["CREDPROXY_CONFIG"] == str(tmp_path / "credproxy-config.toml")
    run_env = {**proxy_env(tmp_path, upstream_ca=private_index.ca), **unit_env,
               "UV_INDEX_PRIVATE_USERNAME": INDEX_USERNAME, "UV_INDEX_PRIVATE_PASSWORD": INDEX_PASSWORD}
    proxy = start_credproxy(tmp_path, env=run_env, command=argv, name="from-unit")
    try:
        assert _get(proxy, private_index.url + "private-pkg/", tmp_path) == 200
        assert private_index.count(200) >= 1
    finally:
        proxy.stop()

    status = subprocess.run([str(CREDPROXY), "service", "status"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert f"installed: {unit}" in status.stdout and "log: journalctl --user -u credproxy.service" in status.stdout
    removed = subprocess.run([str(CREDPROXY), "service", "uninstall"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert removed.returncode == 0 and not unit.exists(), removed.stdout + removed.stderr
    status = subprocess.run([str(CREDPROXY), "service", "status"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert "installed: no" in status.stdout


def test_install_refuses_a_secret_for_the_unit(tmp_path):
    env = hermetic_env(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
                       HTTPS_PROXY=f"http://{INDEX_USERNAME}:{INDEX_PASSWORD.replace('%', '%25').replace('@', '%40').replace('/', '%2F').replace(':', '%3A')}@proxy.corp.test:3128")
    out = subprocess.run([str(CREDPROXY), "service", "install", "--no-start"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "~/.netrc" in out.stderr
    assert _leaks(out.stdout + out.stderr) == []
    assert not (tmp_path / "xdg-config" / "systemd").exists()
    token = subprocess.run([str(CREDPROXY), "service", "install", "--no-start", "--proxyauth", "me:tok3n-secret"],
                           env={**env, "HTTPS_PROXY": ""}, capture_output=True, text=True, timeout=60)
    assert token.returncode == 2 and "tok3n-secret" not in token.stdout + token.stderr
    assert not (tmp_path / "xdg-config" / "systemd").exists()
    for flag in (["--upstream-proxy", "http://corp-user:upstr3am-secret@proxy.corp.test:3128"],
                 ["--upstream-proxy=http://ghp_T0kenAsProxyUser0123456789abcdXYZ@proxy.corp.test:3128"]):
        chained = subprocess.run([str(CREDPROXY), "service", "install", "--no-start", *flag],
                                 env={**env, "HTTPS_PROXY": ""}, capture_output=True, text=True, timeout=60)
        out = chained.stdout + chained.stderr
        assert chained.returncode == 2 and "~/.netrc" in out, out
        assert "upstr3am-secret" not in out and "ghp_" not in out, out
        assert not (tmp_path / "xdg-config" / "systemd").exists()


def test_status_shows_the_company_proxy_serve_took_from_its_environment(tmp_path, credproxy_factory):
    """serve chains to the HTTPS_PROXY it was started with (credproxy/egress.py): status says so,
    with the proxy's password masked."""
    from urllib.parse import quote

    proxy = credproxy_factory(extra_env={"HTTPS_PROXY": f"http://corp-user:{quote(INDEX_PASSWORD, safe='')}@127.0.0.1:9"})
    deadline = time.monotonic() + 10
    while True:
        out = _status(proxy.data_dir)
        if "listening on" in out.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert out.returncode == 0, out.stderr
    assert "upstream proxy: for https: http://corp-user:****@127.0.0.1:9 (from HTTPS_PROXY)" in out.stdout, out.stdout
    assert _leaks(out.stdout + out.stderr) == []
