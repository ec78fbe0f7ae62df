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
