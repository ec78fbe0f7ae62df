"""End-to-end fixtures: real servers on 127.0.0.1, hermetic clients, the real proxy.

Session-scoped (started once): tls_certs, index_wheels, private_index_server.
Per test: private_index (counters reset), index_factory, echo_factory / echo_server / mtls_echo_server,
clean_env, credproxy_factory, proxied_env. Everything started here is stopped here, by pid.
"""

from __future__ import annotations

import subprocess
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.helpers.clients import client_env, combined_bundle
from tests.helpers.proxy import Proxy, proxy_env, start_credproxy
from tests.helpers.servers import EchoServer, PrivateIndex, TestCerts, make_certs
from tests.helpers.wheels import make_wheel

INDEX_USERNAME = "alice"
# Characters that need URL-encoding, so tests see encoding bugs and can scan encoded forms.
INDEX_PASSWORD = "s3cret-Pa55:w@rd/%"


@contextmanager
def stopping(start):
    """A factory fixture's body: `start(n, ...)` (n counts the calls) wrapped so that everything
    it returned is stopped when the block ends, each even if stopping another fails."""
    started = []

    def factory(*args, **kwargs):
        thing = start(len(started), *args, **kwargs)
        started.append(thing)
        return thing

    try:
        yield factory
    finally:
        with ExitStack() as stack:
            for thing in started:
                stack.callback(thing.stop)


def pytest_collection_modifyitems(items):
    for item in items:
        if "/tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory) -> TestCerts:
    """Trusted CA + server cert (pkgs/other/mirror/mtls.test, localhost, 127.0.0.1, ::1),
    an independent untrusted CA (+ server cert), a client CA with a client cert."""
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def index_wheels(tmp_path_factory) -> dict[str, Path]:
    """private-pkg 1.0 (requires private-dep) and private-dep 1.0, as wheel files."""
    d = tmp_path_factory.mktemp("wheels")
    return {
        "private-pkg": make_wheel(d, "private-pkg", "1.0", requires=["private-dep"]),
        "private-dep": make_wheel(d, "private-dep", "1.0"),
    }


@pytest.fixture(scope="session")
def private_index_server(tmp_path_factory, tls_certs, index_wheels):
    index = PrivateIndex.start(
        tmp_path_factory.mktemp("index"), tls_certs, username=INDEX_USERNAME,
        password=INDEX_PASSWORD, wheels=list(index_wheels.values()),
    )
    yield index
    index.stop()


@pytest.fixture
def private_index(private_index_server) -> PrivateIndex:
    """The session's index with its counters reset for this test."""
    private_index_server.reset()
    return private_index_server


@pytest.fixture
def index_factory(tmp_path, tls_certs, index_wheels):
    """start(username=..., password=..., wheels=[...]) -> another PrivateIndex (own port,
    own credentials; default wheels: private-pkg + private-dep), stopped after the test."""

    def start(n: int, *, username: str = "bob", password: str = "other-s3cret",
              wheels: list[Path] | None = None) -> PrivateIndex:
        return PrivateIndex.start(
            tmp_path / f"index{n}", tls_certs, username=username, password=password,
            wheels=list(index_wheels.values()) if wheels is None else wheels,
        )

    with stopping(start) as factory:
        yield factory


@pytest.fixture
def echo_factory(tls_certs):
    """start(**kwargs) -> EchoServer (see EchoServer: client_ca, credentials,
    wrong_credentials_status, untrusted, host); all stopped after the test."""
    with stopping(lambda n, **kwargs: EchoServer.start(tls_certs, **kwargs)) as factory:
        yield factory


@pytest.fixture
def echo_server(echo_factory) -> EchoServer:
    """other.test: answers everything, records Authorization."""
    return echo_factory(host="other.test")


@pytest.fixture
def mtls_echo_server(echo_factory, tls_certs) -> EchoServer:
    """mtls.test: the TLS handshake requires a client cert issued by tls_certs.client_ca_pem."""
    return echo_factory(host="mtls.test", client_ca=tls_certs.client_ca_pem)


@pytest.fixture
def clone(tmp_path) -> Path:
    """A fresh clone of this checkout's committed HEAD: what a user clones and CI runs (the
    install and oldest-lane tests work in it, never in this checkout)."""
    repo = Path(__file__).resolve().parents[2]
    dest = tmp_path / "credproxy"
    r = subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(repo), str(dest)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return dest


@pytest.fixture
def clean_env(tmp_path) -> dict[str, str]:
    """client_env(tmp_path): no proxy, no CA, nothing from this machine."""
    return client_env(tmp_path)


@pytest.fixture
def credproxy_factory(tmp_path, tls_certs):
    """start(*serve_args, env=None, extra_env=None, **kwargs) -> Proxy. Default env:
    proxy_env(tmp_path, upstream_ca=certifi + test CA, extra=extra_env), test names resolved
    to 127.0.0.1. Stopped after the test."""

    def start(n: int, *args: str, env: dict[str, str] | None = None,
              extra_env: dict[str, str | None] | None = None, **kwargs) -> Proxy:
        if env is None:
            env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem, extra=extra_env)
        return start_credproxy(tmp_path, *args, env=env, name=f"credproxy{n}", **kwargs)

    with stopping(start) as factory:
        yield factory


@pytest.fixture
def proxied_env(tmp_path, tls_certs):
    """make(proxy, *, extra=None) -> client env going through `proxy`, trusting the proxy's CA
    and the test CA (for hosts the proxy passes through), nothing else."""

    def make(proxy: Proxy, *, extra: dict[str, str | None] | None = None) -> dict[str, str]:
        bundle = combined_bundle(tmp_path / f"client-bundle-{proxy.port}.pem", proxy.ca_cert,
                                 tls_certs.ca_pem)
        return client_env(tmp_path, proxy_url=proxy.url, ca_bundle=bundle, extra=extra)

    return make
