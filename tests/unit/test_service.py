"""The service files (credproxy/service.py) and the status record (credproxy/status.py) as
pure functions: the launchd plist read back with plistlib, the systemd unit's ExecStart read
back through the quoting, the environment a service keeps, the status counters."""

from __future__ import annotations

import plistlib
import stat
from pathlib import Path

import pytest

from credproxy import service as svc
from credproxy import status as st


def test_launchd_plist_round_trip(tmp_path):
    argv = ["/Users/me/.local/bin/credproxy", "serve", "--system-certs", "--config", "/Users/me/my config.toml"]
    env = {"HTTPS_PROXY": "http://proxy.corp.test:3128", "NO_PROXY": ".corp.test,localhost"}
    log = tmp_path / "service.log"
    doc = plistlib.loads(svc.launchd_plist(argv, env, log))
    assert doc["Label"] == svc.LAUNCHD_LABEL
    assert doc["ProgramArguments"] == argv
    assert doc["EnvironmentVariables"] == env
    assert doc["RunAtLoad"] is True
    assert doc["KeepAlive"] == {"SuccessfulExit": False}  # restarted when it fails, not after a clean stop
    assert doc["StandardErrorPath"] == doc["StandardOutPath"] == str(log)


def test_launchd_plan_paths(tmp_path):
    env = {"HOME": str(tmp_path), "CREDPROXY_DATA_DIR": str(tmp_path / "data")}
    plan = svc.plan(["--port", "8899"], env, platform="darwin")
    assert plan.platform == "launchd"
    assert plan.path == tmp_path / "Library/LaunchAgents" / f"{svc.LAUNCHD_LABEL}.plist"
    assert plan.log == str(tmp_path / "data" / "service.log")
    assert plan.argv[-3:] == ["serve", "--port", "8899"] and Path(plan.argv[0]).is_absolute()
    assert plistlib.loads(svc.render(plan, env))["EnvironmentVariables"] == {"CREDPROXY_DATA_DIR": str(tmp_path / "data")}


def test_rotate_log_keeps_one_old_file(tmp_path):
    log = tmp_path / "service.log"
    log.write_text("first run\n")
    svc.rotate_log(log)
    assert not log.exists() and (tmp_path / "service.log.1").read_text() == "first run\n"
    svc.rotate_log(log)  # nothing to rotate: no error
    log.write_text("second run\n")
    svc.rotate_log(log)
    assert (tmp_path / "service.log.1").read_text() == "second run\n"


@pytest.mark.parametrize("argv", [
    ["/opt/credproxy/bin/credproxy", "serve"],
    ["/home/me/my tools/credproxy", "serve", "--config", "/home/me/cfg with space.toml"],
    ["/usr/bin/credproxy", "serve", "--host", "127.0.0.1", "--allow-insecure-host", "100%.test"],
    ["/usr/bin/credproxy", "serve", "--config", '/tmp/quote"and$dollar\\back.toml'],
])
def test_systemd_exec_start_round_trip(argv):
    assert svc.parse_exec_start(svc.systemd_unit(argv, {})) == argv


def test_systemd_unit_shape(tmp_path):
    text = svc.systemd_unit(["/usr/bin/credproxy", "serve"], {"HTTPS_PROXY": "http://p.test:3128",
                                                             "CREDPROXY_CONFIG": "/c/50%.toml"})
    assert "Restart=on-failure" in text and "StandardOutput=journal" in text and "WantedBy=default.target" in text
    assert 'Environment="CREDPROXY_CONFIG=/c/50%%.toml"' in text  # % is a specifier in units
    assert svc.systemd_unit_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "systemd/user/credproxy.service"
    assert svc.systemd_unit_path({"HOME": str(tmp_path)}) == tmp_path / ".config/systemd/user/credproxy.service"


def test_service_environment_keeps_proxy_and_config_and_prefers_what_env_replaced():
    env = {
        "HTTPS_PROXY": "http://127.0.0.1:8899",  # set by `credproxy env`: credproxy itself
        "CREDPROXY_PREVIOUS_HTTPS_PROXY": "http://proxy.corp.test:3128",  # the company proxy before
        "HTTP_PROXY": "http://127.0.0.1:8899",
        "CREDPROXY_PREVIOUS_HTTP_PROXY": "",  # there was none: dropped
        "NO_PROXY": "localhost",
        "CREDPROXY_CONFIG": "/home/me/.config/credproxy/config.toml",
        "UV_INDEX_PRIVATE_PASSWORD": "never-copied",
        "PATH": "/usr/bin",
    }
    assert svc.service_environment(env) == {
        "HTTPS_PROXY": "http://proxy.corp.test:3128",
        "NO_PROXY": "localhost",
        "CREDPROXY_CONFIG": "/home/me/.config/credproxy/config.toml",
    }


@pytest.mark.parametrize("value", ["http://user:pa55@proxy.test:3128", "user:pa55@proxy.test:3128"])
def test_service_environment_refuses_a_proxy_password(value):
    with pytest.raises(svc.ServiceError) as e:
        svc.service_environment({"HTTPS_PROXY": value})
    assert "pa55" not in str(e.value) and "~/.netrc" in str(e.value)


def test_windows_gets_the_documented_recipe():
    with pytest.raises(svc.ServiceError, match="docs/service.md"):
        svc.plan([], {}, platform="win32")


def test_write_file_is_atomic_and_readable(tmp_path):
    target = tmp_path / "a" / "credproxy.service"
    svc.write_file(target, b"one")
    svc.write_file(target, b"two")
    assert target.read_bytes() == b"two" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["credproxy.service"]


# --- status record ---------------------------------------------------------------------------------


def test_status_counters_and_cached_since():
    s = st.ProxyStatus(pid=1, listen="http://127.0.0.1:8899", started=100.0)
    realm = "https://pkgs.test"
    s.note(realm, source="none", injected=False, status=401, cached=False, now=101)
    s.note(realm, source="netrc", injected=True, status=200, cached=False, now=102)
    s.note(realm, source="netrc", injected=True, status=200, cached=True, now=103)
    r = s.realms[realm]
    assert (r.source, r.cached_since, r.requests, r.unauthorized) == ("netrc", 102, 3, 1)
    s.note(realm, source="netrc", injected=True, status=401, cached=True, now=104)  # rejected: evicted
    assert s.realms[realm].cached_since is None and s.realms[realm].unauthorized == 2
    back = st.ProxyStatus.from_json(s.to_json())
    assert back == s


def test_status_realms_are_bounded():
    s = st.ProxyStatus(pid=1, listen="", started=0)
    for i in range(st.MAX_REALMS + 5):
        s.note(f"https://h{i}.test", source="none", injected=False, status=200, cached=False, now=1)
    assert len(s.realms) == st.MAX_REALMS and s.other_requests == 5


def test_status_file_is_owner_only_and_dead_processes_are_dropped(tmp_path):
    env = {"CREDPROXY_DATA_DIR": str(tmp_path)}
    import os

    live = st.ProxyStatus(pid=os.getpid(), listen="http://127.0.0.1:1", started=0)
    path = st.write(live, env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    dead = st.ProxyStatus(pid=2 ** 22 + 12345, listen="http://127.0.0.1:2", started=0)  # above pid_max
    st.write(dead, env)
    (tmp_path / "status" / "999.json").write_text("{not json")
    found, problems = st.read_all(env)
    assert [p.pid for p in found] == [os.getpid()]
    assert not (tmp_path / "status" / f"{dead.pid}.json").exists()
    assert len(problems) == 1 and "999.json" in problems[0]


def test_status_shows_the_upstream_proxy_redacted():
    class S:
        upstream_proxy = "http://user:hunter2@proxy.corp.test:3128"

    shown = st.upstream_proxy_shown(S())
    assert "hunter2" not in shown and "proxy.corp.test:3128" in shown
    assert st.upstream_proxy_shown(object()) is None


def test_after_credproxy_env_in_a_shell_with_no_proxy_the_service_keeps_none():
    """The common path: no company proxy, `eval "$(credproxy env)"`, then `service install`.
    The proxy variables `env` set point at credproxy itself (with its token) and nothing was
    replaced: the service keeps none of them, and does not refuse."""
    from credproxy.proxy.envvars import shell_environment
    user = {"PATH": "/usr/bin", "CREDPROXY_CONFIG": "/c.toml"}
    exported, _ = shell_environment("http://credproxy:t0ken@127.0.0.1:8899", "/ca.pem", user, [])
    env = {**user, **exported}
    assert env.get("CREDPROXY_ENV_ACTIVE") == "1" and "127.0.0.1" in env["HTTPS_PROXY"]
    kept = svc.service_environment(env)
    assert not {"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"} & set(kept), kept
    assert kept["CREDPROXY_CONFIG"] == "/c.toml"


@pytest.mark.parametrize("value", ["http://ghp_T0kenAsProxyUser0123456789abcdXYZ@proxy.test:3128",
                                   "ghp_T0kenAsProxyUser0123456789abcdXYZ@proxy.test:3128"])
def test_service_environment_refuses_a_proxy_username_alone(value):
    """A username without a password may be the token (uv masks `TOKEN@host`): not written either."""
    with pytest.raises(svc.ServiceError) as e:
        svc.service_environment({"HTTPS_PROXY": value})
    assert "ghp_" not in str(e.value) and "~/.netrc" in str(e.value)
