"""The test bed itself works, without the proxy: real pip/uv/curl against the real servers.

These are the baselines the proxy tests rely on ("without the proxy the same command gets
401"), so they must hold on their own.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile

import pytest

from tests.helpers.clients import (
    REAL_PYTHON,
    client_env,
    curl,
    installed,
    pip_install,
    uv_pip_install,
)
from tests.helpers.proxy import ProxyStartError, proxy_env, start_credproxy
from tests.helpers.wheels import make_wheel


def _status(result) -> str:
    return result.stdout.strip()


def test_pip_without_credentials_gets_401(private_index, tmp_path, clean_env):
    # pip only says "no matching distribution" unless debug-verbose; -vv shows the HTTP 401.
    result = pip_install(
        tmp_path / "target", "-vv", "--index-url", private_index.url_ip, "--cert",
        str(private_index.ca), "private-pkg", env=clean_env, timeout=60,
    )
    assert result.returncode != 0
    assert "401 Client Error: Unauthorized" in result.stdout + result.stderr
    assert private_index.count(401, auth=False) >= 1
    assert private_index.count(200) == 0
    assert installed(tmp_path / "target") == {}


def test_pip_with_credentials_in_url_installs_package_and_dependency(
    private_index, tmp_path, clean_env
):
    result = pip_install(
        tmp_path / "target", "--index-url", private_index.url_with_creds, "--cert",
        str(private_index.ca), "private-pkg", env=clean_env, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert installed(tmp_path / "target") == {"private-pkg": "1.0", "private-dep": "1.0"}
    assert (tmp_path / "target" / "private_pkg" / "__init__.py").read_text() == \
        "__version__ = '1.0'\n"
    assert private_index.count(200, auth=True) >= 4  # 2 project pages + 2 wheels
    assert private_index.count(auth=False) == 0  # pip sent the URL's credentials up front
    assert private_index.password not in result.stdout + result.stderr


def test_pip_with_wrong_password_gets_403(private_index, tmp_path, clean_env):
    url = private_index.url_for("127.0.0.1", userinfo=f"{private_index.username}:wrong")
    result = pip_install(tmp_path / "target", "--index-url", url, "--cert",
                         str(private_index.ca), "private-pkg", env=clean_env, timeout=60)
    assert result.returncode != 0
    assert private_index.count(403, auth=True) >= 1  # pypiserver: wrong creds -> 403, not 401
    assert private_index.count(200) == 0


def test_pip_does_not_trust_the_machine_or_the_untrusted_ca(private_index, tmp_path, tls_certs):
    # Only the untrusted CA given: the index's cert must fail verification.
    env = client_env(tmp_path, ca_bundle=tls_certs.untrusted_ca_pem)
    result = pip_install(tmp_path / "target", "--index-url", private_index.url_with_creds,
                         "--retries", "0", "private-pkg", env=env, timeout=60)
    assert result.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in result.stdout + result.stderr
    assert private_index.count() == 0


def test_uv_with_credentials_installs_into_fresh_venv(private_index, tmp_path, tls_certs):
    env = client_env(tmp_path, ca_bundle=tls_certs.ca_pem)
    venv = tmp_path / "venv"
    result = uv_pip_install(venv, "--index-url", private_index.url_with_creds, "private-pkg",
                            env=env, venv=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert installed(venv) == {"private-pkg": "1.0", "private-dep": "1.0"}
    assert private_index.count(200, auth=True) >= 2


def test_uv_without_credentials_fails_with_401(private_index, tmp_path, tls_certs):
    env = client_env(tmp_path, ca_bundle=tls_certs.ca_pem)
    result = uv_pip_install(tmp_path / "target", "--index-url", private_index.url_ip,
                            "private-pkg", env=env, timeout=60)
    assert result.returncode != 0
    assert "401" in result.stderr
    assert private_index.count(401, auth=False) >= 1
    assert installed(tmp_path / "target") == {}


def test_index_counts_per_test_and_sees_new_wheels(private_index, tmp_path, clean_env):
    ca = str(private_index.ca)
    base = private_index.url_for("127.0.0.1", path="/simple/fresh-pkg/")
    user = f"{private_index.username}:{private_index.password}"
    assert private_index.count() == 0  # reset between tests
    before = curl("--cacert", ca, "-u", user, "-o", "/dev/null", "-w", "%{http_code}", base,
                  env=clean_env)
    assert _status(before) == "404"
    private_index.add_wheel(make_wheel(tmp_path / "w", "fresh-pkg", "0.1"))
    after = curl("--cacert", ca, "-u", user, base, env=clean_env)
    assert "fresh_pkg-0.1-py3-none-any.whl" in after.stdout
    assert curl("--cacert", ca, "-o", "/dev/null", base, env=clean_env).returncode == 0
    assert private_index.counts() == {404: 1, 200: 1, 401: 1}
    assert [r.auth for r in private_index.requests()] == [True, True, False]
    private_index.reset()
    assert private_index.count() == 0


def test_second_index_has_its_own_port_credentials_and_counts(
    private_index, index_factory, clean_env
):
    other = index_factory(username="bob", password="b0b-pw")
    assert other.port != private_index.port
    ca = str(other.ca)
    url = other.url_for("127.0.0.1", path="/simple/private-dep/")
    codes = [
        _status(curl("--cacert", ca, "-u", user, "-o", "/dev/null", "-w", "%{http_code}", url,
                     env=clean_env))
        for user in (f"{private_index.username}:{private_index.password}", "bob:b0b-pw")
    ]
    assert codes == ["403", "200"]  # the first index's credentials are not valid here
    assert other.counts() == {403: 1, 200: 1}
    assert private_index.count() == 0


def test_stock_pip_of_a_new_venv_installs_with_credentials(private_index, tmp_path, clean_env):
    # The pip a user's fresh venv carries (older than ours) must work with the bed too.
    # By name, not IP: pip 24.2's urllib3 on Python 3.13 fails TLS to IP literals
    # ("check_hostname requires server_hostname"); the proxy tests use names anyway.
    venv = tmp_path / "stock"
    subprocess.run([REAL_PYTHON, "-m", "venv", venv], check=True, timeout=120,
                   env=clean_env, capture_output=True)
    result = pip_install(tmp_path / "target", "--index-url", private_index.creds_url("localhost"),
                         "--cert", str(private_index.ca), "private-pkg", env=clean_env,
                         python=venv / "bin" / "python", timeout=90)
    assert result.returncode == 0, result.stderr
    assert installed(tmp_path / "target") == {"private-pkg": "1.0", "private-dep": "1.0"}


def test_index_logs_hold_no_secret(private_index, tmp_path, clean_env):
    curl("--cacert", str(private_index.ca), "-o", "/dev/null", private_index.url_with_creds,
         env=clean_env)
    assert private_index.count(200, auth=True) == 1
    token = base64.b64encode(
        f"{private_index.username}:{private_index.password}".encode()).decode()
    for log in (private_index.counts_path, private_index.access_log, private_index.error_log):
        text = log.read_text()
        assert private_index.password not in text and token not in text


def test_echo_server_records_path_and_authorization(echo_server, tmp_path, clean_env, tls_certs):
    result = curl("--cacert", str(tls_certs.ca_pem), "-u", "bob:pw", echo_server.url_ip + "a/b?x=1",
                  env=clean_env)
    assert result.returncode == 0, result.stderr
    plain = curl("--cacert", str(tls_certs.ca_pem), echo_server.url_ip + "plain", env=clean_env)
    assert plain.returncode == 0, plain.stderr
    first, second = echo_server.requests
    assert (first.path, first.authorization) == ("/a/b?x=1", "Basic " + base64.b64encode(
        b"bob:pw").decode())
    assert (second.path, second.authorization) == ("/plain", None)
    assert echo_server.count(200, auth=True) == 1


def test_echo_server_answers_401_unless_credentials_match(echo_factory, clean_env, tls_certs):
    server = echo_factory(host="mirror.test", credentials=("carol", "pa55"))
    ca = str(tls_certs.ca_pem)
    codes = [
        _status(curl("--cacert", ca, *auth, "-o", "/dev/null", "-w", "%{http_code}",
                     server.url_ip + "simple/", env=clean_env))
        for auth in ([], ["-u", "carol:wrong"], ["-u", "carol:pa55"])
    ]
    assert codes == ["401", "401", "200"]
    assert server.count(401) == 2 and server.count(200, auth=True) == 1


def test_echo_server_can_answer_403_for_wrong_credentials(echo_factory, clean_env, tls_certs):
    server = echo_factory(credentials=("carol", "pa55"), wrong_credentials_status=403)
    codes = [
        _status(curl("--cacert", str(tls_certs.ca_pem), *auth, "-o", "/dev/null", "-w",
                     "%{http_code}", server.url_ip, env=clean_env))
        for auth in ([], ["-u", "carol:wrong"])
    ]
    assert codes == ["401", "403"]


def test_echo_server_status_and_redirect_paths(echo_server, clean_env, tls_certs):
    ca = str(tls_certs.ca_pem)
    teapot = curl("--cacert", ca, "-o", "/dev/null", "-w", "%{http_code}",
                  echo_server.url_ip + "status/418", env=clean_env)
    assert _status(teapot) == "418"
    target = echo_server.url_ip + "landed"
    moved = curl("--cacert", ca, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                 echo_server.url_ip + f"redirect/307?to={target}", env=clean_env)
    assert _status(moved) == f"307 {target}"
    assert [r.status for r in echo_server.requests] == [418, 307]


def test_echo_server_on_ipv6_loopback(echo_factory, clean_env, tls_certs):
    server = echo_factory(bind_host="::1")
    assert server.url_ip == f"https://[::1]:{server.port}/"
    result = curl("--cacert", str(tls_certs.ca_pem), server.url_ip + "v6", env=clean_env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["path"] == "/v6"


def test_echo_server_streams_big_body(echo_server, clean_env, tls_certs, tmp_path):
    size = 20 * 1024 * 1024 + 3
    result = curl("--cacert", str(tls_certs.ca_pem), "-o", str(tmp_path / "big"), "-w",
                  "%{size_download}", echo_server.url_ip + f"big/{size}", env=clean_env)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == size == (tmp_path / "big").stat().st_size


def test_mtls_echo_server_requires_client_cert(mtls_echo_server, clean_env, tls_certs):
    ca = str(tls_certs.ca_pem)
    url = mtls_echo_server.url_ip + "secure"
    without = curl("--cacert", ca, url, env=clean_env)
    assert without.returncode != 0
    wrong = curl("--cacert", ca, "--cert", str(tls_certs.other_client_cert_pem), "--key",
                 str(tls_certs.other_client_key_pem), url, env=clean_env)
    assert wrong.returncode != 0
    good = curl("--cacert", ca, "--cert", str(tls_certs.client_combined_pem), url, env=clean_env)
    assert good.returncode == 0, good.stderr
    assert [(r.path, r.client_cert) for r in mtls_echo_server.requests] == [("/secure", True)]
    assert len(mtls_echo_server.errors) == 2  # the two refused handshakes


def test_server_cert_names_and_untrusted_issuer(echo_factory, clean_env, tls_certs):
    server = echo_factory()
    ca = str(tls_certs.ca_pem)
    for name in ("pkgs.test", "other.test", "mirror.test", "mtls.test", "localhost"):
        ok = curl("--cacert", ca, "--resolve", f"{name}:{server.port}:127.0.0.1",
                  server.url_for(name, "/n"), env=clean_env)
        assert ok.returncode == 0, (name, ok.stderr)
    untrusted = echo_factory(untrusted=True)
    bad = curl("--cacert", ca, untrusted.url_ip, env=clean_env)
    assert bad.returncode == 60  # curl: peer certificate cannot be authenticated
    assert untrusted.requests == []


def test_client_env_is_hermetic(tmp_path, monkeypatch):
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT",
                 "PIP_FIND_LINKS", "HTTPS_PROXY", "no_proxy", "UV_INDEX_URL", "NETRC"):
        monkeypatch.setenv(name, "/leaked")
    env = client_env(tmp_path)
    assert "/leaked" not in env.values()
    assert env["PIP_CONFIG_FILE"] == "/dev/null" and env["UV_NO_CONFIG"] == "1"
    assert env["HOME"].startswith(str(tmp_path))
    proxied = client_env(tmp_path, proxy_url="http://127.0.0.1:9", ca_bundle="/ca.pem",
                         extra={"PIP_CERT": None, "X": "1"})
    assert proxied["HTTPS_PROXY"] == proxied["http_proxy"] == "http://127.0.0.1:9"
    assert proxied["NO_PROXY"] == proxied["no_proxy"] == ""
    assert proxied["SSL_CERT_FILE"] == "/ca.pem" and "PIP_CERT" not in proxied
    assert proxied["X"] == "1"
    assert "/leaked" not in proxy_env(tmp_path).values()


def test_wheel_is_well_formed(tmp_path):
    wheel = make_wheel(tmp_path, "Some.Pkg", "2.0", requires=["dep>=1"])
    assert wheel.name == "some_pkg-2.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = zf.read("some_pkg-2.0.dist-info/METADATA").decode()
    assert {"some_pkg/__init__.py", "some_pkg-2.0.dist-info/WHEEL",
            "some_pkg-2.0.dist-info/RECORD"} <= names
    assert "Requires-Dist: dep>=1" in meta and "Name: Some.Pkg" in meta


# ---- start_credproxy's own mechanics, against stand-in `serve` processes (the real serve is
# exercised by the proxy's e2e tests once it is merged).

_FAKE_SERVE = r"""
import json, os, signal, socket, sys, time
mode = os.environ["FAKE_MODE"]
with open(os.environ["FAKE_LOG"], "w") as f:
    json.dump({"argv": sys.argv[1:], "data_dir": os.environ.get("CREDPROXY_DATA_DIR")}, f)
if mode == "exit":
    sys.stderr.write("credproxy: error: port 8899 is already in use\n")
    sys.exit(2)
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
block = bytearray(30 * 1024 * 1024)  # a known peak for rss_peak_kb, before announcing
del block
if mode == "garbage":
    print("hello", flush=True)
elif mode != "silent":
    print(f"credproxy listening on http://127.0.0.1:{s.getsockname()[1]}", flush=True)
time.sleep(60)
"""


def _fake(tmp_path, mode):
    from tests.helpers.proxy import proxy_env

    log = tmp_path / f"fake-{mode}.json"
    env = proxy_env(tmp_path, extra={"FAKE_MODE": mode, "FAKE_LOG": str(log)})
    return env, log, [sys.executable, "-c", _FAKE_SERVE]


def test_start_credproxy_parses_port_and_stops_by_pid(tmp_path):
    env, log, command = _fake(tmp_path, "ok")
    proxy = start_credproxy(tmp_path, "--config", "x.toml", env=env, command=command)
    try:
        # the fake writes no token: the URL stays bare, and no Proxy-Authorization is invented
        assert proxy.url == proxy.bare_url == f"http://127.0.0.1:{proxy.port}"
        assert proxy.auth_headers() == {}
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()
        recorded = json.loads(log.read_text())
        assert recorded["argv"] == ["--port", "0", "--config", "x.toml"]
        assert recorded["data_dir"] == str(tmp_path / "credproxy-data")
        assert proxy.rss_peak_kb() >= 30 * 1024 > 0
    finally:
        assert proxy.stop() == -signal.SIGTERM
    assert not proxy.alive()


def test_start_credproxy_reports_early_exit_with_stderr(tmp_path):
    env, _, command = _fake(tmp_path, "exit")
    with pytest.raises(ProxyStartError, match=r"(?s)exited with 2 before listening.*port 8899 is already in use"):
        start_credproxy(tmp_path, env=env, command=command)


@pytest.mark.parametrize("mode, message", [("garbage", "unexpected first stdout line 'hello'"),
                                           ("silent", "not listening after 1.0s")])
def test_start_credproxy_fails_on_bad_or_missing_line_and_stops_it(tmp_path, mode, message):
    env, log, command = _fake(tmp_path, mode)
    started = time.monotonic()
    with pytest.raises(ProxyStartError, match=re.escape(message)):
        start_credproxy(tmp_path, env=env, command=command, timeout=1.0)
    assert time.monotonic() - started < 10
    assert log.exists()


def test_proxy_stop_kills_a_process_that_ignores_sigterm(tmp_path):
    env, _, command = _fake(tmp_path, "ignore-term")
    proxy = start_credproxy(tmp_path, env=env, command=command)
    assert proxy.stop(grace=0.5) == -signal.SIGKILL


# ---- the whole bed with the real proxy: fixtures, name mapping, trust, counters together.


def test_pip_uv_curl_through_credproxy_get_credentials_from_index_env(
    private_index, credproxy_factory, proxied_env, tmp_path, tls_certs
):
    from credproxy.credentials.model import secret_forms

    config = tmp_path / "config.toml"
    config.write_text(f'[[index]]\nname = "private"\nurl = "{private_index.url}"\n')
    proxy = credproxy_factory("--config", str(config), extra_env={
        "UV_INDEX_PRIVATE_USERNAME": private_index.username,
        "UV_INDEX_PRIVATE_PASSWORD": private_index.password,
    })
    env = proxied_env(proxy)
    outputs = []

    pip = pip_install(tmp_path / "pip", "--index-url", private_index.url, "private-pkg",
                      env=env, timeout=60)
    outputs.append(pip.stdout + pip.stderr)
    assert pip.returncode == 0, pip.stderr + proxy.stderr()
    assert installed(tmp_path / "pip") == {"private-pkg": "1.0", "private-dep": "1.0"}

    uv = uv_pip_install(tmp_path / "uv", "--index-url", private_index.url, "private-pkg",
                        env=env, timeout=60)
    outputs.append(uv.stdout + uv.stderr)
    assert uv.returncode == 0, uv.stderr + proxy.stderr()
    assert installed(tmp_path / "uv") == {"private-pkg": "1.0", "private-dep": "1.0"}

    page = curl(private_index.url + "private-pkg/", env=env)
    outputs.append(page.stdout + page.stderr)
    assert "private_pkg-1.0-py3-none-any.whl" in page.stdout
    # Every request reached the index authenticated: the proxy injected up front.
    assert private_index.count() == private_index.count(auth=True) > 0
    assert private_index.count(401) == 0

    # Without the proxy the same request is refused: the credential came from the proxy.
    direct = curl("--cacert", str(tls_certs.ca_pem), "-o", "/dev/null", "-w", "%{http_code}",
                  private_index.url_for("127.0.0.1", path="/simple/private-pkg/"),
                  env=client_env(tmp_path))
    assert _status(direct) == "401"

    proxy.stop()
    outputs += [proxy.stdout(), proxy.stderr()]
    for form in secret_forms(private_index.password, private_index.username):
        for text in outputs:
            assert form not in text
