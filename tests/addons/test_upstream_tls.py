"""The upstream-TLS addons in a real embedded mitmproxy (tls_harness.py, a subprocess), real
TLS servers on 127.0.0.1 (trustme certificates) and curl as the client."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from tests.helpers.servers import TlsServer, client_pem, die_with_parent, read_line, stop_pid

HARNESS = Path(__file__).with_name("tls_harness.py")
ROOT = Path(__file__).resolve().parents[2]

# curl is a required test tool (the e2e suite drives it too): missing, these tests fail
# loudly rather than skip and hide a broken TLS path.
assert shutil.which("curl"), "curl is needed on PATH for the upstream TLS tests"


class Proxy:
    def __init__(self, tmp: Path, settings: dict, intercept_hosts=(), resolve=(), env=None, broken_hosts=()):
        self.tmp = tmp
        self.confdir = tmp / "ca"
        data = tmp / "data"
        env_for_settings = {"CREDPROXY_DATA_DIR": str(data), **(env or {})}
        cfg = {"settings": {"env": env_for_settings, **settings},
               "intercept_hosts": list(intercept_hosts), "broken_hosts": list(broken_hosts),
               "resolve": {n: "127.0.0.1" for n in resolve},
               "confdir": str(self.confdir)}
        cfg_file = tmp / f"harness-{os.getpid()}-{id(self)}.json"
        cfg_file.write_text(json.dumps(cfg))
        run_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp),
                   "PYTHONPATH": str(ROOT), "CREDPROXY_DATA_DIR": str(data)}
        self.stderr_path = tmp / f"proxy-{id(self)}.log"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([sys.executable, str(HARNESS), str(cfg_file)], stdout=subprocess.PIPE,
                                     stderr=self._stderr, env=run_env, cwd=str(tmp), preexec_fn=die_with_parent)
        line = read_line(self.proc.stdout, timeout=30)
        m = re.match(r"listening on (\d+)", line or "")
        if not m:
            self.stop()
            raise RuntimeError(f"harness did not start: {line!r}\n{self.log()}")
        self.port = int(m.group(1))

    def log(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def stop(self):
        stop_pid(self.proc, grace=10)
        self.proc.stdout.close()
        self._stderr.close()

    def curl(self, url: str, *flags: str) -> tuple[int, str]:
        """curl through the proxy, trusting only the proxy's CA; (status, body). With
        --http2, the body ends with a line naming the HTTP version the client used."""
        write_out = "\n%{http_version}\n%{http_code}" if "--http2" in flags else "\n%{http_code}"
        out = subprocess.run(
            ["curl", "-sS", *flags, "--max-time", "20", "--proxy", f"http://127.0.0.1:{self.port}",
             "--cacert", str(self.confdir / "mitmproxy-ca-cert.pem"), "-w", write_out, url],
            capture_output=True, text=True, timeout=30,
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(self.tmp)})
        body, _, status = out.stdout.rpartition("\n")
        return int(status or 0), body


@pytest.fixture
def proxies(tmp_path):
    started = []

    def start(settings=None, **kw):
        p = Proxy(tmp_path, settings or {}, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture(scope="module")
def private_ca():
    return trustme.CA()


def test_private_ca_fails_with_default_roots_and_names_the_fix(proxies, private_ca):
    with TlsServer(private_ca, ["pkgs.test"]) as srv:
        proxy = proxies(intercept_hosts=["pkgs.test"], resolve=["pkgs.test"])
        status, body = proxy.curl(f"https://pkgs.test:{srv.port}/simple/")
        status2, body2 = proxy.curl(f"https://pkgs.test:{srv.port}/again")
    assert status == 502, body
    assert f"pkgs.test:{srv.port}" in body
    assert "unknown issuer" in body
    assert "SSL_CERT_FILE" in body and "allow-insecure-host" in body
    assert status2 == 502
    # one warning line for the host, however many requests
    assert proxy.log().count("credproxy: TLS to upstream pkgs.test") == 1, proxy.log()


def test_explained_502_over_http2(proxies, private_ca):
    with TlsServer(private_ca, ["pkgs.test"]) as srv:
        proxy = proxies(intercept_hosts=["pkgs.test"], resolve=["pkgs.test"])
        status, body = proxy.curl(f"https://pkgs.test:{srv.port}/", "--http2")
    assert status == 502 and "unknown issuer" in body
    assert body.rsplit("\n", 1)[-1] == "2", body  # the client spoke HTTP/2 to the proxy


def test_ssl_cert_file_replaces_roots(proxies, private_ca, tmp_path):
    ca_file = tmp_path / "corp-ca.pem"
    private_ca.cert_pem.write_to_path(str(ca_file))
    with TlsServer(private_ca, ["pkgs.test"]) as srv:
        proxy = proxies(intercept_hosts=["pkgs.test"], resolve=["pkgs.test"],
                        env={"SSL_CERT_FILE": str(ca_file)})
        status, body = proxy.curl(f"https://pkgs.test:{srv.port}/simple/")
    assert status == 200, body
    assert json.loads(body)["path"] == "/simple/"


def test_insecure_host_only_skips_that_host(proxies, private_ca):
    other_ca = trustme.CA()
    with TlsServer(private_ca, ["pkgs.test"]) as listed, TlsServer(other_ca, ["other.test"]) as unlisted:
        proxy = proxies({"allow_insecure_host": ["pkgs.test"]},
                        intercept_hosts=["pkgs.test", "other.test"], resolve=["pkgs.test", "other.test"])
        ok_status, ok_body = proxy.curl(f"https://pkgs.test:{listed.port}/")
        bad_status, bad_body = proxy.curl(f"https://other.test:{unlisted.port}/")
        again_status, _ = proxy.curl(f"https://pkgs.test:{listed.port}/again")
    assert ok_status == 200, ok_body
    assert bad_status == 502 and "other.test" in bad_body and "unknown issuer" in bad_body
    assert again_status == 200


def test_insecure_host_with_port_matches_that_port_only(proxies, private_ca):
    with TlsServer(private_ca, ["pkgs.test"]) as a, TlsServer(private_ca, ["pkgs.test"]) as b:
        proxy = proxies({"allow_insecure_host": [f"pkgs.test:{a.port}"]},
                        intercept_hosts=["pkgs.test"], resolve=["pkgs.test"])
        assert proxy.curl(f"https://pkgs.test:{a.port}/")[0] == 200
        assert proxy.curl(f"https://pkgs.test:{b.port}/")[0] == 502


def test_global_client_cert(proxies, private_ca, tmp_path):
    client_ca = trustme.CA()
    pem = client_pem(client_ca, "alice", tmp_path / "alice.pem")
    ca_file = tmp_path / "ca.pem"
    private_ca.cert_pem.write_to_path(str(ca_file))
    with TlsServer(private_ca, ["mtls.test"], client_ca=client_ca) as srv:
        without = proxies(intercept_hosts=["mtls.test"], resolve=["mtls.test"],
                          env={"SSL_CERT_FILE": str(ca_file)})
        status, body = without.curl(f"https://mtls.test:{srv.port}/")
        with_cert = proxies(resolve=["mtls.test"],  # not in intercept_hosts: the cert alone intercepts
                            env={"SSL_CERT_FILE": str(ca_file), "SSL_CLIENT_CERT": pem})
        status2, body2 = with_cert.curl(f"https://mtls.test:{srv.port}/")
    assert status == 502, body
    assert "client certificate required" in body and "SSL_CLIENT_CERT" in body
    assert status2 == 200, body2 + with_cert.log()
    assert json.loads(body2)["client_cn"] == "alice"


def test_per_host_client_certs_chain_and_wildcard(proxies, private_ca, tmp_path):
    ca_a, ca_b, ca_w = trustme.CA(), trustme.CA(), trustme.CA()
    # the client cert for b comes from an intermediate: the server trusts only ca_b's root,
    # so the handshake works only if the full chain is sent
    inter_b = ca_b.create_child_ca()
    pem_a = client_pem(ca_a, "alice", tmp_path / "a.pem")
    pem_b = client_pem(inter_b, "bob", tmp_path / "b.pem", key_first=True)
    pem_w = client_pem(ca_w, "wendy", tmp_path / "w.pem")
    ca_file = tmp_path / "ca.pem"
    private_ca.cert_pem.write_to_path(str(ca_file))
    names = ["a.test", "b.test", "x.corp.test"]
    with TlsServer(private_ca, ["a.test"], client_ca=ca_a) as a, \
            TlsServer(private_ca, ["b.test"], client_ca=ca_b) as b, \
            TlsServer(private_ca, ["x.corp.test"], client_ca=ca_w) as w:
        proxy = proxies({"client_certs": [{"host": "a.test", "cert": pem_a},
                                          {"host": f"b.test:{b.port}", "cert": pem_b},
                                          {"host": "*.corp.test", "cert": pem_w}]},
                        resolve=names, env={"SSL_CERT_FILE": str(ca_file)})
        results = {n: proxy.curl(f"https://{n}:{s.port}/") for n, s in zip(names, (a, b, w))}
    for name, cn in zip(names, ("alice", "bob", "wendy")):
        status, body = results[name]
        assert status == 200, (name, body, proxy.log())
        assert json.loads(body)["client_cn"] == cn


def test_passthrough_for_hosts_without_policy(proxies, private_ca, tmp_path):
    """A host nobody wants intercepted is relayed as raw TLS: the client sees the server's
    own certificate (so it verifies against the private CA, not the proxy's)."""
    ca_file = tmp_path / "ca.pem"
    private_ca.cert_pem.write_to_path(str(ca_file))
    with TlsServer(private_ca, ["plain.test"]) as srv:
        proxy = proxies(resolve=["plain.test"])
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "20", "--proxy", f"http://127.0.0.1:{proxy.port}",
             "--cacert", str(ca_file), "-o", "/dev/null", "-w", "%{http_code}", f"https://plain.test:{srv.port}/"],
            capture_output=True, text=True, timeout=30, env={"PATH": os.environ.get("PATH", "")})
        intercepted = proxy.curl(f"https://plain.test:{srv.port}/")
    assert out.stdout == "200", out.stderr
    # trusting only the proxy's CA fails: nothing was minted for this host
    assert intercepted[0] == 0


def test_config_intercept_hosts_are_intercepted(proxies, private_ca):
    with TlsServer(private_ca, ["a.listed.test"]) as srv:
        proxy = proxies({"intercept_hosts": ["*.listed.test"]}, resolve=["a.listed.test"])
        status, body = proxy.curl(f"https://a.listed.test:{srv.port}/")
    # the proxy terminated TLS (the client trusts only the proxy CA) and explains upstream
    assert status == 502 and "unknown issuer" in body


@pytest.mark.parametrize("case, reason", [("expired", "expired"), ("mismatch", "hostname mismatch")])
def test_verify_failures_name_their_reason(proxies, private_ca, tmp_path, case, reason):
    import datetime

    ca_file = tmp_path / "ca.pem"
    private_ca.cert_pem.write_to_path(str(ca_file))
    if case == "expired":
        server = TlsServer(private_ca, ["pkgs.test"],
                           not_after=datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1))
    else:
        server = TlsServer(private_ca, ["elsewhere.test"])
    with server as srv:
        proxy = proxies(intercept_hosts=["pkgs.test"], resolve=["pkgs.test"], env={"SSL_CERT_FILE": str(ca_file)})
        status, body = proxy.curl(f"https://pkgs.test:{srv.port}/")
    assert status == 502
    assert f"failed: {reason}" in body and "allow-insecure-host" in body


def test_invalid_ssl_cert_file_trusts_nothing_and_says_so(proxies, tmp_path):
    ca = trustme.CA()
    with TlsServer(ca, ["pkgs.test"]) as srv:
        proxy = proxies(intercept_hosts=["pkgs.test"], resolve=["pkgs.test"],
                        env={"SSL_CERT_FILE": str(tmp_path / "nope.pem")})
        status, body = proxy.curl(f"https://pkgs.test:{srv.port}/")
    assert status == 502 and "unknown issuer" in body
    log = proxy.log()
    assert "Invalid SSL_CERT_FILE. Path does not exist" in log and "No default certificates will be trusted" in log


def test_own_exported_bundle_as_ssl_cert_file_does_not_replace_roots(proxies, private_ca, tmp_path):
    """With SSL_CERT_FILE = credproxy's exported bundle (holding the private CA), upstream trust
    stays on the default roots: the private CA is not trusted upstream."""
    bundle = tmp_path / "data" / "ca-bundle.pem"
    bundle.parent.mkdir(parents=True, exist_ok=True)
    private_ca.cert_pem.write_to_path(str(bundle))
    with TlsServer(private_ca, ["pkgs.test"]) as srv:
        proxy = proxies(intercept_hosts=["pkgs.test"], resolve=["pkgs.test"], env={"SSL_CERT_FILE": str(bundle)})
        status, body = proxy.curl(f"https://pkgs.test:{srv.port}/")
    assert status == 502 and "unknown issuer" in body
    assert "credproxy's own exported bundle" in proxy.log()


def test_a_failing_interception_decision_intercepts(proxies, private_ca):
    """If deciding fails (a broken credential source), the host is intercepted rather than
    silently passed through; the proxy keeps serving."""
    with TlsServer(private_ca, ["pkgs.test"]) as srv:
        proxy = proxies(broken_hosts=["pkgs.test"], resolve=["pkgs.test"])
        status, body = proxy.curl(f"https://pkgs.test:{srv.port}/")
    assert status == 502 and "unknown issuer" in body  # terminated by the proxy
    assert "deciding interception for pkgs.test" in proxy.log()
