"""credproxy/egress.py: which company proxy, NO_PROXY as curl/requests match it, self-reference."""

from __future__ import annotations

import pytest

from credproxy.config import ConfigError, load_settings
from credproxy.egress import Egress, NoProxy, ProxyURL, ProxyURLError, build_egress

SECRET = "pr0xy-S3cret:/@%"
ENC = "pr0xy-S3cret%3A%2F%40%25"


def settings(env=None, tmp_path=None, config_text=None, **overrides):
    kwargs = {}
    if tmp_path is not None and config_text is not None:
        path = tmp_path / "config.toml"
        path.write_text(config_text)
        kwargs["config_file"] = str(path)
    return load_settings(overrides=overrides, env=dict(env or {}), pip_config_files=[], uv_config_files=[],
                         **kwargs)


# --- proxy URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value, scheme, host, port", [
    ("http://proxy.corp:3128", "http", "proxy.corp", 3128),
    ("proxy.corp:3128", "http", "proxy.corp", 3128),
    ("http://proxy.corp", "http", "proxy.corp", 80),
    ("https://proxy.corp/", "https", "proxy.corp", 443),
    ("HTTP://Proxy.Corp:8080/", "http", "proxy.corp", 8080),
    ("http://[fd00::1]:3128", "http", "fd00::1", 3128),
])
def test_proxy_url_forms(value, scheme, host, port):
    p = ProxyURL.parse(value)
    assert (p.scheme, p.host, p.port) == (scheme, host, port)
    assert p.credentials is None


def test_proxy_url_userinfo_is_decoded_and_never_shown():
    p = ProxyURL.parse(f"http://corp%5Calice:{ENC}@proxy.corp:3128")
    assert p.credentials.username == "corp\\alice"
    assert p.credentials.password == SECRET
    for text in (p.display, str(p), repr(p), p.url):
        assert SECRET not in text and ENC not in text
    assert p.display == "http://corp\\alice:****@proxy.corp:3128"
    assert p.url == "http://proxy.corp:3128/"


@pytest.mark.parametrize("value", ["socks5://proxy:1080", "socks5h://u:p@proxy:1080", "http://", "http://h:notaport"])
def test_unusable_proxy_urls_raise_without_the_password(value):
    with pytest.raises(ProxyURLError) as e:
        ProxyURL.parse(value.replace("u:p", f"u:{ENC}"))
    assert SECRET not in str(e.value) and ENC not in str(e.value)


# --- NO_PROXY -------------------------------------------------------------------------------------


@pytest.mark.parametrize("no_proxy, host, port, matched", [
    ("example.com", "example.com", 443, "example.com"),
    ("example.com", "pkgs.example.com", 443, "example.com"),
    ("example.com", "notexample.com", 443, None),
    (".example.com", "example.com", 443, ".example.com"),
    (".example.com", "a.b.example.com", 443, ".example.com"),
    ("*.example.com", "a.example.com", 443, "*.example.com"),
    ("EXAMPLE.com", "Pkgs.Example.COM.", 443, "EXAMPLE.com"),
    ("*", "anything.test", 443, "*"),
    ("a.test, b.test", "b.test", 443, "b.test"),
    ("a.test b.test", "b.test", 443, "b.test"),
    ("example.com:8443", "example.com", 8443, "example.com:8443"),
    ("example.com:8443", "example.com", 443, None),
    ("10.0.0.5", "10.0.0.5", 443, "10.0.0.5"),
    ("10.0.0.5", "10.0.0.50", 443, None),
    ("10.0.0.0/8", "10.1.2.3", 443, "10.0.0.0/8"),
    ("10.0.0.0/8", "11.1.2.3", 443, None),
    ("10.0.0.0/8", "ten.example", 443, None),
    ("fd00::/8", "[fd00::5]", 443, "fd00::/8"),
    ("::1", "::1", 443, "::1"),
    ("[fd00::1]:8080", "fd00::1", 8080, "[fd00::1]:8080"),
    ("[fd00::1]:8080", "fd00::1", 443, None),
    ("", "example.com", 443, None),
    ("example.com", "10.0.0.5", 443, None),
])
def test_no_proxy_matching(no_proxy, host, port, matched):
    assert NoProxy.parse(no_proxy).match(host, port) == matched


# --- choosing the proxy --------------------------------------------------------------------------


def test_environment_https_and_http_with_lower_case_first():
    e = build_egress(settings({"HTTPS_PROXY": "http://upper:3128", "https_proxy": "http://lower:3128",
                               "HTTP_PROXY": "http://plain:3128"}))
    assert e.https.host == "lower" and e.https_origin == "https_proxy"
    assert e.http.host == "plain" and e.http_origin == "HTTP_PROXY"
    assert e.route("https", "pypi.org", 443).proxy.host == "lower"
    assert e.route("http", "pypi.org", 80).proxy.host == "plain"


def test_all_proxy_is_the_fallback_for_both():
    e = build_egress(settings({"ALL_PROXY": "proxy.corp:8080"}))
    assert e.https == e.http == ProxyURL("http", "proxy.corp", 8080)
    assert e.route("https", "h.test", 443).reason == "from ALL_PROXY"


def test_no_proxy_sends_listed_hosts_direct_and_says_which_entry():
    e = build_egress(settings({"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "localhost,.corp.example"}))
    route = e.route("https", "pkgs.corp.example", 443)
    assert route.direct and "'.corp.example'" in route.reason and "NO_PROXY" in route.reason
    assert not e.route("https", "pypi.org", 443).direct


def test_loopback_is_always_direct():
    e = build_egress(settings({"HTTPS_PROXY": "http://proxy.corp:3128"}))
    for host in ("127.0.0.1", "localhost", "::1", "127.5.5.5"):
        assert e.route("https", host, 443).direct


def test_nothing_set_means_direct():
    route = build_egress(settings({})).route("https", "pypi.org", 443)
    assert route.direct and "HTTPS_PROXY" in route.reason


def test_a_variable_pointing_at_credproxy_is_ignored_and_the_previous_value_used():
    env = {"HTTPS_PROXY": "http://me:tok@127.0.0.1:8899", "https_proxy": "http://127.0.0.1:8899",
           "CREDPROXY_PREVIOUS_HTTPS_PROXY": f"http://alice:{ENC}@proxy.corp:3128"}
    e = build_egress(settings(env))
    assert e.https.host == "proxy.corp" and e.https.credentials.password == SECRET
    assert "CREDPROXY_PREVIOUS_HTTPS_PROXY" in e.https_origin
    assert any("points at credproxy itself" in n and "HTTPS_PROXY" in n for n in e.notes)
    assert all(SECRET not in n and ENC not in n for n in e.notes)


def test_self_reference_without_a_previous_value_means_direct_with_a_note():
    e = build_egress(settings({"HTTPS_PROXY": "http://localhost:8899"}))
    assert e.https is None
    assert any("points at credproxy itself" in n for n in e.notes)


def test_self_reference_counts_the_real_listen_port():
    s = settings({"HTTPS_PROXY": "http://127.0.0.1:40123"}, port=0)
    assert build_egress(s, listen=[("127.0.0.1", 40123)]).https is None
    assert build_egress(s).https is not None  # another port: a real proxy on loopback (cntlm)


def test_a_socks_value_is_ignored_with_a_note_and_the_next_variable_used():
    e = build_egress(settings({"https_proxy": "socks5://s:1080", "ALL_PROXY": "http://proxy.corp:3128"}))
    assert e.https.host == "proxy.corp"
    assert any("socks5:// proxies are not supported" in n for n in e.notes)


def test_flag_and_config_override_the_environment(tmp_path):
    env = {"HTTPS_PROXY": "http://env-proxy:3128", "NO_PROXY": "direct.test"}
    e = build_egress(settings(env, tmp_path, 'upstream-proxy = "http://cfg-proxy:3128"\n'))
    assert e.https.host == "cfg-proxy" and e.http.host == "cfg-proxy"
    assert e.https_origin.startswith("upstream-proxy in ")
    assert e.route("https", "direct.test", 443).direct  # NO_PROXY still applies
    e = build_egress(settings(env, tmp_path, 'upstream-proxy = "http://cfg-proxy:3128"\n',
                              upstream_proxy="http://flag-proxy:3128"))
    assert e.https.host == "flag-proxy" and e.https_origin == "--upstream-proxy"
    e = build_egress(settings(env, tmp_path, 'upstream-proxy = "http://cfg-proxy:3128"\n', upstream_proxy="none"))
    route = e.route("https", "pypi.org", 443)
    assert route.direct and route.reason == "--no-upstream-proxy"


def test_config_key_rejects_socks_and_hides_the_password(tmp_path):
    with pytest.raises(ConfigError) as e:
        settings({}, tmp_path, f'upstream-proxy = "socks5://u:{ENC}@s:1080"\n')
    assert "upstream-proxy" in str(e.value) and ENC not in str(e.value) and SECRET not in str(e.value)


def test_settings_repr_does_not_show_the_proxy_password():
    s = settings({}, upstream_proxy=f"http://alice:{ENC}@proxy.corp:3128")
    assert ENC not in repr(s)


def test_previous_no_proxy_joins_the_current_one():
    e = build_egress(settings({"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "localhost,127.0.0.1",
                               "CREDPROXY_PREVIOUS_NO_PROXY": ".corp.example"}))
    assert e.route("https", "pkgs.corp.example", 443).direct


def test_summary_names_the_proxy_redacted():
    e = build_egress(settings({"HTTPS_PROXY": f"http://alice:{ENC}@proxy.corp:3128",
                               "HTTP_PROXY": f"http://alice:{ENC}@proxy.corp:3128", "NO_PROXY": ".corp"}))
    text = "\n".join(e.summary())
    assert "http://alice:****@proxy.corp:3128" in text and ".corp" in text
    assert ENC not in text and SECRET not in text
    assert isinstance(e, Egress)


def test_a_loopback_value_in_a_shell_marked_by_credproxy_env_is_credproxys_on_any_port():
    env = {"HTTPS_PROXY": "http://127.0.0.1:9999", "CREDPROXY_ENV_ACTIVE": "1",
           "CREDPROXY_PREVIOUS_HTTPS_PROXY": "http://proxy.corp:3128"}
    assert build_egress(settings(env)).https.host == "proxy.corp"
    env.pop("CREDPROXY_ENV_ACTIVE")  # a local proxy on 9999 the user set themselves (cntlm)
    assert build_egress(settings(env)).https.port == 9999


def test_matches_what_credproxy_env_exports(tmp_path):
    """The other side of the contract (proxy/envvars.py): `env` in a shell with a company
    proxy, then `serve` from that shell, chains to the company proxy."""
    from credproxy.proxy.envvars import shell_environment

    user = {"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": ".corp.example"}
    exported, _ = shell_environment("http://127.0.0.1:8899", tmp_path / "b.pem", user, [])
    e = build_egress(settings({**user, **exported}))
    assert e.https.host == "proxy.corp" and "CREDPROXY_PREVIOUS_HTTPS_PROXY" in e.https_origin
    assert e.route("https", "pkgs.corp.example", 443).direct


@pytest.mark.parametrize("userinfo", ["ghp_T0kenAsProxyUser0123456789abcdXYZ", "ghp_T0kenAsProxyUser0123456789abcdXYZ:x-oauth-basic",
                                      "plainuser"])
def test_a_proxy_username_that_may_be_the_secret_is_never_shown(userinfo):
    """A username alone (`http://TOKEN@proxy`) or a token-shaped one is the secret: `****@`."""
    p = ProxyURL.parse(f"http://{userinfo}@proxy.corp:3128")
    for text in (p.display, str(p), repr(p)):
        assert "ghp_" not in text and "plainuser" not in text, text
    assert p.display.startswith("http://****") and p.display.endswith("@proxy.corp:3128")


def test_after_credproxy_env_one_note_names_the_replaced_value_and_masks_the_token():
    """What `eval "$(credproxy env)"` leaves (both spellings, the proxy token in the URL, only
    HTTPS_PROXY had a value before): serve says once that it uses the replaced value, with the
    token masked, and nothing about the lower-case spelling `env` added."""
    ours = "http://credproxy:t0ken-of-the-proxy@127.0.0.1:8899"
    e = build_egress(settings({"HTTPS_PROXY": ours, "https_proxy": ours, "CREDPROXY_ENV_ACTIVE": "1",
                                "CREDPROXY_PREVIOUS_HTTPS_PROXY": "http://proxy.corp:3128"}))
    assert e.https is not None and e.https.host == "proxy.corp"
    assert e.notes == ["ignored HTTPS_PROXY=http://credproxy:****@127.0.0.1:8899: it points at credproxy itself; "
                       "using CREDPROXY_PREVIOUS_HTTPS_PROXY=http://proxy.corp:3128, the value `credproxy env` replaced"]
