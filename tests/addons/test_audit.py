"""The request log and --save-flows, driven with mitmproxy's own test flows."""

from __future__ import annotations

import base64
import io as stdio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from mitmproxy import io as mio
from mitmproxy.test import taddons, tflow

from credproxy.addons import audit
from credproxy.config import Settings
from credproxy.credentials.model import secret_forms

USER = "alice"
SECRET = "s3cr3t/p@ss+word"


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def assert_no_secret(text: str, secret: str = SECRET, user: str = USER) -> None:
    for form in secret_forms(secret, user):
        assert form not in text, f"secret form {form!r} leaked"


def make_flow(*, url="https://pkgs.test/simple/foo/", status=200, body=b"hello", meta=None, auth=None):
    flow = tflow.tflow(resp=True)
    flow.request.url = url
    flow.request.headers.clear()
    if auth:
        flow.request.headers["Authorization"] = auth
    flow.request.timestamp_start = 1_700_000_000.0
    flow.response.status_code = status
    flow.response.headers.clear()
    flow.response.content = body
    flow.response.timestamp_start = 1_700_000_000.010
    flow.response.timestamp_end = 1_700_000_000.042
    if meta is not None:
        flow.metadata["credproxy"] = meta
    return flow


def injected(source="netrc", *, retried=False, preemptive=True, reason="", cached=False):
    return {"source": source, "preemptive": preemptive, "retried": retried, "action": "inject",
            "reason": reason, "cached": cached}


def logged(settings: Settings, *flows, hooks=("response",)) -> list[str]:
    out = stdio.StringIO()
    log = audit.AuditLog(settings, stream=out)
    for flow in flows:
        for hook in hooks:
            getattr(log, hook)(flow)
    log.done()
    return out.getvalue().splitlines()


def test_text_line_names_source_mode_time_and_size_without_the_secret():
    flow = make_flow(meta=injected("netrc"), auth=basic(USER, SECRET))
    [line] = logged(Settings(), flow)
    assert line.startswith("2023-11-14T22:13:20.000Z GET https://pkgs.test/simple/foo/ 200 ")
    assert "source=netrc" in line and "auth=preemptive" in line
    assert "upstream=42ms" in line and "bytes=5" in line
    assert_no_secret(line)


def test_retry_after_challenge_is_marked_retry():
    flow = make_flow(meta=injected("keyring", retried=True, preemptive=False))
    [line] = logged(Settings(), flow)
    assert "source=keyring" in line and "auth=retry" in line


def test_flow_without_credproxy_metadata_logs_source_none():
    [line] = logged(Settings(), make_flow())
    assert "source=none auth=-" in line


def test_json_format_is_one_object_per_line_with_every_field():
    flows = [make_flow(meta=injected("env:UV_INDEX_PRIVATE"), auth=basic(USER, SECRET)),
             make_flow(url="https://other.test/x", status=404, meta={"source": "none", "action": "send",
                                                                    "reason": "no source matched"})]
    lines = logged(Settings(log_format="json"), *flows)
    records = [json.loads(line) for line in lines]
    assert [r["source"] for r in records] == ["env:UV_INDEX_PRIVATE", "none"]
    first = records[0]
    assert first["method"] == "GET" and first["status"] == 200 and first["auth"] == "preemptive"
    assert first["upstream_ms"] == 42 and first["bytes"] == 5
    assert "reason" not in records[1]  # only with -v
    assert_no_secret("\n".join(lines))


def test_verbose_says_why_no_credential_was_sent():
    meta = {"source": "none", "action": "send", "preemptive": True, "retried": False,
            "reason": "keyring answered nothing; negative cache until 18:31:02", "cached": False}
    [line] = logged(Settings(verbose=1), make_flow(status=401, meta=meta))
    assert 'reason="keyring answered nothing; negative cache until 18:31:02"' in line
    [plain] = logged(Settings(verbose=0), make_flow(status=401, meta=meta))
    assert "reason=" not in plain
    # an injected request has nothing to explain
    [inj] = logged(Settings(verbose=1), make_flow(meta=injected(reason="found in netrc")))
    assert "reason=" not in inj


def test_url_is_redacted_aws_signature_and_userinfo():
    flow = make_flow(url="https://pkgs.test/a.whl?X-Amz-Signature=abcdef123&x=1")
    [line] = logged(Settings(), flow)
    assert "X-Amz-Signature=****" in line and "abcdef123" not in line


def test_a_secret_in_a_buggy_reason_is_still_masked():
    meta = {"source": "netrc", "action": "send", "reason": f"rejected {SECRET} for {USER}"}
    flow = make_flow(meta=meta, auth=basic(USER, SECRET), status=403)
    lines = logged(Settings(verbose=1, log_format="json"), flow) + logged(Settings(verbose=1), flow)
    assert len(lines) == 2
    assert_no_secret("\n".join(lines))


def test_client_disconnect_mid_download_logs_the_error():
    flow = make_flow(meta=injected())
    flow.error = tflow.terr("Client disconnected.")
    [line] = logged(Settings(), flow, hooks=("error",))
    assert " 200 " in line and 'error="Client disconnected."' in line


def test_passthrough_tunnel_is_one_line_and_intercepted_tunnels_none():
    out = stdio.StringIO()
    log = audit.AuditLog(Settings(), stream=out)
    tunnel = tflow.tflow()
    tunnel.request.method = "CONNECT"
    tunnel.request.host, tunnel.request.port = "files.example", 443
    tunnel.client_conn.timestamp_tls_setup = None  # mitmproxy never spoke TLS with it
    log.http_connect(tunnel)
    log.client_disconnected(tunnel.client_conn)

    intercepted = tflow.tflow()
    intercepted.request.method = "CONNECT"
    log.http_connect(intercepted)
    inner = make_flow(meta=injected())
    inner.client_conn = intercepted.client_conn
    log.requestheaders(inner)
    log.response(inner)
    log.response(intercepted)  # a CONNECT itself is never a request line
    log.client_disconnected(intercepted.client_conn)
    log.done()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "CONNECT files.example:443 - tunnel=passthrough" in lines[0]
    assert "GET https://pkgs.test/simple/foo/" in lines[1]


def test_failed_connect_and_client_tls_failure_are_reported():
    out = stdio.StringIO()
    log = audit.AuditLog(Settings(log_format="json"), stream=out)
    bad = tflow.tflow(resp=True)
    bad.request.method = "CONNECT"
    bad.request.host, bad.request.port = "down.test", 443
    bad.response.status_code = 502
    bad.error = tflow.terr("Connection refused")
    log.http_connect(bad)
    log.http_connect_error(bad)
    log.client_disconnected(bad.client_conn)  # already reported: no second line
    log.done()
    [record] = [json.loads(x) for x in out.getvalue().splitlines()]
    assert record["tunnel"] == "connect-failed" and record["status"] == 502
    assert record["url"] == "down.test:443" and record["error"] == "Connection refused"


def test_lines_go_to_stderr_by_default(capsys):
    log = audit.AuditLog(Settings())
    log.response(make_flow(meta=injected(), auth=basic(USER, SECRET)))
    log.done()
    captured = capsys.readouterr()
    assert "source=netrc" in captured.err and captured.out == ""


def test_addons_adds_the_flow_saver_only_with_save_flows(tmp_path):
    from credproxy.addons.memory import CycleCollector

    assert [type(a) for a in audit.addons(Settings())] == [audit.AuditLog, CycleCollector]
    kinds = [type(a) for a in audit.addons(Settings(save_flows=str(tmp_path / "f")))]
    assert kinds == [audit.AuditLog, audit.RedactedFlowSaver, CycleCollector]


# --- --save-flows ------------------------------------------------------------------------


def secret_flow():
    flow = make_flow(meta=injected(), auth=basic(USER, SECRET),
                     body=f"echo: Authorization: {basic(USER, SECRET)} pw={SECRET}".encode())
    flow.request.headers["Cookie"] = "session=abcdef0123456789"
    flow.request.headers["Proxy-Authorization"] = basic("proxyuser", "proxytoken99")
    flow.response.headers["Set-Cookie"] = "session=abcdef0123456789; Path=/"
    flow.response.headers["X-Echo"] = SECRET
    return flow


def read_flows(path: Path):
    with open(path, "rb") as f:
        return list(mio.FlowReader(f).stream())


def test_saved_flows_are_redacted_copies_and_the_live_flow_is_untouched(tmp_path):
    path = tmp_path / "flows.mitm"
    saver = audit.RedactedFlowSaver(str(path))
    flow = secret_flow()
    before = flow.get_state()
    with taddons.context(saver):
        saver.response(flow)
        saver.done()
    assert flow.get_state() == before  # the live flow still carries what goes upstream

    raw = path.read_bytes()
    text = raw.decode("latin-1")
    assert_no_secret(text)
    assert "abcdef0123456789" not in text and "proxytoken99" not in text
    [saved] = read_flows(path)
    assert saved.request.headers["Authorization"] == f"Basic {audit.REDACTED}"
    assert saved.request.headers["Proxy-Authorization"] == f"Basic {audit.REDACTED}"
    assert saved.request.headers["Cookie"] == audit.REDACTED
    assert saved.response.headers["Set-Cookie"] == audit.REDACTED
    assert saved.request.url == "https://pkgs.test/simple/foo/"
    assert saved.metadata["credproxy"]["source"] == "netrc"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_saved_flow_masks_url_userinfo_and_gzip_bodies(tmp_path):
    path = tmp_path / "flows.mitm"
    saver = audit.RedactedFlowSaver(str(path))
    flow = make_flow(url="http://pkgs.test/simple/?X-Amz-Credential=AKIDSECRET", auth=basic(USER, SECRET))
    flow.request.authority = f"{USER}:{SECRET}@pkgs.test"
    flow.response.headers["Content-Encoding"] = "gzip"
    flow.response.text = f"token {SECRET}"
    errored = make_flow(auth=basic(USER, SECRET))
    errored.error = tflow.terr(f"upstream said {SECRET}")
    saver.response(flow)
    saver.error(errored)
    saver.done()
    text = path.read_bytes().decode("latin-1")
    assert_no_secret(text)
    assert "AKIDSECRET" not in text
    saved, saved_err = read_flows(path)
    assert saved.response.text == "token ****"
    assert saved.request.authority == "pkgs.test"
    assert SECRET not in saved_err.error.msg


def test_saved_file_is_readable_by_mitmdump(tmp_path):
    path = tmp_path / "flows.mitm"
    saver = audit.RedactedFlowSaver(str(path))
    saver.response(secret_flow())
    saver.done()
    mitmdump = Path(sys.executable).with_name("mitmdump")
    result = subprocess.run(
        [str(mitmdump), "-n", "-r", str(path), "--flow-detail", "3"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert "pkgs.test" in result.stdout and audit.REDACTED in result.stdout
    assert_no_secret(result.stdout + result.stderr)


@pytest.mark.parametrize("value", ["Bearer tok_ABCDEF123456", "tok_ABCDEF123456"])
def test_bearer_and_bare_tokens_are_masked_in_log_lines(value):
    meta = {"source": "hf-token", "action": "send", "reason": "sent tok_ABCDEF123456 upstream"}
    [line] = logged(Settings(verbose=1), make_flow(meta=meta, auth=value))
    assert "tok_ABCDEF123456" not in line


def test_the_auth_addons_resend_copy_is_neither_logged_nor_saved(tmp_path):
    from credproxy.addons.auth import RETRY_MARK

    dup = make_flow(auth=basic(USER, SECRET))
    dup.metadata = {RETRY_MARK: "some-flow-id"}
    assert logged(Settings(), dup) == []
    saver = audit.RedactedFlowSaver(str(tmp_path / "f"))
    saver.response(dup)
    saver.done()
    assert not (tmp_path / "f").exists() or read_flows(tmp_path / "f") == []


def test_unwritable_save_flows_path_fails_at_start_up(tmp_path):
    with pytest.raises(OSError):
        audit.addons(Settings(save_flows=str(tmp_path / "missing-dir" / "flows.mitm")))


# --- issue 9 finding 6: what the saver redacts and keeps, and how it opens its file ---------


def test_the_resend_credential_is_redacted_where_the_upstream_echoed_it():
    from credproxy.addons.auth import _remember_injected
    from credproxy.credentials.model import Credentials

    flow = make_flow(body=f"you sent: {basic(USER, SECRET)} and {SECRET}".encode())
    flow.response.headers["X-Echo"] = basic(USER, SECRET)
    _remember_injected(flow, Credentials.basic(USER, SECRET))  # what the re-send carried
    copy = audit.redacted_copy(flow)
    assert_no_secret(repr(copy.get_state()))
    assert copy.response.headers["X-Echo"] == "Basic ****"
    assert copy.response.get_text() == "you sent: Basic **** and ****"
    assert SECRET in flow.response.get_text()  # the live flow is untouched


def test_bodies_over_the_limit_are_left_out_with_their_size():
    flow = make_flow(body=b"x" * (audit.SAVED_BODY_LIMIT + 1))
    flow.request.content = b"y" * 10
    copy = audit.redacted_copy(flow)
    assert copy.response.raw_content == b"" and copy.request.raw_content == b"y" * 10
    assert copy.metadata["credproxy"]["omitted"] == {
        "response": f"body of {audit.SAVED_BODY_LIMIT + 1} bytes not saved (over {audit.SAVED_BODY_LIMIT} bytes)"}


def test_a_compressed_body_is_saved_decoded_and_a_bomb_is_left_out():
    import gzip

    from credproxy.addons.auth import _remember_injected
    from credproxy.credentials.model import Credentials

    small = make_flow()
    small.response.headers["content-encoding"] = "gzip"
    small.response.raw_content = gzip.compress(f"echo {SECRET}".encode())
    _remember_injected(small, Credentials.basic(USER, SECRET))
    copy = audit.redacted_copy(small)
    assert "content-encoding" not in copy.response.headers
    assert copy.response.raw_content == b"echo ****"

    bomb = make_flow()
    bomb.response.headers["content-encoding"] = "gzip"
    bomb.response.raw_content = gzip.compress(b"\0" * (64 << 20))  # 64 MiB from ~64 KiB
    assert len(bomb.response.raw_content) < audit.SAVED_BODY_LIMIT
    copy = audit.redacted_copy(bomb)
    assert copy.response.raw_content == b""
    assert "not decodable within" in copy.metadata["credproxy"]["omitted"]["response"]


def test_open_private_refuses_links_fifos_and_remodes_existing_files(tmp_path):
    existing = tmp_path / "old.mitm"
    existing.write_text("old")
    existing.chmod(0o644)
    fd = audit.open_private(str(existing))
    os.close(fd)
    assert stat.S_IMODE(existing.stat().st_mode) == 0o600 and existing.read_text() == ""

    target = tmp_path / "target"
    target.write_text("keep")
    link = tmp_path / "link.mitm"
    link.symlink_to(target)
    with pytest.raises(OSError, match="symbolic link"):
        audit.open_private(str(link))
    assert target.read_text() == "keep"

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        audit.open_private(str(fifo))


def test_the_log_says_fail_or_refuse_with_the_reason_when_the_proxy_answered():
    fail = make_flow(status=502, meta={"source": "netrc", "preemptive": False, "retried": False,
                                       "action": "fail", "reason": "the credential from netrc cannot be sent",
                                       "cached": False})
    refuse = make_flow(status=421, meta={"source": "none", "preemptive": False, "retried": False,
                                         "action": "refuse", "reason": "the Host header 'x' does not name it",
                                         "cached": False})
    lines = logged(Settings(), fail, refuse)
    assert "502 source=netrc auth=fail" in lines[0] and 'reason="the credential from netrc' in lines[0]
    assert "421 source=none auth=refuse" in lines[1] and "does not name it" in lines[1]
