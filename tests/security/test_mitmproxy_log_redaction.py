"""What mitmproxy itself logs (shown with -vv) quotes what it could not parse: a request line
with a password in the URL's userinfo, or a token in its query, reached credproxy's log in
clear (`Bad HTTP request line: b'GET http://alice:SECRET@...'`). Against a real `credproxy
serve`, through a raw socket as a naive client would send it; the secrets must be masked
while the line itself is still logged (so the user sees what was refused)."""

from __future__ import annotations

import socket

import pytest

from tests.helpers.proxy import proxy_env, start_credproxy

pytestmark = pytest.mark.e2e

PASSWORD, QUERY_TOKEN = "url-USERINFO-s3cret", "glpat-QUERY-s3cret"


def test_a_bad_request_line_is_logged_with_its_secrets_masked(tmp_path):
    proxy = start_credproxy(tmp_path, "-vv", env=proxy_env(tmp_path))
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in proxy.auth_headers().items())
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            s.sendall(f"GET http://alice:{PASSWORD}@127.0.0.1:9/x?private_token={QUERY_TOKEN} HTTP/1.1\r\n"
                      f"Host: 127.0.0.1:9\r\n{head}Connection: close\r\n\r\n".encode())
            reply = s.recv(4096)
        assert reply.startswith(b"HTTP/1.1 400")
    finally:
        proxy.stop()
    log = proxy.stderr()
    assert "Bad HTTP request line" in log, log  # the refused line is still shown
    assert PASSWORD not in log and QUERY_TOKEN not in log, log
