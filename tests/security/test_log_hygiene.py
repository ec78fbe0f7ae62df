"""Issue 9 finding 9 (first and third bullets): control bytes in a request line reached the text
log raw (a terminal then obeys them), and query-string tokens were logged as they are (only
AWS parameters were masked). Now every logged field escapes control characters, and known
token parameters are masked in the log and in saved flows."""

from __future__ import annotations

import json

import pytest
from mitmproxy import io as mio

from .proxy_path import SECRET, USER, PathWorld

pytestmark = pytest.mark.e2e

NETRC = f"machine pkgs.test login {USER} password {SECRET}\n"


def _send(w: PathWorld, target: bytes):
    return w.raw_request("pkgs.test", b"GET " + target + f" HTTP/1.1\r\nHost: pkgs.test:{w.port}\r\n"
                         "Connection: close\r\n\r\n".encode())


def test_escape_sequences_in_a_request_line_reach_the_text_log_escaped(tmp_path):
    with PathWorld(tmp_path, netrc=NETRC) as w:
        w.start()
        _send(w, b"/private/\x1b[31mred\x1b[0m/\x07\x7f")
        raw = w.proxy.stderr_path.read_bytes()
        w.stop()
    assert b"\x1b" not in raw and b"\x07" not in raw and b"\x7f" not in raw, raw
    text = raw.decode()
    line = next(line for line in text.splitlines() if "mred" in line)  # the request line, not a start-up line
    assert "\\x1b[31mred\\x1b[0m" in line and "\\x07\\x7f" in line


def test_c1_controls_and_bidi_overrides_are_escaped_in_the_json_log(tmp_path):
    # U+009B is a one-character CSI for many terminals; U+202E reverses what follows
    with PathWorld(tmp_path, netrc=NETRC) as w:
        w.start("--log-format", "json")
        _send(w, "/private/a\u009b31mb\u202ec".encode())
        raw = w.proxy.stderr_path.read_bytes().decode()
        w.stop()
    assert "\u009b" not in raw and "\u202e" not in raw
    record = next(json.loads(line) for line in raw.splitlines() if line.startswith("{") and "/private/a" in line)
    # JSON escapes keep the data: a consumer decoding the line gets the path back
    assert "a\u009b31mb\u202ec" in record["url"]


TOKENS = {
    "token": "tok-Q1w2e3r4", "access_token": "acc-Q1w2e3r4", "private_token": "glpat-Q1w2e3r4",
    "api_key": "ak-Q1w2e3r4", "apikey": "ak2-Q1w2e3r4", "key": "key-Q1w2e3r4", "sig": "sig-Q1w2e3r4",
    "signature": "sgn-Q1w2e3r4", "password": "pw-Q1w2e3r4", "secret": "sec-Q1w2e3r4",
    "X-Amz-Signature": "amz-Q1w2e3r4", "Auth": "auth-Q1w2e3r4",
}


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_token_query_parameters_are_masked_in_the_log_and_saved_flows(tmp_path, log_format):
    query = "&".join(f"{k}={v}" for k, v in TOKENS.items()) + "&page=2"
    flows_file = tmp_path / "flows.mitm"
    with PathWorld(tmp_path, netrc=NETRC) as w:
        w.start("--log-format", log_format, "--save-flows", str(flows_file), "-v")
        reply = _send(w, f"/private/simple/q/?{query}".encode())
        log = w.stop()
    assert reply.status == 200
    found = [v for v in TOKENS.values() if v in log]
    assert found == [], f"the log shows {found}"
    assert "page=2" in log and "token=****" in log and "X-Amz-Signature=****" in log
    with open(flows_file, "rb") as f:
        (flow,) = list(mio.FlowReader(f).stream())
    saved = repr(flow.get_state())
    assert [v for v in TOKENS.values() if v in saved] == []
    assert w.upstream.requests[0].path.endswith(query)  # the upstream got the real query
