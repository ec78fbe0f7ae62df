"""Small HTTPS servers on 127.0.0.1 for upstream-TLS tests: each answers every GET with a
JSON document naming the client certificate it saw (subject CN), so a test can tell which
certificate the proxy sent. Optional client-certificate requirement, as gunicorn's
`--cert-reqs 2 --ca-certs` does it (Python's ssl)."""

from __future__ import annotations

import datetime
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import trustme


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        cert = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        cn = None
        if cert:
            for rdn in cert.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        cn = value
        body = json.dumps({"server": self.server.name, "path": self.path, "client_cn": cn}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class TlsServer:
    """HTTPS on 127.0.0.1:<free port> with a leaf from `ca` for `names`."""

    def __init__(self, ca: trustme.CA, names: list[str], name: str = "server",
                 client_ca: trustme.CA | None = None, tls_max: ssl.TLSVersion | None = None,
                 not_after=None):
        kw = {"not_after": not_after} if not_after is not None else {}
        if not_after is not None:
            kw["not_before"] = not_after - datetime.timedelta(days=30)
        leaf = ca.issue_cert(*names, "127.0.0.1", "localhost", **kw)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf.configure_cert(ctx)
        if client_ca is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
            client_ca.configure_trust(ctx)
        if tls_max is not None:
            ctx.maximum_version = tls_max
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.name = name
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # rejected handshakes are expected
        self._ctx = ctx
        raw_accept = self.httpd.get_request

        def get_request():
            sock, addr = raw_accept()
            sock.settimeout(10)
            # handshake in the handler thread's first read, not in the accept loop
            return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

        self.httpd.get_request = get_request
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


def client_pem(ca: trustme.CA, cn: str, path, key_first: bool = False, with_chain: bool = True) -> str:
    """One PEM with the client certificate (+ chain) and its key; returns the path."""
    cert = ca.issue_cert(cn, common_name=cn)
    chain = b"".join(b.bytes() for b in (cert.cert_chain_pems if with_chain else cert.cert_chain_pems[:1]))
    key = cert.private_key_pem.bytes()
    path.write_bytes(key + chain if key_first else chain + key)
    return str(path)
