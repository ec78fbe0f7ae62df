"""The harness keeps the bounds its docstrings promise: a server in the test process is not
held up by a client that connects and says nothing, every accepted socket times out, stop()
ends the serving thread and frees the port, and the HTTP/2 server stops with a connection
still open. Real sockets on 127.0.0.1, real TLS (trustme)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import urllib.request

import trustme

from tests.helpers.h2server import H2Server
from tests.helpers.loopback import LoopbackServer, canned_handler
from tests.helpers.servers import make_certs
from tests.helpers.upstream import Upstream


def _https_get(port: int, ca: trustme.CA, path: str = "/public/", timeout: float = 5.0) -> tuple[int, bytes]:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),  # never a proxy variable
                                         urllib.request.HTTPSHandler(context=context))
    with opener.open(f"https://localhost:{port}{path}", timeout=timeout) as response:
        return response.status, response.read()


def test_a_client_that_never_starts_its_handshake_does_not_hold_up_the_upstream():
    """Before, the observe tests' upstream did its TLS handshake in the accept loop with no
    timeout: one silent client and nobody else was served."""
    ca = trustme.CA()
    with Upstream(ca=ca) as upstream:
        with socket.create_connection(("127.0.0.1", upstream.port), timeout=10):
            time.sleep(0.3)  # accepted by now, and silent
            started = time.monotonic()
            status, body = _https_get(upstream.port, ca)
            assert (status, body) == (200, b"public ok\n")
            assert time.monotonic() - started < 5


def test_an_idle_connection_is_closed_by_the_server_after_its_timeout():
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    with LoopbackServer(canned_handler(200, b"ok"), context=context, timeout=1.0) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as silent:
            started = time.monotonic()
            try:
                closed = silent.recv(1) == b""
            except ConnectionResetError:
                closed = True
            assert closed and time.monotonic() - started < 5, "the server kept a silent socket open"


def test_stop_ends_the_serving_thread_and_frees_the_port():
    server = LoopbackServer(canned_handler(200, b"ok"), label="stop-test").start()
    port = server.port
    assert any(t.name == f"stop-test-{port}" for t in threading.enumerate())
    server.stop()
    assert not any(t.name == f"stop-test-{port}" for t in threading.enumerate())
    with socket.socket() as probe:
        probe.settimeout(5)
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "still accepting after stop()"


def test_the_h2_server_stops_with_a_connection_still_open(tmp_path):
    """asyncio's wait_closed() waits for open connections (Python 3.12+): stop() closes them
    itself, so a client that keeps its connection cannot make stop() fail or leave the thread."""
    certs = make_certs(tmp_path / "certs")
    server = H2Server.start(certs)
    context = ssl.create_default_context(cafile=str(certs.ca_pem))
    context.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    with context.wrap_socket(raw, server_hostname="localhost") as idle:
        assert idle.selected_alpn_protocol() == "h2"
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 5
        assert not server._thread.is_alive()
