"""A small HTTPS server that speaks HTTP/2 (ALPN h2, built on the `h2` library that mitmproxy
already depends on) and, like real servers, HTTP/1.1 to a client that does not offer h2. Each request is answered 200 with a JSON body; the requests
(method, path, authorization) are recorded. For testing that credentials reach an HTTP/2
upstream through the proxy.

    server = H2Server.start(certs)        # certs: tests.helpers.servers.TestCerts
    ... https://other.test:{server.port}/ ...
    server.requests -> [H2Request(method, path, authorization, http_version), ...]
    server.stop()

Bounded like the servers in loopback.py: a connection that sends nothing for IDLE_TIMEOUT
seconds is closed, and stop() closes the open connections too, then joins the thread.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import h2.exceptions

IDLE_TIMEOUT = 30.0


@dataclass
class H2Request:
    method: str
    path: str
    authorization: str | None
    http_version: str  # "2" or "1.1": what the proxy spoke upstream


class H2Server:
    def __init__(self, certs):
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certs.server_cert_pem, certs.server_key_pem)
        self.context.set_alpn_protocols(["h2", "http/1.1"])
        self.requests: list[H2Request] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="h2-server")
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @classmethod
    def start(cls, certs) -> "H2Server":
        server = cls(certs)
        server._thread.start()
        if not server._ready.wait(10):
            raise RuntimeError("h2 server did not start")
        return server

    def stop(self) -> None:
        async def close():
            self._server.close()
            # wait_closed() waits for every open connection (3.12+): end them here. abort(), as
            # close() would wait up to 30 s for the client's TLS goodbye.
            for writer in list(self._writers):
                writer.transport.abort()
            if hasattr(self._server, "abort_clients"):  # 3.13: also those whose handler has not run yet
                self._server.abort_clients()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5)
            except TimeoutError:
                pass

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            if writer.get_extra_info("ssl_object").selected_alpn_protocol() != "h2":
                return await self._serve_http1(reader, writer)
            return await self._serve_h2(reader, writer)
        finally:
            self._writers.discard(writer)

    async def _serve_h2(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        headers_by_stream: dict[int, dict[str, str]] = {}
        try:
            while data := await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        headers_by_stream[event.stream_id] = {
                            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                            for k, v in event.headers}
                    elif isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):  # also after a HEADERS-only request
                        self._respond(conn, event.stream_id, headers_by_stream.pop(event.stream_id, {}))
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        return
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, ssl.SSLError, h2.exceptions.ProtocolError, TimeoutError):
            pass
        finally:
            writer.close()

    async def _serve_http1(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Keep-alive HTTP/1.1, requests without bodies (GET/HEAD)."""
        try:
            while head := await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT):
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
                body = self._record(method, path, headers.get("authorization"), "1.1")
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ssl.SSLError, ValueError,
                TimeoutError):
            pass
        finally:
            writer.close()

    def _record(self, method: str, path: str, authorization: str | None, version: str) -> bytes:
        request = H2Request(method, path, authorization, version)
        self.requests.append(request)
        return json.dumps({"path": path, "authorization": authorization is not None}).encode()

    def _respond(self, conn: h2.connection.H2Connection, stream_id: int, headers: dict[str, str]) -> None:
        body = self._record(headers.get(":method", ""), headers.get(":path", ""), headers.get("authorization"), "2")
        conn.send_headers(stream_id, [(":status", "200"), ("content-type", "application/json"),
                                      ("content-length", str(len(body)))])
        conn.send_data(stream_id, body, end_stream=True)
