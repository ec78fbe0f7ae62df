"""`serve --remember` (issue 12 point 7) with the real pip: a credential the client sent
itself and the index accepted is stored once; the next pip, with no credential, installs."""

from __future__ import annotations

import pytest
from mitmproxy import io as mio

from tests.helpers.clients import installed, pip_install, run
from tests.helpers.proxy import credproxy_cmd, proxy_env
from tests.helpers.upstream import leaks

from .conftest import INDEX_PASSWORD, INDEX_USERNAME

pytestmark = pytest.mark.e2e


def _config(tmp_path, index) -> None:
    # the index is configured (so its host is intercepted) with no credential anywhere
    (tmp_path / "credproxy-config.toml").write_text(
        f'[[index]]\nname = "corp"\nurl = "{index.url}"\n')


def _scan(label: str, text: str) -> None:
    found = leaks(text, INDEX_PASSWORD, INDEX_USERNAME)
    assert found == [], f"{label} contains {found}"


def _store(tmp_path):
    return tmp_path / "credproxy-credentials" / "credentials.toml"


def test_pip_with_credentials_once_then_without(tmp_path, private_index, credproxy_factory, proxied_env):
    _config(tmp_path, private_index)
    flows = tmp_path / "flows.mitm"
    proxy = credproxy_factory("--remember", "-v", "--save-flows", str(flows))
    env = proxied_env(proxy)

    bare = pip_install(tmp_path / "t0", "--index-url", private_index.url, "private-pkg", env=env)
    assert bare.returncode != 0  # nothing known yet: the index refuses

    first = pip_install(tmp_path / "t1", "--index-url", private_index.creds_url("pkgs.test"), "private-pkg", env=env)
    assert first.returncode == 0, first.stderr
    store = _store(tmp_path).read_text()
    assert store.count("[[credential]]") == 1, "one entry, once per run, however many requests"
    assert f'service = "https://pkgs.test:{private_index.port}/"' in store
    assert f'username = "{INDEX_USERNAME}"' in store

    private_index.reset()
    second = pip_install(tmp_path / "t2", "--index-url", private_index.url, "private-pkg", env=env)
    assert second.returncode == 0, second.stderr
    assert installed(tmp_path / "t2") == {"private-pkg": "1.0", "private-dep": "1.0"}
    assert private_index.count(auth=False) == 0, "the remembered credential goes up front"

    explained = run(credproxy_cmd("explain", private_index.url),
                    env={**proxy_env(tmp_path), "CREDPROXY_DATA_DIR": str(proxy.data_dir)}, timeout=60)
    assert "decision: inject from store" in explained.stdout, explained.stdout + explained.stderr
    proxy.stop()
    log = proxy.stderr()
    line = f"remembered https://pkgs.test:{private_index.port}/ for {INDEX_USERNAME} in the store (source: client)"
    assert log.count(line) == 1, log
    for label, text in (("proxy log", log + proxy.stdout()), ("pip", first.stdout + first.stderr + second.stderr),
                        ("explain", explained.stdout + explained.stderr)):
        _scan(label, text)
    _scan("saved flows", flows.read_bytes().decode("latin-1"))
    with open(flows, "rb") as f:
        for flow in mio.FlowReader(f).stream():
            _scan("a saved flow", repr(flow.get_state()))


def test_a_rejected_client_credential_is_not_remembered(tmp_path, private_index, credproxy_factory, proxied_env):
    _config(tmp_path, private_index)
    proxy = credproxy_factory("--remember")
    env = proxied_env(proxy)
    wrong = private_index.url_for("pkgs.test", userinfo=f"{INDEX_USERNAME}:not-the-password")
    result = pip_install(tmp_path / "t", "--index-url", wrong, "private-pkg", env=env)
    assert result.returncode != 0
    # the index saw the client's credential and refused it
    assert any(r.auth and r.status in (401, 403) for r in private_index.requests()), private_index.requests()
    proxy.stop()
    assert not _store(tmp_path).exists()
    assert "remembered" not in proxy.stderr()


def test_not_without_the_flag_nor_for_an_excluded_host(tmp_path, private_index, credproxy_factory, proxied_env):
    _config(tmp_path, private_index)
    for args in ((), ("--remember", "--remember-exclude", "pkgs.test")):
        proxy = credproxy_factory(*args)
        result = pip_install(tmp_path / f"t{len(args)}", "--index-url", private_index.creds_url("pkgs.test"),
                             "private-pkg", env=proxied_env(proxy))
        assert result.returncode == 0, result.stderr
        proxy.stop()
        assert not _store(tmp_path).exists(), args
        assert "remembered" not in proxy.stderr()
