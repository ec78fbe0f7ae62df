"""proxy/reload.py without a proxy: which environment variables are named as fixed at
start-up, which files are watched, and that a change (or a failed load) is handled once."""

from __future__ import annotations

from pathlib import Path

from credproxy.config import ConfigError, Settings
from credproxy.proxy.reload import Reloader, env_credential_names, watched_files


def test_env_credential_names_are_names_only():
    env = {
        "UV_INDEX_PRIVATE_PASSWORD": "s3cret", "UV_INDEX_PRIVATE_USERNAME": "alice",
        "UV_INDEX_EMPTY_PASSWORD": "", "UV_INDEX_URL": "https://u:p@h.example/simple/",
        "PIP_INDEX_URL": "https://h.example/simple/", "HF_TOKEN": "hf_x", "OTHER": "x",
    }
    names = env_credential_names(env)
    assert names == ["UV_INDEX_PRIVATE_PASSWORD", "UV_INDEX_PRIVATE_USERNAME", "HF_TOKEN", "UV_INDEX_URL"]
    assert "HF_TOKEN" not in env_credential_names({**env, "UV_NO_HF_TOKEN": "1"})


def test_watched_files(tmp_path):
    env = {"HOME": str(tmp_path), "NETRC": "~/other-netrc", "CREDPROXY_DATA_DIR": str(tmp_path / "d"),
           "CREDPROXY_CONFIG": str(tmp_path / "c.toml")}
    files = watched_files(Settings(env=env), None)
    assert files == [tmp_path / "c.toml", tmp_path / "other-netrc", tmp_path / ".netrc",
                     tmp_path / ".local/share/uv/credentials/credentials.toml", tmp_path / "d" / "credentials.toml"]


def test_check_reloads_once_per_change_and_keeps_state_on_a_bad_load(tmp_path):
    env = {"HOME": str(tmp_path), "CREDPROXY_DATA_DIR": str(tmp_path / "d")}
    applied, results = [], []

    def load():
        if results:
            raise results.pop()
        return Settings(env=env)

    r = Reloader(Settings(env=env), load, applied.append, install_signal_handler=False)
    assert not r.check()
    (tmp_path / ".netrc").write_text("machine h login u password p\n")
    assert r.check() and len(applied) == 1
    assert not r.check()
    results.append(ConfigError("c.toml: bad"))
    (tmp_path / ".netrc").write_text("")
    assert r.check() and len(applied) == 1  # not applied: the previous settings stay
    assert not r.check()  # and it does not retry until the next change
    assert Path(tmp_path / ".netrc").exists()
