"""The request log and `--save-flows`: see what happened without ever showing a secret.

`addons(settings)` returns the addons for the proxy master; put them AFTER the auth addon so
`flow.metadata["credproxy"]` is final when a flow completes:

- `AuditLog`: one line per request (time, method, redacted URL, status, credential source,
  pre-emptive or retry, upstream time, bytes) and one line per passthrough tunnel; text or
  JSON (`--log-format json`); `-v` adds why no credential was sent.
- `RedactedFlowSaver` (`--save-flows FILE`): mitmproxy's own flow format (`mitmproxy -r FILE`),
  written from a redacted COPY of each flow; the live flow is never touched. The file is
  created 0600 (an existing file of ours is truncated and set to 0600), never through a
  symbolic link and never another user's file or a non-regular file. Bodies over
  `SAVED_BODY_LIMIT` (and compressed bodies that decode to more) are left out; the flow's
  `credproxy` metadata notes their size.

Every line is redacted before it reaches the logger: the URL with `redact_url` (userinfo and
token query parameters), then the whole line with `redact_text` against every credential the
flow carried or the proxy injected (Authorization, Proxy-Authorization, URL userinfo, the
first request's and the re-send's credential), so even a misbehaving reason text cannot leak
one. The formatter escapes control characters (logsafe.py).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import sys
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Iterable

from mitmproxy import http, io

from ..hints import CLIENT_TLS_FIX
from ..credentials.model import MASK, parse_authorization, redact_text, redact_url, split_userinfo
from ..logsafe import SafeFormatter
from .auth import RETRY_MARK, injected_credentials

LOGGER_NAME = "credproxy.audit"
#: the marker a redacted header value shows in a saved flow
REDACTED = "[redacted by credproxy]"

_AUTH_HEADERS = ("authorization", "proxy-authorization")
_COOKIE_REQUEST_HEADERS = ("cookie",)
_COOKIE_RESPONSE_HEADERS = ("set-cookie",)
#: A request or response body larger than this is not written to --save-flows (its size is).
SAVED_BODY_LIMIT = 1 << 20


def addons(settings) -> list:
    """The audit addons for this configuration: the request log always; the flow saver with
    `--save-flows`; and the cycle collector that keeps a long-running proxy's memory flat
    (memory.py; it rides along here so the proxy master needs no change)."""
    from .memory import CycleCollector

    result: list = [AuditLog(settings)]
    if getattr(settings, "save_flows", None):
        result.append(RedactedFlowSaver(settings.save_flows))
    result.append(CycleCollector())
    return result


# --- secrets a flow carries ------------------------------------------------------------------


def flow_secrets(flow: http.HTTPFlow) -> tuple[list[str], list[str]]:
    """(secrets, usernames) present in the flow's request: Authorization and
    Proxy-Authorization header values (and the secrets inside them), URL userinfo, and every
    credential the auth addon injected into it or into its re-send."""
    secrets: list[str] = []
    usernames: list[str] = []
    headers = flow.request.headers
    for name in _AUTH_HEADERS:
        for value in headers.get_all(name):
            _add_header_secret(value, secrets, usernames)
    for value in headers.get_all("cookie"):
        # cookie values are session secrets too; mask each value, keep nothing to show
        for part in value.split(";"):
            _, _, cookie_value = part.strip().partition("=")
            if len(cookie_value) >= 4:
                secrets.append(cookie_value)
    for authority in (flow.request.authority, flow.request.pretty_url):
        _add_url_secret(authority, secrets, usernames)
    for creds in injected_credentials(flow):  # the proxy's own, including the re-send's
        if creds.secret:
            secrets.append(creds.secret)
        if creds.username:
            usernames.append(creds.username)
        try:
            _add_header_secret(creds.header_value(), secrets, usernames)
        except UnicodeError:
            pass  # never sent (the addon answered 502); the raw secret is in the list already
    return secrets, usernames


def _add_header_secret(value: str, secrets: list[str], usernames: list[str]) -> None:
    value = value.strip()
    if not value:
        return
    creds = parse_authorization(value)
    if creds is not None:
        if creds.secret:
            secrets.append(creds.secret)
        if creds.username:
            usernames.append(creds.username)
    # the raw value after the scheme (base64 blob, token, or something we cannot parse)
    _, _, rest = value.partition(" ")
    for item in (rest.strip(), value):
        if len(item) >= 4:
            secrets.append(item)


def _add_url_secret(url: str, secrets: list[str], usernames: list[str]) -> None:
    if "@" not in url:
        return
    if "://" not in url:
        url = "http://" + url
    try:
        _, creds = split_userinfo(url)
    except ValueError:
        # undecodable userinfo: mask the raw text between // and @
        raw = url.split("://", 1)[1].rpartition("@")[0]
        secrets.append(raw)
        return
    if creds is None:
        return
    if creds.password:
        secrets.append(creds.password)
    if creds.username:
        usernames.append(creds.username)
        if creds.password is None and len(creds.username) >= 4:
            # a username alone in a URL is often a token (uv shows it as ****@)
            secrets.append(creds.username)


def _clean(text: str, secrets: Iterable[str], usernames: Iterable[str]) -> str:
    return redact_text(text, list(secrets), list(usernames))


# --- the request log -------------------------------------------------------------------------


@dataclass
class _Tunnel:
    target: str
    started: float
    intercepted: bool = False
    logged: bool = False


class AuditLog:
    """One line per request and one per passthrough tunnel, to stderr or a file."""

    def __init__(self, settings, stream: IO[str] | None = None):
        self.json = getattr(settings, "log_format", "text") == "json"
        self.verbose = int(getattr(settings, "verbose", 0) or 0)
        self.logger = logging.getLogger(f"{LOGGER_NAME}.{id(self):x}")
        self.logger.propagate = False  # never through mitmproxy's or the root handlers
        self.logger.setLevel(logging.INFO)
        log_file = getattr(settings, "log_file", None)
        if stream is not None:
            self.handler: logging.Handler = logging.StreamHandler(stream)
        elif log_file:
            self.handler = logging.FileHandler(log_file, encoding="utf-8")
        else:
            self.handler = _StderrHandler()
        self.handler.setFormatter(SafeFormatter("%(message)s", json=self.json))
        self.logger.addHandler(self.handler)
        self._tunnels: dict[str, _Tunnel] = {}

    # mitmproxy hooks ------------------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._tunnels[flow.client_conn.id] = _Tunnel(
            target=f"{_host_for_url(flow.request.host)}:{flow.request.port}", started=time.time()
        )

    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        tunnel = self._tunnels.get(flow.client_conn.id)
        if tunnel is not None:
            tunnel.logged = True
        error = flow.error.msg if flow.error else _connect_error_text(flow.response)
        status = flow.response.status_code if flow.response else None
        self._emit_tunnel(flow, tunnel, "connect-failed", status=status, error=error)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        tunnel = self._tunnels.get(flow.client_conn.id)
        if tunnel is not None:
            tunnel.intercepted = True

    def tls_failed_client(self, data) -> None:
        # the client refused our certificate: the most common setup problem, say so
        tunnel = self._tunnels.get(data.context.client.id)
        if tunnel is None or tunnel.logged:
            return
        tunnel.logged = True
        error = data.conn.error or "TLS handshake with the client failed"
        self._emit_tunnel(None, tunnel, "client-tls-failed", error=error, fix=CLIENT_TLS_FIX, warn=True)

    def client_disconnected(self, client) -> None:
        tunnel = self._tunnels.pop(client.id, None)
        if tunnel is None or tunnel.intercepted or tunnel.logged:
            return
        if getattr(client, "tls_established", False):
            return  # we terminated TLS: intercepted, even if no request came
        self._emit_tunnel(None, tunnel, "passthrough")

    def response(self, flow: http.HTTPFlow) -> None:
        self._emit_request(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._emit_request(flow)

    def done(self) -> None:
        self.logger.removeHandler(self.handler)
        self.handler.close()

    # formatting -----------------------------------------------------------------------------

    def request_record(self, flow: http.HTTPFlow) -> dict:
        meta = flow.metadata.get("credproxy") or {}
        source = str(meta.get("source") or "none")
        action = str(meta.get("action") or "")
        injected = action == "inject"
        retried = bool(meta.get("retried"))
        if retried:
            auth = "retry"
        elif injected and meta.get("preemptive", True):
            auth = "preemptive"
        elif action in ("fail", "refuse"):
            auth = action  # nothing was sent: the proxy answered the client itself
        else:
            auth = "-"
        record: dict = {
            "time": _iso(flow.request.timestamp_start or time.time()),
            "method": flow.request.method,
            "url": redact_url(flow.request.url),
            "status": flow.response.status_code if flow.response else None,
            "source": source,
            "auth": auth,
            "action": action or None,
            "cached": bool(meta.get("cached")),
            "upstream_ms": _upstream_ms(flow),
            "bytes": _body_bytes(flow.response),
        }
        if flow.error is not None:
            record["error"] = flow.error.msg
        if action in ("fail", "refuse") and meta.get("reason"):
            record["reason"] = str(meta["reason"])  # why the proxy answered: always shown
        elif self.verbose and not injected and meta.get("reason"):
            record["reason"] = str(meta["reason"])
        elif self.verbose and not injected and not meta:
            record["reason"] = "the auth addon did not see this request"
        return record

    def _emit_request(self, flow: http.HTTPFlow) -> None:
        if flow.request.method.upper() == "CONNECT" or RETRY_MARK in flow.metadata:
            return  # the auth addon's re-send is reported on the client's flow, as a retry
        record = self.request_record(flow)
        secrets, usernames = flow_secrets(flow)
        self._write(record, secrets, usernames)

    def _emit_tunnel(self, flow, tunnel: _Tunnel | None, kind: str, *, status=None, error: str = "",
                     fix: str = "", warn: bool = False) -> None:
        started = tunnel.started if tunnel else time.time()
        target = tunnel.target if tunnel else (
            f"{_host_for_url(flow.request.host)}:{flow.request.port}" if flow else "?"
        )
        record: dict = {
            "time": _iso(started),
            "method": "CONNECT",
            "url": target,
            "status": status,
            "tunnel": kind,
            "duration_ms": round((time.time() - started) * 1000),
            "bytes": None,  # an untouched tunnel is opaque: mitmproxy does not count its bytes
        }
        if error:
            record["error"] = str(error)
        if fix:
            record["fix"] = fix
        secrets, usernames = flow_secrets(flow) if flow is not None else ([], [])
        self._write(record, secrets, usernames, warn=warn)

    def _write(self, record: dict, secrets: list[str], usernames: list[str], warn: bool = False) -> None:
        if self.json:
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        else:
            line = format_text(record)
        line = _clean(line, secrets, usernames)
        self.logger.info(line)
        if warn and not isinstance(self.handler, _StderrHandler):
            # the request log goes to a file (`credproxy run`): a warning still reaches stderr
            logging.getLogger(LOGGER_NAME).warning("%s", line)


def format_text(record: dict) -> str:
    """`2026-11-24T18:30:01.123Z GET https://pkgs.test/simple/x/ 200 source=netrc auth=preemptive
    upstream=12ms bytes=3456` (tunnels: `... CONNECT host:443 tunnel=passthrough 1200ms`)."""
    status = "-" if record.get("status") is None else str(record["status"])
    parts = [record["time"], record["method"], record["url"], status]
    if "tunnel" in record:
        parts += [f"tunnel={record['tunnel']}", f"duration={record['duration_ms']}ms"]
    else:
        parts += [f"source={record['source']}", f"auth={record['auth']}"]
        if record.get("cached"):
            parts.append("cached")
        up = record.get("upstream_ms")
        parts.append(f"upstream={'-' if up is None else f'{up}ms'}")
        size = record.get("bytes")
        parts.append(f"bytes={'-' if size is None else size}")
    if record.get("error"):
        parts.append(f"error={json.dumps(record['error'], ensure_ascii=False)}")
    if record.get("reason"):
        parts.append(f"reason={json.dumps(record['reason'], ensure_ascii=False)}")
    if record.get("fix"):
        parts.append(f"fix={json.dumps(record['fix'], ensure_ascii=False)}")
    return " ".join(parts)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (tests and `run` swap it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _connect_error_text(response: http.Response | None) -> str:
    """mitmproxy's 502 body for a failed CONNECT says why ("Cannot connect to X: [Errno 111]
    Connect call failed ... If you plan to redirect ..."); keep the why, drop the advice
    about its own options."""
    if response is None:
        return ""
    text = response.get_text(strict=False) or ""
    text = text.strip().split("\n", 1)[0]  # the why; a 407's advice for clients follows on line 2
    text = text.split(" If you plan to redirect", 1)[0].strip()
    return text[:300] or response.reason


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _upstream_ms(flow: http.HTTPFlow) -> int | None:
    """From the request leaving the client to the last response byte (includes a retry)."""
    start = flow.request.timestamp_start
    end = None
    if flow.response is not None:
        end = flow.response.timestamp_end or flow.response.timestamp_start
    if end is None and flow.error is not None:
        end = flow.error.timestamp
    if start is None or end is None:
        return None
    return max(0, round((end - start) * 1000))


def _body_bytes(response: http.Response | None) -> int | None:
    """Body size: what mitmproxy kept, else the declared Content-Length (streamed bodies are
    not stored)."""
    if response is None:
        return None
    if response.raw_content is not None:
        return len(response.raw_content)
    declared = response.headers.get("content-length", "")
    return int(declared) if declared.isdigit() else None


# --- --save-flows ----------------------------------------------------------------------------


def redacted_copy(flow: http.HTTPFlow) -> http.HTTPFlow:
    """A copy of `flow` safe to write to disk: credential headers, cookies and URL userinfo
    replaced by a marker, and any secret the flow carried masked in bodies and other headers.
    The live flow is not modified."""
    secrets, usernames = flow_secrets(flow)
    copy = flow.copy()
    req = copy.request
    for name in _AUTH_HEADERS:
        values = req.headers.get_all(name)
        if values:
            req.headers.set_all(name, [_redact_auth_value(v) for v in values])
    for name in _COOKIE_REQUEST_HEADERS:
        if name in req.headers:
            req.headers.set_all(name, [REDACTED] * len(req.headers.get_all(name)))
    if "@" in req.authority:
        req.authority = req.authority.rpartition("@")[2]
    req.path = _redact_path(flow.request.path)  # token query values
    omitted: dict[str, str] = {}
    _limit_body(req, "request", omitted)
    _redact_message(req, secrets, usernames)
    if copy.response is not None:
        resp = copy.response
        for name in _COOKIE_RESPONSE_HEADERS:
            if name in resp.headers:
                resp.headers.set_all(name, [REDACTED] * len(resp.headers.get_all(name)))
        _limit_body(resp, "response", omitted)
        _redact_message(resp, secrets, usernames)
    if copy.error is not None:
        copy.error.msg = _clean(copy.error.msg, secrets, usernames)
    meta = copy.metadata.get("credproxy")
    if isinstance(meta, dict) and meta.get("reason"):
        meta["reason"] = _clean(str(meta["reason"]), secrets, usernames)
    if omitted:
        meta = dict(meta) if isinstance(meta, dict) else {}
        meta["omitted"] = omitted
    # copies of other metadata may hold anything (other addons): keep only ours
    copy.metadata = {"credproxy": meta} if isinstance(meta, dict) else {}
    return copy


def _limit_body(message: http.Message, which: str, omitted: dict[str, str]) -> None:
    """Leave out a body over SAVED_BODY_LIMIT; store a compressed body decoded (bounded), so
    what a viewer shows after decoding has been redacted. `omitted[which]` says why."""
    raw = message.raw_content
    if not raw:
        return
    if len(raw) > SAVED_BODY_LIMIT:
        message.raw_content = b""
        omitted[which] = f"body of {len(raw)} bytes not saved (over {SAVED_BODY_LIMIT} bytes)"
        return
    encoding = message.headers.get("content-encoding", "").strip().lower()
    if not encoding or encoding == "identity":
        return
    decoded = _bounded_decode(raw, encoding, SAVED_BODY_LIMIT)
    if decoded is None:
        message.raw_content = b""
        omitted[which] = (f"{encoding}-encoded body of {len(raw)} bytes not saved (not decodable "
                          f"within {SAVED_BODY_LIMIT} bytes)")
        return
    del message.headers["content-encoding"]
    message.raw_content = decoded


def _bounded_decode(data: bytes, encoding: str, limit: int) -> bytes | None:
    """gzip/deflate decoded to at most `limit` bytes; None when larger, broken or another
    encoding (a saved flow must not be a decompression bomb for the proxy)."""
    if encoding in ("gzip", "x-gzip"):
        modes = (16 + zlib.MAX_WBITS,)
    elif encoding == "deflate":
        modes = (zlib.MAX_WBITS, -zlib.MAX_WBITS)  # zlib-wrapped, or raw as some servers send
    else:
        return None
    for wbits in modes:
        try:
            d = zlib.decompressobj(wbits)
            out = d.decompress(data, limit + 1)
            if len(out) > limit or d.unconsumed_tail:
                return None
            out += d.flush()
        except zlib.error:
            continue
        return out if len(out) <= limit else None
    return None


def _redact_auth_value(value: str) -> str:
    scheme, sep, _ = value.strip().partition(" ")
    return f"{scheme} {REDACTED}" if sep else REDACTED


def _redact_path(path: str) -> str:
    # redact_url masks token query parameters; reuse it on a dummy origin
    return redact_url("http://x" + path)[len("http://x"):]


def _redact_message(message: http.Message, secrets: list[str], usernames: list[str]) -> None:
    if not secrets:
        return
    for name in list(message.headers.keys()):
        values = message.headers.get_all(name)
        cleaned = [_clean(v, secrets, usernames) for v in values]
        if cleaned != values:
            message.headers.set_all(name, cleaned)
    raw = message.raw_content
    if raw:
        # bodies as stored (possibly compressed): mask what is visible in the raw bytes, and in
        # the decoded text when it decodes
        message.raw_content = _redact_bytes(raw, secrets, usernames)
        try:
            text = message.get_text(strict=True)
        except ValueError:
            text = None
        if text is not None:
            cleaned_text = _clean(text, secrets, usernames)
            if cleaned_text != text:
                message.text = cleaned_text


def _redact_bytes(data: bytes, secrets: list[str], usernames: list[str]) -> bytes:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
        return _clean(text, secrets, usernames).encode("latin-1", errors="replace")
    return _clean(text, secrets, usernames).encode("utf-8")


def open_private(path: str) -> int:
    """A write descriptor for `path`, truncated, mode 0600. Never follows a symbolic link at
    `path` (O_NOFOLLOW), never opens another user's file or anything but a regular file (a
    FIFO would block, a device would receive the flows). Raises OSError naming the fix."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EMLINK):  # Linux, macOS: ELOOP; FreeBSD: EMLINK
            raise OSError(e.errno, "it is a symbolic link; give the real path (credproxy does not "
                          "follow links for --save-flows)", path) from None
        if e.errno == errno.ENXIO:  # a FIFO without a reader
            raise OSError(e.errno, "not a regular file; give a path for a new or existing file", path) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file; give a path for a new or existing file", path)
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            raise OSError(errno.EPERM, "the file belongs to another user; choose a path of your own", path)
        os.set_blocking(fd, True)
        os.ftruncate(fd, 0)
        os.fchmod(fd, 0o600)  # an existing 0644 file: the saved flows are yours alone
    except BaseException:
        os.close(fd)
        raise
    return fd


class RedactedFlowSaver:
    """`--save-flows FILE`: every completed HTTP flow, redacted, in mitmproxy's format."""

    def __init__(self, path: str):
        self.path = path
        self._fo = None
        self._writer: io.FlowWriter | None = None
        # open now: a path that cannot be written is a start-up error (OSError), not flows
        # silently missing later
        self._open()

    def _open(self) -> None:
        if self._writer is not None:
            return
        fd = open_private(self.path)
        self._fo = os.fdopen(fd, "wb")
        self._writer = io.FlowWriter(self._fo)

    def response(self, flow: http.HTTPFlow) -> None:
        self._save(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._save(flow)

    def _save(self, flow: http.HTTPFlow) -> None:
        if flow.request.method.upper() == "CONNECT" or RETRY_MARK in flow.metadata:
            return  # the re-send's response ends up on the client's flow, saved once
        self._open()
        assert self._writer is not None and self._fo is not None
        self._writer.add(redacted_copy(flow))
        self._fo.flush()  # a killed proxy still leaves every finished flow readable

    def done(self) -> None:
        if self._fo is not None:
            self._fo.close()
            self._fo = None
            self._writer = None


__all__ = ["addons", "AuditLog", "RedactedFlowSaver", "redacted_copy", "flow_secrets", "format_text", "MASK"]
