"""KeyringSubprocessSource against a real fake `keyring` executable (see tests/helpers)."""

from __future__ import annotations

import base64
import os
import time

import pytest

from credproxy.credentials.index import Index
from credproxy.credentials.model import secret_forms
from credproxy.credentials.sources.keyring_subprocess import MODE_UNSUPPORTED, KeyringSubprocessSource
from tests.helpers.keyring_script import read_calls, read_pids, write_keyring_script

SECRET = "k3yr1ng-s3cret!"
B64 = base64.b64encode(f"alice:{SECRET}".encode()).decode()


@pytest.fixture
def make(tmp_path):
    log = tmp_path / "calls.jsonl"

    def _make(answers, sleep=0.0, timeout=10.0):
        bin_dir = tmp_path / "bin"
        write_keyring_script(bin_dir, answers, log=log, sleep=sleep)
        src = KeyringSubprocessSource(timeout=timeout, env={"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin"})
        return src, log

    return _make


def assert_no_secret(text, secret=SECRET, username=None):
    for form in secret_forms(secret, username):
        assert form not in text


def test_username_mode_exact_argv_and_password(make, capsys):
    src, log = make({("https://pkgs.example.com/simple", "alice"): SECRET + "  "})
    ix = Index.from_url("https://pkgs.example.com/simple")
    ans = src.lookup("https://pkgs.example.com/simple/demo/", "alice", ix)
    assert ans.credentials.username == "alice" and ans.credentials.password == SECRET
    assert read_calls(log) == [["get", "https://pkgs.example.com/simple", "alice"]]
    assert ans.source == "keyring"
    assert_no_secret(ans.detail + str(ans) + repr(ans) + capsys.readouterr().err)


def test_creds_mode_exact_argv_takes_keyring_username(make):
    src, log = make({("pkgs.example.com", None): ("bob", SECRET)})
    ans = src.lookup("https://pkgs.example.com/simple/x/", None, None)
    assert (ans.credentials.username, ans.credentials.password) == ("bob", SECRET)
    assert read_calls(log) == [
        ["get", "https://pkgs.example.com/simple/x/", "--mode", "creds"],
        ["get", "pkgs.example.com", "--mode", "creds"],
    ]


@pytest.mark.parametrize(
    "url, index_url, expected",
    [
        ("https://h.example/simple/a/", "https://h.example/simple", ["https://h.example/simple", "h.example"]),
        ("https://h.example:8443/r/x", None, ["https://h.example:8443/r/x", "h.example:8443"]),
        ("https://h.example:443/r/x", None, ["https://h.example:443/r/x", "h.example"]),
        ("http://127.0.0.1:18084/simple/d/", "http://u:p@127.0.0.1:18084/simple",
         ["http://127.0.0.1:18084/simple", "127.0.0.1:18084", "http://127.0.0.1:18084"]),
        ("http://h.example/x", None, ["http://h.example/x", "h.example", "http://h.example"]),
    ],
)
def test_service_order_when_nothing_found(make, url, index_url, expected):
    src, log = make({})
    ix = Index.from_url(index_url) if index_url else None
    ans = src.lookup(url, "alice", ix)
    assert not ans.found
    assert [c[1] for c in read_calls(log)] == expected
    assert "exit 1" in ans.detail


def test_stops_at_first_success(make):
    src, log = make({("h.example", "alice"): SECRET, ("http://h.example", "alice"): "other"})
    ans = src.lookup("http://h.example/simple/", "alice", None)
    assert ans.credentials.password == SECRET
    assert [c[1] for c in read_calls(log)] == ["http://h.example/simple/", "h.example"]


def test_http_third_service(make):
    src, log = make({("http://h.example:8080", "alice"): SECRET})
    ans = src.lookup("http://h.example:8080/simple/", "alice", None)
    assert ans.credentials.password == SECRET
    assert len(read_calls(log)) == 3


def test_stderr_passthrough_redacted(make, capsys):
    src, _ = make({("https://h.example/", "alice"): {"stdout": SECRET + "\n", "stderr": f"note: using backend X for {SECRET}\nheader Basic {B64}\n"}})
    ans = src.lookup("https://h.example/", "alice", None)
    assert ans.found
    err = capsys.readouterr().err
    assert "note: using backend X for ****" in err
    assert "header Basic ****" in err
    assert_no_secret(err, username="alice")


def test_nonzero_exit_then_next_service(make, capsys):
    src, log = make({
        ("https://h.example/", "alice"): {"stdout": SECRET, "stderr": "boom\n", "exit": 3},
        ("h.example", "alice"): "pw2",
    })
    ans = src.lookup("https://h.example/", "alice", None)
    assert ans.credentials.password == "pw2"
    assert "boom" in capsys.readouterr().err


def test_garbage_output_in_creds_mode_missing_second_line(make, capsys):
    src, _ = make({("https://h.example/", None): {"stdout": "just-one-line\n"}})
    ans = src.lookup("https://h.example/", None, None)
    assert not ans.found
    assert any("two lines" in w for w in src.warnings)
    assert "just-one-line" not in ans.detail


def test_binary_garbage_does_not_crash(make):
    src, _ = make({("https://h.example/", None): {"stdout": "\udcff\x00\x01\n"}})
    # surrogate cannot be written by the script: it fails, exits non-zero; we must survive
    ans = src.lookup("https://h.example/", None, None)
    assert not ans.found


def test_empty_password_accepted_with_warning(make):
    src, _ = make({("https://h.example/", "alice"): ""})
    ans = src.lookup("https://h.example/", "alice", None)
    assert ans.found and ans.credentials.password == "" and ans.credentials.is_complete
    assert any("empty password" in w for w in src.warnings)


def test_mode_unsupported_warns_once(make):
    err = "usage: keyring [-h]\nkeyring: error: unrecognized arguments: --mode creds\n"
    src, _ = make({(s, None): {"stderr": err, "exit": 2} for s in ["https://h.example/", "h.example"]})
    src.lookup("https://h.example/", None, None)
    src.lookup("https://h.example/", None, None)
    assert src.warnings.count(MODE_UNSUPPORTED) == 1


def test_not_on_path(tmp_path):
    src = KeyringSubprocessSource(env={"PATH": str(tmp_path)})
    ans = src.lookup("https://h.example/", "alice", None)
    assert not ans.found and "not found" in ans.detail


def test_hanging_keyring_is_killed(make):
    src, log = make({("https://h.example/", "alice"): SECRET}, sleep=3600, timeout=1)
    start = time.monotonic()
    ans = src.lookup("https://h.example/", "alice", None)
    elapsed = time.monotonic() - start
    assert not ans.found
    # one timeout per service: two services for https
    assert elapsed < 2 * 1 + 3
    assert "https://h.example/" in src.warnings[0] and "1s" in src.warnings[0]
    pids = read_pids(log)
    assert len(pids) == 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_over_64_kib_is_no_credential(make, capsys, stream):
    # the secret first, then enough to overflow: nothing of it may be used or echoed
    src, log = make({("https://h.example/", "alice"): {stream: SECRET + "\n" + "y" * (64 * 1024)}})
    ans = src.lookup("https://h.example/", "alice", None)
    assert not ans.found
    assert f"printed more than 64 KiB on {stream}, killed (no credentials)" in ans.detail
    assert_no_secret(ans.detail + capsys.readouterr().err)


def test_exactly_64_kib_of_stderr_is_still_an_answer(make, capsys):
    src, log = make({("https://h.example/", "alice"): {"stdout": SECRET + "\n", "stderr": "z" * (64 * 1024)}})
    ans = src.lookup("https://h.example/", "alice", None)
    assert ans.found and ans.credentials.password == SECRET
    assert capsys.readouterr().err.count("z") == 64 * 1024


def test_a_keyring_that_cannot_start_is_named(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "keyring"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    src = KeyringSubprocessSource(env={"PATH": str(bin_dir)})
    ans = src.lookup("https://h.example/", "alice", None)
    assert not ans.found and "cannot run: No such file or directory" in ans.detail, ans.detail


def test_the_service_never_carries_the_query_or_userinfo():
    # the service is the command's argv (readable by every local user) and is named in logs
    from credproxy.credentials.sources.keyring_subprocess import keyring_services
    from credproxy.credentials.sources.native import native_services

    url = "https://u:pw@H.example/files/x.whl?private_token=QS3CRET&X-Amz-Signature=S1G#frag"
    assert keyring_services(url, None) == ["https://h.example/files/x.whl", "h.example"]
    assert native_services(url, None) == ["uv:https://h.example/files/x.whl", "uv:h.example"]
