"""Issue 9 finding 6: `--save-flows`.

- the credential sent on a re-send was not redacted when the upstream echoed it back;
- a 300 MB challenge body went into the file;
- an existing file kept mode 0644;
- a symlink at the path was followed and its target truncated.
"""

from __future__ import annotations

import os
import stat
import time

import pytest
from mitmproxy import io as mio

from credproxy.credentials.model import secret_forms
from tests.helpers.proxy import ProxyStartError
from tests.helpers.proxy_client import drain_response

from .proxy_path import SECRET, USER, PathWorld

pytestmark = pytest.mark.e2e

# the netrc `default` entry answers only after a challenge: every request takes the re-send path
CHALLENGE_NETRC = f"default login {USER} password {SECRET}\n"
INDEX = '[[index]]\nname = "pkgs"\nurl = "https://pkgs.test:{port}/private/simple/"\n'


def _flows(path):
    with open(path, "rb") as f:
        return list(mio.FlowReader(f).stream())


def _leaks(text: str) -> list[str]:
    return [form for form in secret_forms(SECRET, USER) if form in text]


def _get(w: PathWorld, path: str):
    return w.raw_request("pkgs.test", f"GET {path} HTTP/1.1\r\nHost: pkgs.test:{w.port}\r\n"
                         "Connection: close\r\n\r\n".encode(), max_body=8 << 20)


def test_the_resend_credential_echoed_by_the_upstream_is_redacted(tmp_path):
    flows_file = tmp_path / "flows.mitm"
    with PathWorld(tmp_path, netrc=CHALLENGE_NETRC, config=INDEX) as w:
        w.start("--save-flows", str(flows_file))
        reply = _get(w, "/private/simple/e/?echo=1")
        log = w.stop()
    assert reply.status == 200
    assert "auth=retry" in log
    # the upstream really reflected the re-send's credential (to the client, which is its own)
    assert _leaks(reply.text) and _leaks(reply.head.decode())
    raw = flows_file.read_bytes().decode("latin-1")
    assert _leaks(raw) == [], "the saved flow file holds the re-send's credential"
    (flow,) = _flows(flows_file)
    assert _leaks(repr(flow.get_state())) == []
    assert "you sent: Basic ****" in flow.response.get_text()
    assert flow.response.headers["X-Echo-Authorization"] == "Basic ****"


def test_large_bodies_are_not_saved_their_size_is(tmp_path):
    """A 5 MB response (the re-send's, held in the retry buffer) and a 300 MB chunked 401: the
    file stays small, the flows are there with a note of what was left out."""
    flows_file = tmp_path / "flows.mitm"
    with PathWorld(tmp_path, netrc=CHALLENGE_NETRC, config=INDEX) as w:
        w.start("--save-flows", str(flows_file))
        reply = _get(w, f"/private/simple/big/?big={5 << 20}")
        assert reply.status == 200 and len(reply.body) == 5 << 20
        with w.tunnel("pkgs.test", timeout=60) as tls:
            tls.sendall(f"GET /chunked401?n={300 << 20} HTTP/1.1\r\nHost: pkgs.test:{w.port}\r\n"
                        "Connection: close\r\n\r\n".encode())
            status, received = drain_response(tls, deadline=time.monotonic() + 240)
        assert status == 401 and received >= 300 << 20
        w.stop()
    size = flows_file.stat().st_size
    assert size < 256 << 10, f"the flow file is {size} bytes"
    flows = {f.request.path.split("?")[0]: f for f in _flows(flows_file)}
    big = flows["/private/simple/big/"]
    assert big.response.raw_content == b""
    assert "5242880 bytes not saved" in big.metadata["credproxy"]["omitted"]["response"]
    assert flows["/chunked401"].response.status_code == 401
    assert not flows["/chunked401"].response.raw_content


def test_an_existing_flow_file_is_made_0600(tmp_path):
    flows_file = tmp_path / "flows.mitm"
    flows_file.write_text("old content\n")
    flows_file.chmod(0o644)
    with PathWorld(tmp_path, netrc=f"machine pkgs.test login {USER} password {SECRET}\n") as w:
        w.start("--save-flows", str(flows_file))
        assert stat.S_IMODE(flows_file.stat().st_mode) == 0o600
        assert _get(w, "/private/simple/m/").status == 200
        w.stop()
    assert stat.S_IMODE(flows_file.stat().st_mode) == 0o600
    assert len(_flows(flows_file)) == 1  # truncated, then written


def test_a_new_flow_file_is_created_0600_whatever_the_umask(tmp_path):
    flows_file = tmp_path / "new-flows.mitm"
    with PathWorld(tmp_path, netrc=f"machine pkgs.test login {USER} password {SECRET}\n") as w:
        w.start("--save-flows", str(flows_file))
        w.stop()
    assert stat.S_IMODE(flows_file.stat().st_mode) == 0o600


def test_a_symlink_at_the_flow_path_is_not_followed(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("do not truncate me\n")
    target.chmod(0o644)
    link = tmp_path / "flows.mitm"
    link.symlink_to(target)
    with PathWorld(tmp_path, netrc=f"machine pkgs.test login {USER} password {SECRET}\n") as w:
        with pytest.raises(ProxyStartError) as info:
            w.start("--save-flows", str(link))
    assert target.read_text() == "do not truncate me\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert link.is_symlink()
    assert "symbolic link" in str(info.value)


def test_a_fifo_at_the_flow_path_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "flows.fifo"
    os.mkfifo(fifo)
    with PathWorld(tmp_path, netrc=f"machine pkgs.test login {USER} password {SECRET}\n") as w:
        with pytest.raises(ProxyStartError) as info:
            w.start("--save-flows", str(fifo))
    assert "not a regular file" in str(info.value)

