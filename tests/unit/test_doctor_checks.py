"""doctor's checks that need no proxy: the shell's variables, the CA files, the listener probe
against a real socket, TLS description and the redaction of the whole report."""

from __future__ import annotations


import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from credproxy import doctor, paths
from credproxy.config import ClientCertRule, Settings
from tests.helpers.loopback import LoopbackServer, canned_handler
from tests.helpers.servers import free_port


def write_ca(env) -> bytes:
    ca = trustme.CA()
    path = doctor.ca_cert_path(env)
    path.parent.mkdir(parents=True)
    ca.cert_pem.write_to_path(str(path))
    return doctor.load_certs_der(path)[0]


def by_status(checks, status):
    return [c for c in checks if c.status == status]


def test_proxy_and_ca_variables_pointing_at_credproxy_are_ok(tmp_path):
    env = {"CREDPROXY_DATA_DIR": str(tmp_path)}
    der = write_ca(env)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(doctor.ca_cert_path(env).read_bytes())
    shell = {"HTTPS_PROXY": "http://127.0.0.1:8899", "https_proxy": "http://localhost:8899",
             "SSL_CERT_FILE": str(bundle), "PIP_CERT": str(bundle)}
    checks = doctor.check_environment(shell, "127.0.0.1", 8899, der, ["pkgs.test"])
    assert by_status(checks, "problem") == []
    assert len(by_status(checks, "ok")) == 4


def test_each_wrong_variable_is_a_problem_with_the_env_fix(tmp_path):
    env = {"CREDPROXY_DATA_DIR": str(tmp_path)}
    der = write_ca(env)
    other = tmp_path / "system.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    shell = {"HTTPS_PROXY": "http://bob:hunter2token@proxy.corp:3128",
             "NO_PROXY": "localhost,.corp.example",
             "REQUESTS_CA_BUNDLE": str(other), "CURL_CA_BUNDLE": str(tmp_path / "gone.pem")}
    checks = doctor.check_environment(shell, "127.0.0.1", 8899, der, ["pkgs.corp.example"])
    problems = by_status(checks, "problem")
    titles = "\n".join(c.title for c in problems)
    assert "HTTPS_PROXY=http://bob:****@proxy.corp:3128 does not point at credproxy" in titles
    assert "hunter2token" not in titles
    assert "NO_PROXY=localhost,.corp.example bypasses credproxy for pkgs.corp.example" in titles
    assert f"REQUESTS_CA_BUNDLE={other} does not contain credproxy's CA" in titles
    assert "CURL_CA_BUNDLE" in titles and "does not exist" in titles
    assert "no HTTPS_PROXY/https_proxy points at credproxy" in titles
    assert all(c.fix for c in problems)
    assert any(c.fix == doctor.ENV_FIX for c in problems)


def test_ca_check_reports_path_fingerprint_and_bundle(tmp_path):
    env = {"CREDPROXY_DATA_DIR": str(tmp_path)}
    checks, der = doctor.check_ca(env)
    assert der is None and checks[0].status == "problem" and "credproxy serve" in checks[0].fix

    der = write_ca(env)
    cert = x509.load_der_x509_certificate(der)
    expected = cert.fingerprint(hashes.SHA256()).hex().upper()
    checks, got = doctor.check_ca(env)
    assert got == der
    assert checks[0].status == "ok" and str(doctor.ca_cert_path(env)) in checks[0].title
    assert checks[0].details[0].replace(":", "") == f"SHA-256 {expected}"

    paths.bundle_path(env).write_bytes(b"")  # a stale bundle without the CA
    checks, _ = doctor.check_ca(env)
    assert checks[1].status == "problem" and checks[1].fix == "rewrite it: credproxy ca bundle"


def test_listener_refused_says_how_to_start_it():
    port = free_port()
    check, up = doctor.check_listener("127.0.0.1", port)
    assert not up and check.status == "problem"
    assert f"no proxy is running on http://127.0.0.1:{port}" in check.title
    assert f"credproxy serve --port {port}" in check.fix


def test_listener_that_is_not_credproxy_is_named():
    with LoopbackServer(canned_handler(200, b"a web server")) as server:
        check, up = doctor.check_listener("127.0.0.1", server.port)
    assert not up and "maybe not credproxy" in check.title and "--port" in check.fix


def test_tls_description_names_insecure_hosts_and_client_certs(tmp_path):
    client = trustme.CA().issue_cert("client.example")
    pem = tmp_path / "client.pem"
    pem.write_bytes(client.private_key_and_cert_chain_pem.bytes())
    settings = Settings(allow_insecure_host=["pkgs.test:8443"],
                        client_certs=[ClientCertRule("*.corp.example", str(pem))],
                        env={"HOME": str(tmp_path)})
    insecure = "\n".join(doctor.describe_tls(settings, "https://pkgs.test:8443/simple/"))
    assert "verify:      NO" in insecure and "pkgs.test:8443" in insecure
    assert "verify:      yes" in "\n".join(doctor.describe_tls(settings, "https://pkgs.test/simple/"))
    assert str(pem) in "\n".join(doctor.describe_tls(settings, "https://a.corp.example/"))
    assert doctor.describe_tls(settings, "http://pkgs.test/") == ["TLS: none (plain http)"]


def test_report_render_masks_every_known_secret():
    report = doctor.Report(secrets=["pa55word!"], usernames=["alice"])
    report.add("Request", [doctor.Check("problem", "upstream said pa55word! and YWxpY2U6cGE1NXdvcmQh",
                                        fix="retry with pa55word%21")])
    text = report.render()
    assert "pa55word" not in text and "YWxpY2U6cGE1NXdvcmQh" not in text
    assert text.rstrip().endswith("1 problem found.")


def test_a_proxy_variable_without_the_current_token_is_a_problem_and_the_report_hides_it(tmp_path):
    from credproxy.proxy.token import ensure_token

    env = {"CREDPROXY_DATA_DIR": str(tmp_path)}
    current = ensure_token(env)
    owner = doctor.owner_credential(env)
    assert owner == current
    shell = {"HTTPS_PROXY": f"http://credproxy:{current.token}@127.0.0.1:8899",
             "HTTP_PROXY": "http://credproxy:rotated-away-old-token@127.0.0.1:8899",
             "https_proxy": "http://127.0.0.1:8899"}
    checks = doctor.check_environment(shell, "127.0.0.1", 8899, None, [], owner)
    ok = [c.title for c in by_status(checks, "ok")]
    stale = [c for c in by_status(checks, "problem") if "without the current proxy token" in c.title]
    assert ok == ["HTTPS_PROXY=http://credproxy:****@127.0.0.1:8899 points at credproxy"]
    assert sorted(c.title.split("=")[0] for c in stale) == ["HTTP_PROXY", "https_proxy"]
    assert all(c.fix == doctor.ENV_FIX for c in stale)
    report = doctor.Report(secrets=[current.token])
    report.add("Shell environment", checks)
    assert current.token not in report.render() and "rotated-away" not in report.render()


def test_a_response_head_dripped_a_byte_at_a_time_is_bounded_by_the_timeout_in_all():
    """A company proxy (a remote peer) sending one byte every 0.2 s, under a 0.5 s socket
    timeout: each recv returns in time, so only a deadline for the whole head stops it."""
    import socket
    import threading
    import time

    from credproxy.doctor import _read_head

    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip():
        conn, _ = server.accept()
        with conn:
            while not stop.is_set():
                try:
                    conn.sendall(b"x")
                except OSError:
                    return
                time.sleep(0.2)

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        with socket.create_connection(server.getsockname(), timeout=5) as sock:
            sock.settimeout(0.5)
            started = time.monotonic()
            try:
                _read_head(sock, 65536)
            except socket.timeout:
                pass
            else:
                raise AssertionError("a dripped head was read to its end")
            assert time.monotonic() - started < 2.0
    finally:
        stop.set()
        server.close()
        thread.join(5)
