"""proxy/reload.py without a proxy: which environment variables are named as fixed at
start-up, which files are watched, and that a change (or a failed load) is handled once."""

from __future__ import annotations

import asyncio
import os
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


def test_a_look_reloads_once_per_change_and_keeps_state_on_a_bad_load(tmp_path):
    env = {"HOME": str(tmp_path), "CREDPROXY_DATA_DIR": str(tmp_path / "d")}
    applied, results = [], []

    def load():
        if results:
            raise results.pop()
        return Settings(env=env)

    r = Reloader(Settings(env=env), load, applied.append, install_signal_handler=False)

    def look() -> bool:  # one look of the watcher, as the proxy's event loop runs it
        return asyncio.run(r.look_and_reload())

    assert not look()
    (tmp_path / ".netrc").write_text("machine h login u password p\n")
    assert look() and len(applied) == 1
    assert not look()
    results.append(ConfigError("c.toml: bad"))
    (tmp_path / ".netrc").write_text("")
    assert not look() and len(applied) == 1  # not applied: the previous settings stay
    assert not look() and len(applied) == 1  # and it does not retry until the next change
    assert Path(tmp_path / ".netrc").exists()


def test_a_credential_file_rewritten_in_the_same_tick_at_the_same_size_is_a_change(tmp_path):
    """`auth login` twice in a row (a new password of the same length) can leave mtime, size
    and inode as they were: the content digest still tells the two apart."""
    from credproxy.proxy.reload import _stamp

    f = tmp_path / "credentials.toml"
    f.write_text('password = "first-secret"\n')
    st = os.stat(f)
    before_meta, before = _stamp(f), _stamp(f, digest=True)
    with open(f, "r+") as out:  # in place: same inode, same size
        out.write('password = "other-secret"\n')
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _stamp(f) == before_meta  # metadata alone cannot see it
    assert _stamp(f, digest=True) != before


def _counting_reloader(tmp_path, prepare, applied, discarded):
    env = {"HOME": str(tmp_path), "CREDPROXY_DATA_DIR": str(tmp_path / "d")}
    return Reloader(Settings(env=env), lambda: Settings(env=env), applied.append, prepare=prepare,
                    discard=discarded.append, install_signal_handler=False)


def test_areload_reads_in_a_worker_and_swaps_on_the_loop(tmp_path):
    """Loading the settings and preparing them (every credential file read and parsed) run in
    a worker thread; only the swap runs on the event loop, where the addons read it."""
    import asyncio
    import threading

    threads: dict[str, threading.Thread] = {}
    applied: list = []

    def prepare(settings):
        threads["prepare"] = threading.current_thread()
        return "built"

    def apply(built):
        threads["apply"] = threading.current_thread()
        applied.append(built)

    r = _counting_reloader(tmp_path, prepare, [], [])
    r.apply = apply

    async def main():
        threads["loop"] = threading.current_thread()
        return await r.areload("SIGHUP")

    assert asyncio.run(main())
    assert applied == ["built"]
    assert threads["apply"] is threads["loop"] and threads["prepare"] is not threads["loop"]


def test_a_slow_reload_that_finishes_after_a_newer_one_is_discarded(tmp_path):
    """Two reloads at once (a file change and SIGHUP): the newer one's result stays, the older
    build that finishes last is dropped (its resolver closed), never swapped in over it."""
    import asyncio
    import threading

    entered, gate = threading.Event(), threading.Event()
    count = iter(range(1, 10))
    applied: list = []
    discarded: list = []

    def prepare(settings):
        n = next(count)
        if n == 1:
            entered.set()
            assert gate.wait(10)
        return f"build{n}"

    r = _counting_reloader(tmp_path, prepare, applied, discarded)

    async def main():
        slow = asyncio.get_running_loop().create_task(r.areload("first"))
        assert await asyncio.to_thread(entered.wait, 10)  # the first build is under way
        assert await r.areload("second")
        gate.set()
        return await slow

    assert asyncio.run(main()) is False
    assert applied == ["build2"] and discarded == ["build1"]


def test_reloads_finishing_in_order_are_both_applied(tmp_path):
    import asyncio

    applied: list = []
    count = iter(range(1, 10))
    r = _counting_reloader(tmp_path, lambda settings: f"build{next(count)}", applied, [])

    async def main():
        # one after the other: with both under way at once, which build finishes first is up
        # to the threads (a loaded CI machine finished the second first, and the first was
        # then rightly dropped); the overlapping case is the test above, with a gate
        return [await r.areload("first"), await r.areload("second")]

    assert asyncio.run(main()) == [True, True]
    assert applied == ["build1", "build2"]


def test_areload_keeps_the_previous_settings_with_the_same_warnings(tmp_path, caplog):
    import asyncio

    env = {"HOME": str(tmp_path), "CREDPROXY_DATA_DIR": str(tmp_path / "d")}
    applied: list = []

    def bad_load():
        raise ConfigError("c.toml: bad")

    def bad_prepare(settings):
        raise ConfigError("c.toml: allow-insecure-host: bad pattern")

    previous = Settings(env=env)
    r = Reloader(previous, bad_load, applied.append, install_signal_handler=False)
    with caplog.at_level("WARNING", logger="credproxy.reload"):
        assert asyncio.run(r.areload("SIGHUP")) is False
        r.load_settings, r.prepare = (lambda: Settings(env=env)), bad_prepare
        assert asyncio.run(r.areload("SIGHUP")) is False
    assert applied == [] and r.settings is previous
    assert ("SIGHUP, but the settings do not load: c.toml: bad; keeping the previous ones (fix it, then "
            "save again or send SIGHUP)") in caplog.text
    assert "SIGHUP, but the new settings cannot be applied: c.toml: allow-insecure-host: bad pattern" in caplog.text


def test_a_swap_that_mitmproxy_refuses_changes_nothing(tmp_path):
    """The races review: the swap set the new resolver, auth addon, chain and policy first and
    only then the steps that can fail (mitmproxy's options, the per-host client certificates),
    so a failure left old and new settings mixed while the log said the previous ones were
    kept. The steps that can fail now come first (the certificates are loaded in the worker
    build), and mitmproxy rolls its options back."""
    from credproxy.addons.auth import AuthAddon
    from credproxy.proxy.master import Proxy, ServeConfig, build_resolver

    env = {"HOME": str(tmp_path), "CREDPROXY_DATA_DIR": str(tmp_path / "d")}
    before = Settings(env=env)
    proxy = Proxy(before, ServeConfig(), resolver=build_resolver(before), install_signal_handlers=False)
    proxy._auth = AuthAddon(proxy.resolver)
    old_resolver = proxy.resolver

    class Options:
        def update(self, **options):
            raise ValueError("mitmproxy rejected the new upstream roots")

    class Master:
        options = Options()

    proxy.master = Master()
    staged = proxy.prepare_settings(Settings(env=env))
    try:
        proxy.apply_prepared(staged)
    except ValueError:
        pass
    else:
        raise AssertionError("the refusal was swallowed")
    finally:
        staged.discard()
    assert proxy.settings is before
    assert proxy.resolver is old_resolver and proxy._auth.resolver is old_resolver
    old_resolver.close()
