"""The interception policy (credproxy.interception): which hosts get TLS terminated, and why."""

from __future__ import annotations

import logging

import pytest

from credproxy.config import Settings
from credproxy.interception import InterceptionPolicy
from credproxy.tlsrules import build_plan


def policy(knows=(), **fields):
    settings = Settings(**fields)
    return InterceptionPolicy(settings, build_plan(settings), lambda host, port: host in knows)


def test_a_host_nothing_names_is_passed_through():
    d = policy().decide("files.pythonhosted.org", 443)
    assert (d.intercept, d.reason) == (False, "nothing names this host; its TLS is relayed untouched")


def test_a_host_a_source_knows_is_intercepted():
    assert policy(knows={"pkgs.test"}).decide("PKGS.test", 443).intercept  # host compared lower-cased


@pytest.mark.parametrize("fields, reason", [
    ({"intercept": "all"}, "intercept = all"),
    ({"intercept_hosts": ["*.corp.test"]}, "intercept-hosts"),
    ({"allow_insecure_host": ["a.corp.test"]}, "TLS policy"),
])
def test_config_makes_a_host_intercepted(fields, reason):
    d = policy(**fields).decide("a.corp.test", 443)
    assert d.intercept and reason in d.reason


def test_intercept_hosts_with_a_port_matches_that_port_only():
    p = policy(intercept_hosts=["a.corp.test:8443"])
    assert p.decide("a.corp.test", 8443).intercept
    assert not p.decide("a.corp.test", 443).intercept


def test_a_failing_source_means_intercept_and_logs_the_type_only(caplog):
    def broken(host, port):
        raise RuntimeError("token=hunter2")
    settings = Settings()
    with caplog.at_level(logging.WARNING, logger="credproxy.interception"):
        d = InterceptionPolicy(settings, build_plan(settings), broken).decide("pkgs.test", 443)
    assert d.intercept and "RuntimeError" in d.reason
    assert "RuntimeError" in caplog.text and "hunter2" not in caplog.text + d.reason


def _clienthello(sni: str, port: int = 443):
    from types import SimpleNamespace

    return SimpleNamespace(ignore_connection=False, client_hello=SimpleNamespace(sni=sni),
                           context=SimpleNamespace(server=SimpleNamespace(address=(sni, port))))


@pytest.mark.parametrize("stale", [False, True])
def test_the_connect_hook_decides_off_the_loop_while_a_file_would_be_read(stale):
    """Passthrough.tls_clienthello (every CONNECT): while a credential file changed since it
    was read, `knows_host` would parse it, so it runs in a worker thread; otherwise inline."""
    import asyncio
    import threading

    from credproxy.addons.upstream_tls import Passthrough

    asked_in = []

    def knows(host, port):
        asked_in.append(threading.current_thread())
        return host == "pkgs.test"

    settings = Settings()
    addon = Passthrough(InterceptionPolicy(settings, build_plan(settings), knows, lambda: stale))

    async def connect(sni):
        data = _clienthello(sni)
        await addon.tls_clienthello(data)
        return threading.current_thread(), data.ignore_connection

    loop_thread, ignored = asyncio.run(connect("files.example"))
    assert ignored and (asked_in[-1] is not loop_thread) == stale
    _, ignored = asyncio.run(connect("pkgs.test"))
    assert not ignored


def test_a_failing_read_check_means_deciding_off_the_loop():
    def broken():
        raise OSError("stat failed")

    settings = Settings()
    assert InterceptionPolicy(settings, build_plan(settings), lambda h, p: False, broken).needs_read()
    assert not InterceptionPolicy(settings, build_plan(settings), lambda h, p: False).needs_read()
    everything = Settings(intercept="all")
    assert not InterceptionPolicy(everything, build_plan(everything), lambda h, p: False, broken).needs_read()
