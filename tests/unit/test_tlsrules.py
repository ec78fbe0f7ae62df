"""tlsrules: uv's allow-insecure-host matching, client-cert specificity, the roots decision,
PEM validation, failure classification and describe()."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import trustme
from hypothesis import given, strategies as st

from credproxy import paths, tlsrules
from credproxy.config import ClientCertRule, ConfigError, Settings
from credproxy.tlsrules import HostPattern, InsecureHost


def settings(tmp_path, env=None, **kw) -> Settings:
    return Settings(env={"CREDPROXY_DATA_DIR": str(tmp_path / "data"), **(env or {})}, **kw)


# --- allow-insecure-host (uv-auth-reference.md §14 table, plus our documented differences)

URL = ("https", "127.0.0.1", 28443)


@pytest.mark.parametrize("entry, expected", [
    ("127.0.0.1", True),               # host-only matches all ports
    ("127.0.0.1:28443", True),
    ("127.0.0.1:9999", False),
    ("https://127.0.0.1", True),
    ("http://127.0.0.1", False),       # scheme constraint
    ("localhost", False),              # no name/IP equivalence
    ("*", True),
    ("https://127.0.0.1/a/b", True),   # a path after a port-less host is ignored
    ("HTTPS://127.0.0.1:28443", True),
])
def test_insecure_host_table(entry, expected):
    assert InsecureHost.parse(entry).matches(*URL) is expected


@pytest.mark.parametrize("entry, scheme, host, port, expected", [
    ("Example.COM", "https", "example.com", 443, True),   # we compare case-insensitively
    ("example.com:443", "https", "example.com", 443, True),  # a proxy always sees the port
    ("[::1]:8443", "https", "::1", 8443, True),
    ("[::1]", "https", "::1", 1, True),
    ("::1", "https", "::1", 8443, True),
    ("example.com", "https", "sub.example.com", 443, False),  # no wildcard subdomains
])
def test_insecure_host_differences(entry, scheme, host, port, expected):
    assert InsecureHost.parse(entry).matches(scheme, host, port) is expected


@pytest.mark.parametrize("bad", ["host:port", "host:0", "host:70000", "https://", "[::1"])
def test_insecure_host_invalid_entries_are_config_errors(bad):
    with pytest.raises(ConfigError) as e:
        tlsrules.parse_insecure_hosts([bad])
    assert "allow-insecure-host" in str(e.value)


_label = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=8)
_host = st.lists(_label, min_size=1, max_size=4).map(".".join)
_port = st.integers(min_value=1, max_value=65535)


@given(host=_host, port=_port, other_port=_port)
def test_bare_host_matches_every_port_and_host_port_only_its_port(host, port, other_port):
    assert InsecureHost.parse(host).matches("https", host, other_port)
    assert InsecureHost.parse(f"{host}:{port}").matches("https", host, port)
    assert InsecureHost.parse(f"{host}:{port}").matches("https", host, other_port) is (port == other_port)


@given(host=_host, other=_host, port=_port)
def test_insecure_host_never_matches_another_host(host, other, port):
    if host != other:
        assert not InsecureHost.parse(host).matches("https", other, port)
        assert not InsecureHost.parse(f"https://{host}:{port}").matches("https", other, port)


@given(host=_host, port=_port)
def test_scheme_constraint(host, port):
    assert InsecureHost.parse(f"http://{host}").matches("http", host, port)
    assert not InsecureHost.parse(f"http://{host}").matches("https", host, port)


def test_uv_insecure_host_env_is_space_separated(tmp_path):
    plan = tlsrules.build_plan(settings(tmp_path, env={"UV_INSECURE_HOST": "a.test  b.test:8443"},
                                        allow_insecure_host=["c.test"]))
    assert [e.entry for e in plan.insecure] == ["c.test", "a.test", "b.test:8443"]
    assert plan.for_host("b.test", 8443).insecure is not None
    assert plan.for_host("b.test", 443).insecure is None


# --- client certificate patterns

@pytest.mark.parametrize("pattern, host, port, expected", [
    ("pkgs.corp.example", "pkgs.corp.example", 443, True),
    ("pkgs.corp.example", "PKGS.corp.example", 8443, True),
    ("pkgs.corp.example:8443", "pkgs.corp.example", 8443, True),
    ("pkgs.corp.example:8443", "pkgs.corp.example", 443, False),
    ("*.corp.example", "pkgs.corp.example", 443, True),
    ("*.corp.example", "a.b.corp.example", 443, True),
    ("*.corp.example", "corp.example", 443, False),
    ("*.corp.example", "evilcorp.example", 443, False),
    ("*.corp.example:8443", "pkgs.corp.example", 443, False),
    ("*", "anything.example", 1, True),
    ("[::1]:8443", "::1", 8443, True),
    ("[::1]:8443", "[::1]", 443, False),
])
def test_host_pattern_matching(pattern, host, port, expected):
    assert HostPattern.parse(pattern).matches(host, port) is expected


@pytest.fixture(scope="module")
def pems(tmp_path_factory):
    d = tmp_path_factory.mktemp("pems")
    ca = trustme.CA()
    out = {}
    for name in ("hostport", "host", "long", "short", "global", "other"):
        cert = ca.issue_cert(f"{name}.client", common_name=name)
        p = d / f"{name}.pem"
        p.write_bytes(cert.private_key_pem.bytes() + b"".join(b.bytes() for b in cert.cert_chain_pems))
        out[name] = str(p)
    return out


def test_most_specific_client_cert_wins(tmp_path, pems):
    rules = [ClientCertRule("*.corp.example", pems["short"]),
             ClientCertRule("*.pkgs.corp.example", pems["long"]),
             ClientCertRule("a.pkgs.corp.example", pems["host"]),
             ClientCertRule("a.pkgs.corp.example:8443", pems["hostport"])]
    plan = tlsrules.build_plan(settings(tmp_path, env={"SSL_CLIENT_CERT": pems["global"]},
                                        client_certs=rules))
    pick = lambda h, p=443: plan.client_cert_for(h, p).path  # noqa: E731
    assert pick("a.pkgs.corp.example", 8443) == pems["hostport"]
    assert pick("a.pkgs.corp.example") == pems["host"]
    assert pick("b.pkgs.corp.example") == pems["long"]
    assert pick("x.corp.example") == pems["short"]
    assert pick("elsewhere.example") == pems["global"]
    assert plan.client_cert_for("elsewhere.example", 443).origin == "SSL_CLIENT_CERT"
    assert plan.for_host("elsewhere.example", 443).per_host is False
    assert plan.for_host("x.corp.example", 443).per_host is True


def test_rule_order_breaks_ties(tmp_path, pems):
    plan = tlsrules.build_plan(settings(tmp_path, client_certs=[
        ClientCertRule("pkgs.test", pems["host"]), ClientCertRule("PKGS.test", pems["other"])]))
    assert plan.client_cert_for("pkgs.test", 443).path == pems["host"]


def test_customises_means_the_proxy_must_intercept(tmp_path, pems):
    plan = tlsrules.build_plan(settings(tmp_path, allow_insecure_host=["mirror.test"],
                                        client_certs=[ClientCertRule("*.corp.test", pems["host"])]))
    assert plan.customises("mirror.test", 8443)
    assert plan.customises("a.corp.test", 443)
    assert not plan.customises("pypi.org", 443)
    with_global = tlsrules.build_plan(settings(tmp_path, env={"SSL_CLIENT_CERT": pems["global"]}))
    assert with_global.customises("pypi.org", 443)  # the certificate must reach every host


# --- PEM validation

def _cert(ca=None, cn="client"):
    ca = ca or trustme.CA()
    return ca.issue_cert(f"{cn}.test", common_name=cn)


@pytest.mark.parametrize("order", ["cert-key", "key-cert"])
def test_pem_either_order_with_chain(tmp_path, order):
    inter = trustme.CA().create_child_ca()
    cert = _cert(inter)
    chain = b"".join(b.bytes() for b in cert.cert_chain_pems)
    key = cert.private_key_pem.bytes()
    p = tmp_path / "c.pem"
    p.write_bytes(chain + key if order == "cert-key" else key + chain)
    pem = tlsrules.load_client_pem(str(p))
    assert pem.chain_length == 2 and "client" in pem.subject


@pytest.mark.parametrize("content, reason", [
    (None, "cannot read"),
    (b"", "no certificate"),
    (b"garbage", "no certificate"),
    ("cert-only", "no private key"),
    ("key-only", "no certificate"),
    ("mismatch", "does not match"),
    ("chain-first", "does not match"),
])
def test_bad_pems_name_file_and_reason(tmp_path, content, reason):
    cert, other = _cert(), _cert()
    p = tmp_path / "bad.pem"
    if content == "cert-only":
        content = cert.cert_chain_pems[0].bytes()
    elif content == "key-only":
        content = cert.private_key_pem.bytes()
    elif content == "mismatch":
        content = cert.cert_chain_pems[0].bytes() + other.private_key_pem.bytes()
    elif content == "chain-first":
        inter_cert = _cert(trustme.CA().create_child_ca())
        content = b"".join(b.bytes() for b in reversed(inter_cert.cert_chain_pems)) + inter_cert.private_key_pem.bytes()
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(tlsrules.PemError) as e:
        tlsrules.load_client_pem(str(p))
    assert str(p) in str(e.value) and reason in str(e.value)
    assert "PRIVATE KEY" not in str(e.value)


def test_invalid_config_client_cert_is_config_error_naming_file(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a pem")
    s = settings(tmp_path, client_certs=[ClientCertRule("pkgs.test", str(bad), origin="/etc/credproxy.toml")])
    with pytest.raises(ConfigError) as e:
        tlsrules.build_plan(s)
    assert str(bad) in str(e.value) and "/etc/credproxy.toml" in str(e.value) and "pkgs.test" in str(e.value)


def test_invalid_ssl_client_cert_is_uvs_warning(tmp_path):
    plan = tlsrules.build_plan(settings(tmp_path, env={"SSL_CLIENT_CERT": str(tmp_path / "nope.pem")}))
    assert plan.global_cert is None
    assert any(w.startswith("Ignoring invalid SSL_CLIENT_CERT") and "nope.pem" in w for w in plan.warnings)


def test_encrypted_key_is_rejected(tmp_path):
    from cryptography.hazmat.primitives import serialization

    cert = _cert()
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), None)
    enc = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(b"pw"))
    p = tmp_path / "enc.pem"
    p.write_bytes(cert.cert_chain_pems[0].bytes() + enc)
    with pytest.raises(tlsrules.PemError, match="encrypted"):
        tlsrules.load_client_pem(str(p))


# --- roots

@pytest.fixture
def ca_pem(tmp_path):
    p = tmp_path / "corp-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(p))
    return str(p)


def test_default_roots_are_certifi(tmp_path):
    roots = tlsrules.decide_roots(settings(tmp_path))
    assert roots.kind == "certifi" and roots.ca_file is None and roots.ca_dir is None


def test_empty_env_values_are_unset(tmp_path):
    roots = tlsrules.decide_roots(settings(tmp_path, env={"SSL_CERT_FILE": "", "SSL_CERT_DIR": ""}))
    assert roots.kind == "certifi"


def test_ssl_cert_file_replaces_roots(tmp_path, ca_pem):
    roots = tlsrules.decide_roots(settings(tmp_path, env={"SSL_CERT_FILE": ca_pem}))
    assert roots.kind == "custom" and roots.ca_file == ca_pem and not roots.warnings


def test_ssl_cert_dir_every_file_counts(tmp_path, ca_pem):
    d = tmp_path / "certs"
    d.mkdir()
    for i in range(2):
        trustme.CA().cert_pem.write_to_path(str(d / f"ca{i}.crt"))
    (d / "README").write_text("not a cert")
    roots = tlsrules.decide_roots(settings(tmp_path, env={"SSL_CERT_FILE": ca_pem,
                                                          "SSL_CERT_DIR": f"{d}:{tmp_path / 'missing'}"}))
    assert roots.kind == "custom"
    assert roots.files == [ca_pem, str(d / "ca0.crt"), str(d / "ca1.crt")]
    assert roots.ca_file is None  # several files: the addon combines them
    assert any("SSL_CERT_DIR" in w and "missing" in w for w in roots.warnings)


def test_config_ca_bundle_wins_over_env(tmp_path, ca_pem):
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    roots = tlsrules.decide_roots(settings(tmp_path, env={"SSL_CERT_FILE": str(other)}, ca_bundle=ca_pem))
    assert roots.files == [ca_pem]


@pytest.mark.parametrize("value, problem", [("/x/nope.pem", "does not exist"), ("DIR", "not a file"),
                                            ("EMPTY", "No PEM certificates")])
def test_invalid_roots_path_trusts_nothing_with_uvs_warning(tmp_path, value, problem):
    if value == "DIR":
        value = str(tmp_path)
    elif value == "EMPTY":
        value = str(tmp_path / "empty.pem")
        (tmp_path / "empty.pem").write_text("")
    roots = tlsrules.decide_roots(settings(tmp_path, env={"SSL_CERT_FILE": value}))
    assert roots.kind == "none"
    assert any(f"Invalid SSL_CERT_FILE" in w and problem in w for w in roots.warnings)
    assert any("No default certificates will be trusted" in w for w in roots.warnings)


def test_own_exported_bundle_is_ignored(tmp_path):
    s = settings(tmp_path)
    bundle = paths.bundle_path(s.env)
    bundle.parent.mkdir(parents=True)
    trustme.CA().cert_pem.write_to_path(str(bundle))
    s.env["SSL_CERT_FILE"] = str(bundle)
    roots = tlsrules.decide_roots(s)
    assert roots.kind == "certifi"
    assert any("credproxy's own exported bundle" in w for w in roots.warnings)


def test_own_exported_bundle_gives_way_to_the_value_credproxy_env_replaced(tmp_path):
    """`credproxy serve` restarted in a shell that ran `eval "$(credproxy env)"`: the user's own
    SSL_CERT_FILE (a corporate CA), remembered by `env`, still decides upstream trust."""
    s = settings(tmp_path)
    bundle = paths.bundle_path(s.env)
    bundle.parent.mkdir(parents=True)
    trustme.CA().cert_pem.write_to_path(str(bundle))
    corporate = tmp_path / "corp-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(corporate))
    s.env.update({"SSL_CERT_FILE": str(bundle), "CREDPROXY_PREVIOUS_SSL_CERT_FILE": str(corporate)})
    roots = tlsrules.decide_roots(s)
    assert roots.kind == "custom" and [Path(f) for f in roots.files] == [corporate]
    assert any("CREDPROXY_PREVIOUS_SSL_CERT_FILE" in w for w in roots.warnings)
    s.env["CREDPROXY_PREVIOUS_SSL_CERT_FILE"] = str(bundle)  # never the bundle itself
    assert tlsrules.decide_roots(s).kind == "certifi"


def test_system_certs_use_the_os_store(tmp_path):
    for s in (settings(tmp_path, system_certs=True), settings(tmp_path, env={"UV_SYSTEM_CERTS": "true"})):
        roots = tlsrules.decide_roots(s)
        store = tlsrules.system_store()
        if store.count:
            assert roots.kind == "system" and (roots.ca_dir, roots.ca_file) == (store.ca_dir, store.ca_file)
            assert roots.count == store.count and roots.origins
        else:
            assert roots.kind == "certifi" and roots.warnings


def test_native_tls_is_a_deprecated_alias(tmp_path):
    roots = tlsrules.decide_roots(settings(tmp_path, env={"UV_NATIVE_TLS": "1"}))
    assert roots.kind in ("system", "certifi")
    assert any("deprecated" in w for w in roots.warnings)


def test_uv_system_certs_wins_over_its_deprecated_alias(tmp_path):
    roots = tlsrules.decide_roots(settings(tmp_path, env={"UV_SYSTEM_CERTS": "false", "UV_NATIVE_TLS": "1"}))
    assert roots.kind == "certifi" and not roots.warnings


def test_ssl_cert_file_replaces_system_certs_too(tmp_path, ca_pem):
    roots = tlsrules.decide_roots(settings(tmp_path, env={"SSL_CERT_FILE": ca_pem}, system_certs=True))
    assert roots.kind == "custom"


# --- failures

@pytest.mark.parametrize("error, code, alert, sent, reason, knob", [
    ("Certificate verify failed: unable to get local issuer certificate", 20, None, False,
     "unknown issuer", "SSL_CERT_FILE"),
    ("Certificate verify failed: self-signed certificate in certificate chain", 19, None, False,
     "unknown issuer", "allow-insecure-host"),
    ("Certificate verify failed: certificate has expired", 10, None, False, "expired", "allow-insecure-host"),
    ("Certificate verify failed: hostname mismatch", 62, None, False, "hostname mismatch", "allow-insecure-host"),
    ("the server sent TLS alert certificate_required", None, 116, False,
     "client certificate required", "SSL_CLIENT_CERT"),
    ("OpenSSL Error([('SSL routines', '', 'sslv3 alert handshake failure')])", None, 40, False,
     "client certificate required", "[[client-cert]]"),
    ("OpenSSL Error([('SSL routines', '', 'tlsv1 alert unknown ca')])", None, 48, True,
     "client certificate rejected", "did not accept"),
])
def test_classify_failure(tmp_path, error, code, alert, sent, reason, knob):
    plan = tlsrules.build_plan(settings(tmp_path))
    f = tlsrules.classify_failure(error, verify_code=code, alert=alert, sent_client_cert=sent,
                                  host_tls=plan.for_host("pkgs.test", 8443))
    assert f.reason == reason
    msg = tlsrules.failure_message("pkgs.test", 8443, f)
    assert "pkgs.test:8443" in msg and reason in msg and knob in msg


# --- describe

def test_describe_names_roots_cert_and_insecure(tmp_path, pems, ca_pem):
    s = settings(tmp_path, env={"SSL_CERT_FILE": ca_pem}, allow_insecure_host=["mirror.test"],
                 client_certs=[ClientCertRule("*.corp.test", pems["host"], origin="/cfg.toml")])
    d = tlsrules.describe(s, "pkgs.corp.test", 443)
    assert d["roots"]["kind"] == "custom" and ca_pem in d["roots"]["description"]
    assert d["verify"] is True
    assert d["client_cert"]["path"] == pems["host"] and d["client_cert"]["pattern"] == "*.corp.test"
    assert d["client_cert"]["subject"] and d["client_cert"]["origin"] == "/cfg.toml"
    text = tlsrules.format_description(d)
    assert "pkgs.corp.test:443" in text and pems["host"] in text and "*.corp.test" in text
    m = tlsrules.describe(s, "mirror.test", 8443)
    assert m["verify"] is False and m["insecure_entry"] == "mirror.test" and m["client_cert"] is None
    assert "NO" in tlsrules.format_description(m)
    key = open(pems["host"]).read().split("-----BEGIN")[1]
    assert key not in text  # never key material


def test_describe_reports_config_errors_instead_of_raising(tmp_path):
    s = settings(tmp_path, client_certs=[ClientCertRule("pkgs.test", str(tmp_path / "missing.pem"))])
    d = tlsrules.describe(s, "pkgs.test", 443)
    assert "missing.pem" in d["error"]
    assert "configuration error" in tlsrules.format_description(d)


def test_describe_all_lists_configured_hosts(tmp_path, pems):
    from credproxy.credentials.index import Index

    s = settings(tmp_path, indexes=[Index.from_url("https://pkgs.test:8443/simple/")],
                 allow_insecure_host=["mirror.test", "*"],
                 client_certs=[ClientCertRule("mtls.test", pems["host"]), ClientCertRule("*.corp.test", pems["host"])])
    hosts = [(d["host"], d["port"]) for d in tlsrules.describe_all(s)]
    assert hosts == [("pkgs.test", 8443), ("mtls.test", 443), ("mirror.test", 443)]


def test_expired_client_cert_is_a_warning(tmp_path):
    import datetime

    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=2)
    cert = trustme.CA().issue_cert("old.test", not_before=past - datetime.timedelta(days=30), not_after=past)
    p = tmp_path / "old.pem"
    p.write_bytes(cert.private_key_and_cert_chain_pem.bytes())
    plan = tlsrules.build_plan(settings(tmp_path, env={"SSL_CLIENT_CERT": str(p)},
                                        client_certs=[ClientCertRule("a.test", str(p))]))
    assert plan.global_cert is not None  # still used: the server decides
    expired = [w for w in plan.warnings if "expired on" in w and str(p) in w]
    assert len(expired) == 2


@given(sub=_host, suffix=_host, port=_port)
def test_wildcard_matches_subdomains_only(sub, suffix, port):
    pattern = HostPattern.parse(f"*.{suffix}")
    assert pattern.matches(f"{sub}.{suffix}", port)
    assert not pattern.matches(suffix, port)
    assert not pattern.matches(f"{sub}{suffix}", port) or f"{sub}{suffix}".endswith("." + suffix)


@given(host=_host, port=_port)
def test_specificity_order_holds_for_any_host(host, port):
    ranked = [HostPattern.parse(f"{host}:{port}"), HostPattern.parse(host),
              HostPattern.parse(f"*.x.{host}"), HostPattern.parse(f"*.{host}"), HostPattern.parse("*")]
    keys = [p.specificity() for p in ranked]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == 5


def test_exported_bundle_keeps_the_upstream_roots_from_ssl_cert_file(tmp_path, ca_pem):
    """`credproxy env` points clients' SSL_CERT_FILE at the bundle; a corporate CA the proxy
    got from SSL_CERT_FILE must be in it, or clients lose it for passthrough hosts. The
    bundle itself is never included again."""
    from credproxy.certs.bundle import bundle_parts

    s = settings(tmp_path, env={"SSL_CERT_FILE": ca_pem})
    labels = {label: str(path) for label, path in bundle_parts(s, s.env)}
    assert labels.get("upstream roots") == ca_pem
    s.env["SSL_CERT_FILE"] = str(paths.bundle_path(s.env))
    paths.bundle_path(s.env).write_text(open(ca_pem).read())
    assert "upstream roots" not in {label for label, _ in bundle_parts(s, s.env)}
