"""load_settings: every key, precedence (flag > env > file > import), error messages, uv/pip
imports. Hermetic: every test passes its own env and explicit (temporary) uv/pip files, so
the machine's /etc/pip.conf and exported SSL_* never leak in."""

from __future__ import annotations

import os
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from credproxy.config import (
    ClientCertRule,
    ConfigError,
    Settings,
    derived_index_name,
    load_settings,
    name_imported_indexes,
    parse_boolish,
    parse_index_arg,
    pip_config_paths,
    uv_config_paths,
)
from credproxy.credentials.index import Index, valid_index_name
from credproxy.credentials.resolver import Resolver, default_sources
from credproxy.credentials.model import secret_forms

SECRET = "s3cr3t-pa ss/word"  # space and slash: URL-encoded forms differ from the raw one
SECRET_Q = "s3cr3t-pa%20ss%2Fword"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {"HOME": str(tmp_path / "home"), "CREDPROXY_DATA_DIR": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "XDG_CONFIG_DIRS": str(tmp_path / "xdgsys")}
    env.update(extra)
    return env


def load(tmp_path: Path, config: str = "", *, env=None, overrides=None, uv=(), pip=()):
    """load_settings reading only the files given: the config text (always a file, so the
    platform default is never consulted) and explicit uv/pip config files."""
    cfg = write(tmp_path / "credproxy.toml", config)
    return load_settings(cfg, overrides=overrides, env=base_env(tmp_path, **(env or {})),
                         cwd=tmp_path, uv_config_files=list(uv), pip_config_files=list(pip))


def assert_no_secret(text: str, secret: str = SECRET, username: str | None = None) -> None:
    for form in secret_forms(secret, username):
        assert form not in text, f"secret form {form!r} leaked into: {text!r}"


# --- defaults and every key ------------------------------------------------------------------


def test_defaults_with_empty_config(tmp_path):
    s = load(tmp_path)
    assert s.indexes == [] and s.keyring_provider == "disabled" and s.allow_insecure_host == []
    assert s.system_certs is False and s.ca_bundle is None and s.client_certs == []
    assert s.intercept == "auto" and s.intercept_hosts == [] and s.warnings == []
    assert s.config_files == [str(tmp_path / "credproxy.toml")]
    assert s.ssl_cert_file is None and s.ssl_client_cert is None


@pytest.mark.parametrize(
    "toml, attr, expected",
    [
        ('keyring-provider = "subprocess"', "keyring_provider", "subprocess"),
        ('keyring-provider = "native"', "keyring_provider", "native"),
        ('keyring-provider = "disabled"', "keyring_provider", "disabled"),
        ('allow-insecure-host = ["mirror.corp.example", "10.0.0.5:8443"]', "allow_insecure_host",
         ["mirror.corp.example", "10.0.0.5:8443"]),
        ("system-certs = true", "system_certs", True),
        ("system-certs = false", "system_certs", False),
        ('ca-bundle = "/etc/corp/ca.pem"', "ca_bundle", "/etc/corp/ca.pem"),
        ('intercept = "all"', "intercept", "all"),
        ('intercept-hosts = ["*.corp.example", "h:8443"]', "intercept_hosts", ["*.corp.example", "h:8443"]),
        ('netrc-default = "any-host"', "netrc_default", "any-host"),
        ('netrc-default = "indexes"', "netrc_default", "indexes"),
        ('netrc-loopback = "any-port"', "netrc_loopback", "any-port"),
        ('netrc-loopback = "index-ports"', "netrc_loopback", "index-ports"),
    ],
)
def test_each_top_level_key(tmp_path, toml, attr, expected):
    assert getattr(load(tmp_path, toml), attr) == expected


def test_netrc_scopes_default_to_the_narrow_setting(tmp_path):
    s = load(tmp_path, "")
    assert (s.netrc_default, s.netrc_loopback) == ("indexes", "index-ports")


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    s = load(tmp_path, """
        ca-bundle = "certs/ca.pem"
        [[client-cert]]
        host = "*.corp.example"
        cert = "certs/client.pem"
    """)
    assert s.ca_bundle == str(tmp_path / "certs" / "ca.pem")
    assert s.client_certs == [ClientCertRule("*.corp.example", str(tmp_path / "certs" / "client.pem"),
                                             f"config:{tmp_path / 'credproxy.toml'}")]


def test_index_table_all_keys(tmp_path):
    s = load(tmp_path, """
        [[index]]
        name = "private"
        url = "https://pkgs.corp.example/simple/"
        authenticate = "always"
        username = "VssSessionToken"
        publish-url = "https://pkgs.corp.example/upload/"

        [[index]]
        url = "https://second.example/r/simple"
    """)
    first, second = s.indexes
    assert (first.name, first.url, first.authenticate, first.username, first.publish_url) == (
        "private", "https://pkgs.corp.example/simple/", "always", "VssSessionToken",
        "https://pkgs.corp.example/upload/")
    assert first.origin == f"config:{tmp_path / 'credproxy.toml'}"
    # a config index without name stays unnamed (as uv): only imports get derived names
    assert second.name is None and second.authenticate == "auto"


def test_config_index_url_credentials_kept_but_not_shown(tmp_path):
    s = load(tmp_path, f"""
        [[index]]
        name = "p"
        url = "https://alice:{SECRET_Q}@pkgs.example/simple"
    """)
    (index,) = s.indexes
    assert index.url == "https://pkgs.example/simple"
    assert (index.url_credentials.username, index.url_credentials.password) == ("alice", SECRET)
    assert_no_secret(repr(s) + str(s), username="alice")


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "toml, key, expected",
    [
        ("colour = 1", '"colour"', "known key"),
        ('keyring-provider = "auto"', "keyring-provider", '"disabled", "subprocess", "native"'),
        ("keyring-provider = 1", "keyring-provider", '"disabled", "subprocess", "native"'),
        ('system-certs = "yes"', "system-certs", "a boolean"),
        ("ca-bundle = 5", "ca-bundle", "path to a PEM file"),
        ('intercept = "some"', "intercept", '"auto", "all"'),
        ('allow-insecure-host = "h"', "allow-insecure-host", "an array of host names"),
        ("allow-insecure-host = [1]", "allow-insecure-host[1]", "a string"),
        ('intercept-hosts = ["https://x/"]', "intercept-hosts[1]", "host patterns"),
        ('index = "x"', "index", "array of tables"),
        ('[[index]]\nname = "p"', "index[1].url", "http:// or https:// URL"),
        ('[[index]]\nurl = "ftp://h/simple"', "index[1].url", "http:// or https:// URL"),
        ('[[index]]\nurl = "https:///simple"', "index[1].url", "with a host"),
        ('[[index]]\nurl = "https://h:99999/simple"', "index[1].url", "a valid URL"),
        ('[[index]]\nurl = 3', "index[1].url", "http:// or https:// URL"),
        ('[[index]]\nname = "has space"\nurl = "https://h/"', "index[1].name", "ASCII letters, digits"),
        ('[[index]]\nname = "caf\u00e9"\nurl = "https://h/"', "index[1].name", "ASCII letters, digits"),
        ('[[index]]\nurl = "https://h/"\n[[index]]\nurl = "https://g/"\nauthenticate = "sometimes"',
         "index[2].authenticate", '"auto", "always", "never"'),
        ('[[index]]\nurl = "https://h/"\nusername = 7', "index[1].username", "a non-empty string"),
        ('[[index]]\nurl = "https://h/"\npublish-url = "nope"', "index[1].publish-url", "http:// or https://"),
        ('[[index]]\nurl = "https://h/"\ndefault = true', 'index[1]."default"', "known key"),
        ('[[index]]\nname = "a"\nurl = "https://h/"\n[[index]]\nname = "a"\nurl = "https://g/"',
         "index[2].name", "not used by another index (index[1]"),
        ('keyring-timeout = "30"', "keyring-timeout", "a positive number of seconds"),
        ('keyring-timeout = 0', "keyring-timeout", "a positive number of seconds"),
        ('keyring-timeout = true', "keyring-timeout", "a positive number of seconds"),
        ('netrc-default = "all"', "netrc-default", '"indexes", "any-host"'),
        ('netrc-loopback = true', "netrc-loopback", '"index-ports", "any-port"'),
        ('[[client-cert]]\ncert = "/c.pem"', "client-cert[1].host", "host pattern"),
        ('[[client-cert]]\nhost = "https://h/"\ncert = "/c.pem"', "client-cert[1].host", "host pattern"),
        ('[[client-cert]]\nhost = "h"', "client-cert[1].cert", "certificate and key"),
        ('[[client-cert]]\nhost = "h"\ncert = "/c"\nkey = "/k"', 'client-cert[1]."key"', "known key"),
    ],
)
def test_error_names_file_key_and_expected(tmp_path, toml, key, expected):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, toml)
    msg = str(err.value)
    assert str(tmp_path / "credproxy.toml") in msg
    assert key in msg
    assert expected in msg


def test_all_problems_in_one_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, 'foo = 1\nkeyring-provider = "x"\n[[index]]\nurl = "ftp://h/"\nauthenticate = 3')
    msg = str(err.value)
    assert "4 problems" in msg
    for key in ('"foo"', "keyring-provider", "index[1].url", "index[1].authenticate"):
        assert key in msg


@pytest.mark.parametrize("url", [
    f"ftp://alice:{SECRET_Q}@h/simple",
    f"https://alice:{SECRET_Q}@h:99999/simple",
    f"https://alice:{SECRET_Q}@/simple",
])
def test_errors_never_show_url_secrets(tmp_path, url):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, f'[[index]]\nurl = "{url}"\npublish-url = "{url}"')
    assert "index[1].url" in str(err.value)
    assert_no_secret(str(err.value), username="alice")


def test_publish_url_with_credentials_is_refused_without_echo(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, f'[[index]]\nurl = "https://h/"\npublish-url = "https://u:{SECRET_Q}@h/upload"')
    assert "index[1].publish-url" in str(err.value) and "without credentials" in str(err.value)
    assert_no_secret(str(err.value), username="u")


def test_malformed_toml_names_file_and_line(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, 'keyring-provider = "subprocess"\nbroken = [1,\n')
    msg = str(err.value)
    assert str(tmp_path / "credproxy.toml") in msg and "invalid TOML" in msg and "line 2" in msg


def test_malformed_toml_does_not_echo_secret(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, f'[[index]]\nurl = "https://u:{SECRET}@h/"  garbage\n')
    assert "line 2" in str(err.value)
    assert_no_secret(str(err.value), username="u")


def test_explicit_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", env=base_env(tmp_path), cwd=tmp_path,
                      uv_config_files=[], pip_config_files=[])
    env = base_env(tmp_path, CREDPROXY_CONFIG=str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match="CREDPROXY_CONFIG"):
        load_settings(env=env, cwd=tmp_path, uv_config_files=[], pip_config_files=[])


def test_credproxy_config_env_names_the_file(tmp_path):
    cfg = write(tmp_path / "elsewhere.toml", 'intercept = "all"')
    s = load_settings(env=base_env(tmp_path, CREDPROXY_CONFIG=str(cfg)), cwd=tmp_path,
                      uv_config_files=[], pip_config_files=[])
    assert s.intercept == "all" and s.config_files == [str(cfg)]


# --- precedence ------------------------------------------------------------------------------

# the layers, highest priority first
_LAYERS = ("flag", "env", "file", "uv")


@pytest.mark.parametrize("present", [
    ("flag", "env", "file", "uv"), ("env", "file", "uv"), ("file", "uv"), ("uv",),
    ("flag", "uv"), ("env", "uv"), ("flag", "file"), ()])
def test_scalar_precedence_flag_env_file_import(tmp_path, present):
    values = {"flag": "native", "env": "subprocess", "file": "disabled", "uv": "subprocess"}
    certs = {"flag": False, "env": True, "file": False, "uv": True}
    overrides = {"keyring_provider": values["flag"], "system_certs": certs["flag"]} if "flag" in present else {}
    env = {"UV_KEYRING_PROVIDER": values["env"], "UV_SYSTEM_CERTS": "true"} if "env" in present else {}
    config = 'keyring-provider = "disabled"\nsystem-certs = false' if "file" in present else ""
    uv = [write(tmp_path / "uv" / "uv.toml", 'keyring-provider = "subprocess"\nsystem-certs = true')] \
        if "uv" in present else []
    s = load(tmp_path, config, env=env, overrides=overrides, uv=uv)
    winner = next((layer for layer in _LAYERS if layer in present), None)
    assert s.keyring_provider == (values[winner] if winner else "disabled")
    assert s.system_certs == (certs[winner] if winner else False)


def test_lists_are_combined_highest_layer_first(tmp_path):
    uv = write(tmp_path / "uv.toml", 'allow-insecure-host = ["uv.example", "shared.example"]')
    pip = write(tmp_path / "pip.conf", "[global]\ntrusted-host = pip.example shared.example\n")
    s = load(tmp_path, 'allow-insecure-host = ["file.example"]', env={"UV_INSECURE_HOST": "env1.example env2.example"},
             overrides={"allow_insecure_host": ["flag.example"]}, uv=[uv], pip=[pip])
    assert s.allow_insecure_host == ["flag.example", "env1.example", "env2.example", "file.example",
                                     "uv.example", "shared.example", "pip.example"]


def test_index_order_flag_env_config_uv_pip(tmp_path):
    uv = write(tmp_path / "uv.toml", '[[index]]\nname = "u"\nurl = "https://uv.example/simple"')
    pip = write(tmp_path / "pip.conf", "[global]\nindex-url = https://pip.example/simple\n")
    s = load(tmp_path, '[[index]]\nname = "c"\nurl = "https://cfg.example/simple"',
             env={"UV_INDEX": "e=https://env.example/simple"},
             overrides={"indexes": ["f=https://flag.example/simple"]}, uv=[uv], pip=[pip])
    assert [i.url.split("/")[2] for i in s.indexes] == [
        "flag.example", "env.example", "cfg.example", "uv.example", "pip.example"]
    assert [i.origin.split(":")[0] for i in s.indexes] == ["flag", "env", "config", "uv.toml", "pip.conf"]


def test_same_url_from_several_origins_is_merged_config_wins(tmp_path):
    pip = write(tmp_path / "pip.conf", f"[global]\nindex-url = https://bob:{SECRET_Q}@pkgs.example/simple/\n")
    uv = write(tmp_path / "uv.toml", '[[index]]\nname = "from-uv"\nurl = "https://pkgs.example/simple"\n'
                                     'authenticate = "always"')
    s = load(tmp_path, '[[index]]\nurl = "https://PKGS.example:443/simple"\nusername = "kr"', uv=[uv], pip=[pip])
    (index,) = s.indexes
    assert index.origin.startswith("config:")
    assert index.authenticate == "auto"  # the config's (default) policy, not uv's
    assert index.username == "kr"
    assert index.name == "from-uv"  # filled in: the config entry had none
    assert index.url_credentials.password == SECRET  # the pip.conf userinfo is not lost
    assert_no_secret(repr(s), username="bob")


# --- environment -----------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("1", True), ("true", True), ("TRUE", True), ("yes", True), ("on", True), ("t", True), ("y", True),
    ("0", False), ("false", False), ("no", False), ("off", False), ("f", False), ("N", False),
    ("maybe", None), ("2", None)])
def test_boolish(value, expected):
    assert parse_boolish(value) is expected


@pytest.mark.parametrize("env, expected, warned", [
    ({"UV_SYSTEM_CERTS": "1"}, True, False),
    ({"UV_SYSTEM_CERTS": "off"}, False, False),
    ({"UV_SYSTEM_CERTS": ""}, False, False),  # empty = unset, as clap does
    ({"UV_NATIVE_TLS": "true"}, True, True),
    ({"UV_NATIVE_TLS": "true", "UV_SYSTEM_CERTS": "false"}, False, True),
])
def test_system_certs_env_and_native_tls_alias(tmp_path, env, expected, warned):
    s = load(tmp_path, env=env)
    assert s.system_certs is expected
    assert any("UV_NATIVE_TLS is deprecated" in w and "UV_SYSTEM_CERTS" in w for w in s.warnings) is warned


@pytest.mark.parametrize("env, var, expected", [
    ({"UV_SYSTEM_CERTS": "maybe"}, "UV_SYSTEM_CERTS", "a boolean"),
    ({"UV_NATIVE_TLS": "2"}, "UV_NATIVE_TLS", "a boolean"),
    ({"UV_KEYRING_PROVIDER": "auto"}, "UV_KEYRING_PROVIDER", 'CREDPROXY_KEYRING_PROVIDER=native'),
    ({"CREDPROXY_KEYRING_PROVIDER": "auto"}, "CREDPROXY_KEYRING_PROVIDER", '"disabled", "subprocess", "native"'),
    ({"UV_INDEX": "b@d=https://h/"}, "UV_INDEX", "index names"),
    ({"UV_DEFAULT_INDEX": "https://h:0x/"}, "UV_DEFAULT_INDEX", "a valid URL"),
    ({"UV_INDEX_URL": "https:///simple"}, "UV_INDEX_URL", "with a host"),
    ({"CREDPROXY_KEYRING_TIMEOUT": "soon"}, "CREDPROXY_KEYRING_TIMEOUT", "a positive number of seconds"),
    ({"CREDPROXY_KEYRING_TIMEOUT": "nan"}, "CREDPROXY_KEYRING_TIMEOUT", "a positive number of seconds"),
])
def test_env_errors_name_the_variable(tmp_path, env, var, expected):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, env=env)
    assert var in str(err.value) and expected in str(err.value)


def test_env_index_items_split_on_whitespace(tmp_path):
    # 'bad' alone is a relative path (uv would read a local directory): ignored with a note
    s = load(tmp_path, env={"UV_INDEX": "bad name=https://h/"})
    assert [(i.name, i.url) for i in s.indexes] == [("name", "https://h/")]
    assert s.warnings == [] and any("UV_INDEX" in n and "bad" in n for n in s.notes)


def test_keyring_timeout_default_config_and_env(tmp_path):
    assert load(tmp_path).keyring_timeout == 10.0
    assert load(tmp_path, "keyring-timeout = 90").keyring_timeout == 90.0
    s = load(tmp_path, "keyring-timeout = 90", env={"CREDPROXY_KEYRING_TIMEOUT": "2.5"})
    assert s.keyring_timeout == 2.5  # the environment over the file
    kr = [src for src in default_sources(replace(s, keyring_provider="subprocess")) if src.name == "keyring"]
    assert kr[0].timeout == 2.5


def test_env_keyring_provider_and_insecure_hosts(tmp_path):
    s = load(tmp_path, env={"UV_KEYRING_PROVIDER": "subprocess", "UV_INSECURE_HOST": " a.example  b:8443 "})
    assert s.keyring_provider == "subprocess" and s.allow_insecure_host == ["a.example", "b:8443"]


@pytest.mark.parametrize("item, expected", [
    ("name=https://h/simple", ("name", "https://h/simple")),
    ("https://h/simple", (None, "https://h/simple")),
    ("https://h/simple?a=b", (None, "https://h/simple?a=b")),
    ("my.idx=https://u:p@h/simple", ("my.idx", "https://u:p@h/simple")),
])
def test_parse_index_arg_as_uv(item, expected):
    assert parse_index_arg(item) == expected


def test_env_indexes(tmp_path):
    s = load(tmp_path, env={
        "UV_INDEX": f"first=https://a.example/simple https://bob:{SECRET_Q}@b.example/",
        "UV_DEFAULT_INDEX": "dflt=https://d.example/simple",
        "UV_INDEX_URL": "https://legacy.example/simple",
        "UV_EXTRA_INDEX_URL": "https://x1.example/simple https://x2.example/simple",
    })
    got = [(i.name, i.url, i.origin) for i in s.indexes]
    assert got == [
        ("first", "https://a.example/simple", "env:UV_INDEX"),
        (None, "https://b.example/", "env:UV_INDEX"),
        ("dflt", "https://d.example/simple", "env:UV_DEFAULT_INDEX"),
        (None, "https://legacy.example/simple", "env:UV_INDEX_URL"),
        (None, "https://x1.example/simple", "env:UV_EXTRA_INDEX_URL"),
        (None, "https://x2.example/simple", "env:UV_EXTRA_INDEX_URL"),
    ]
    assert s.indexes[1].url_credentials.password == SECRET
    assert_no_secret(repr(s) + "".join(s.warnings + s.notes), username="bob")


def test_env_local_and_file_indexes_are_ignored_quietly(tmp_path):
    s = load(tmp_path, env={"UV_INDEX": "local=file:///opt/pypi/simple ./wheels",
                            "UV_EXTRA_INDEX_URL": "/srv/wheels"})
    assert s.indexes == [] and s.warnings == []
    assert len(s.notes) == 3


def test_ssl_variables_recorded(tmp_path):
    s = load(tmp_path, env={"SSL_CERT_FILE": "/c/ca.pem", "SSL_CERT_DIR": "/c/d1:/c/d2",
                            "SSL_CLIENT_CERT": "/c/client.pem"})
    assert (s.ssl_cert_file, s.ssl_cert_dir, s.ssl_client_cert) == ("/c/ca.pem", "/c/d1:/c/d2", "/c/client.pem")
    empty = load(tmp_path, env={"SSL_CERT_FILE": "", "SSL_CERT_DIR": "", "SSL_CLIENT_CERT": ""})
    assert (empty.ssl_cert_file, empty.ssl_cert_dir, empty.ssl_client_cert) == (None, None, None)


def test_ssl_cert_file_pointing_at_our_own_bundle_is_not_upstream_trust(tmp_path):
    bundle = tmp_path / "data" / "ca-bundle.pem"
    s = load(tmp_path, env={"SSL_CERT_FILE": str(bundle)})
    assert s.ssl_cert_file is None and any("own client bundle" in n for n in s.notes)


def test_settings_env_is_the_given_env(tmp_path):
    s = load(tmp_path, env={"UV_INDEX_X_PASSWORD": SECRET})
    assert s.env["UV_INDEX_X_PASSWORD"] == SECRET
    assert_no_secret(repr(s) + str(s))


# --- flags (overrides) -----------------------------------------------------------------------


def test_overrides_set_serve_options_and_ignore_none(tmp_path):
    s = load(tmp_path, 'intercept = "all"', overrides={
        "host": "0.0.0.0", "port": 0, "log_format": "json", "save_flows": "/tmp/f", "verbose": 2,
        "proxyauth": f"me:{SECRET}", "intercept": None, "ca_bundle": None})
    assert (s.host, s.port, s.log_format, s.save_flows, s.verbose) == ("0.0.0.0", 0, "json", "/tmp/f", 2)
    assert s.intercept == "all"  # None = flag not given
    assert s.proxyauth == f"me:{SECRET}"
    assert_no_secret(repr(s) + str(s), username="me")


@pytest.mark.parametrize("overrides, expected", [
    ({"colour": 1}, "option colour"),
    ({"keyring_provider": "auto"}, "--keyring-provider"),
    ({"intercept": "x"}, "--intercept"),
    ({"log_format": "xml"}, "--log-format"),
    ({"indexes": ["https://u:pw@h:bad/"]}, "--index"),
])
def test_override_errors(tmp_path, overrides, expected):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, overrides=overrides)
    assert expected in str(err.value) and "command line" in str(err.value)
    assert "pw" not in str(err.value)


def test_overrides_accept_index_objects(tmp_path):
    ix = Index.from_url("https://h/simple", name="given", origin="--index")
    assert load(tmp_path, overrides={"indexes": [ix]}).indexes == [ix]


# --- pip import ------------------------------------------------------------------------------


def test_pip_conf_import(tmp_path):
    pip = write(tmp_path / "etc" / "pip.conf", f"""
        [global]
        index-url = https://alice:{SECRET_Q}@pkgs.corp.example/simple
        extra-index-url =
            https://extra1.example/simple
            file:///opt/pypi/simple
            https://extra2.example/simple
        trusted-host = pkgs.corp.example
            mirror.example:8443
        cert = /etc/ssl/whatever.pem
    """)
    s = load(tmp_path, pip=[pip])
    assert [(i.name, i.url, i.origin) for i in s.indexes] == [
        ("pkgs.corp.example", "https://pkgs.corp.example/simple", f"pip.conf:{pip}"),
        ("extra1.example", "https://extra1.example/simple", f"pip.conf:{pip}"),
        ("extra2.example", "https://extra2.example/simple", f"pip.conf:{pip}"),
    ]
    assert s.indexes[0].url_credentials.username == "alice"
    assert s.indexes[0].url_credentials.password == SECRET
    assert s.allow_insecure_host == ["pkgs.corp.example", "mirror.example:8443"]
    assert s.config_files[-1] == str(pip)
    assert s.warnings == []  # the file:// index is not worth a warning
    assert any("file:///opt/pypi/simple" in n for n in s.notes)
    assert_no_secret(repr(s) + str(s) + "".join(s.notes), username="alice")


def test_pip_install_section_and_later_files_and_env_win(tmp_path):
    g = write(tmp_path / "global.conf", "[global]\nindex-url = https://global.example/simple\n"
                                        "extra-index-url = https://gx.example/simple\n")
    u = write(tmp_path / "user.conf", "[global]\nindex-url = https://user.example/simple\n")
    v = write(tmp_path / "venv.conf", "[install]\nindex-url = https://install.example/simple\n")
    s = load(tmp_path, pip=[g, u, v])
    assert [i.url for i in s.indexes] == ["https://install.example/simple", "https://gx.example/simple"]
    assert s.config_files[1:] == [str(g), str(u), str(v)]
    s = load(tmp_path, pip=[g, u], env={"PIP_INDEX_URL": "https://env.example/simple",
                                        "PIP_EXTRA_INDEX_URL": "https://e1.example/ https://e2.example/",
                                        "PIP_TRUSTED_HOST": "t.example"})
    assert [(i.url, i.origin) for i in s.indexes] == [
        ("https://env.example/simple", "env:PIP_INDEX_URL"),
        ("https://e1.example/", "env:PIP_EXTRA_INDEX_URL"), ("https://e2.example/", "env:PIP_EXTRA_INDEX_URL")]
    assert s.allow_insecure_host == ["t.example"]


def test_malformed_pip_conf_is_skipped_with_a_warning_and_no_secret(tmp_path):
    bad = write(tmp_path / "pip.conf", f"index-url = https://u:{SECRET_Q}@h/simple\n[global]\n")
    s = load(tmp_path, pip=[bad])
    assert s.indexes == [] and len(s.warnings) == 1
    assert str(bad) in s.warnings[0] and "line 1" in s.warnings[0]
    assert_no_secret(s.warnings[0], username="u")
    dup = write(tmp_path / "dup.conf", f"[global]\nindex-url = https://u:{SECRET_Q}@h/\nindex-url = x\n")
    s = load(tmp_path, pip=[dup])
    assert "line 3" in s.warnings[0] and "index-url" in s.warnings[0]
    assert_no_secret(s.warnings[0], username="u")


def test_pip_config_discovery_paths(tmp_path):
    env = {"HOME": "/h", "XDG_CONFIG_HOME": "/x", "XDG_CONFIG_DIRS": "/s1:/s2", "VIRTUAL_ENV": "/venv"}
    assert pip_config_paths(env) == [Path("/s1/pip/pip.conf"), Path("/s2/pip/pip.conf"), Path("/etc/pip.conf"),
                                     Path("/h/.pip/pip.conf"), Path("/x/pip/pip.conf"), Path("/venv/pip.conf")]
    assert pip_config_paths({**env, "PIP_CONFIG_FILE": os.devnull}) == []
    # an existing PIP_CONFIG_FILE replaces the user files (pip's rule), a missing one does not
    f = write(tmp_path / "env.conf", "")
    assert pip_config_paths({**env, "PIP_CONFIG_FILE": str(f)}) == [
        Path("/s1/pip/pip.conf"), Path("/s2/pip/pip.conf"), Path("/etc/pip.conf"), Path("/venv/pip.conf"), f]
    missing = pip_config_paths({**env, "PIP_CONFIG_FILE": "/nope.conf"})
    assert Path("/h/.pip/pip.conf") in missing and missing[-1] == Path("/nope.conf")


def test_pip_config_file_devnull_reads_nothing(tmp_path):
    s = load_settings(write(tmp_path / "c.toml", ""), env=base_env(tmp_path, PIP_CONFIG_FILE=os.devnull),
                      cwd=tmp_path, uv_config_files=[])
    assert s.indexes == [] and s.config_files == [str(tmp_path / "c.toml")]


# --- uv import -------------------------------------------------------------------------------


UV_TOML = f"""
    index-url = "https://primary.example/simple"
    extra-index-url = ["https://extra.example/simple", "./local-wheels"]
    allow-insecure-host = ["uv-insecure.example", {{ host = "t.example", port = 8443, scheme = "https" }}]
    keyring-provider = "subprocess"
    native-tls = true
    some-other-uv-key = 1

    [[index]]
    name = "corp"
    url = "https://carol:{SECRET_Q}@corp.example/simple"
    authenticate = "always"
    publish-url = "https://corp.example/upload"
    explicit = true

    [[index]]
    url = "https://unnamed.example/simple"

    [pip]
    extra-index-url = ["https://pipsection.example/simple"]
"""


def test_uv_toml_import(tmp_path):
    uv = write(tmp_path / "proj" / "uv.toml", UV_TOML)
    s = load(tmp_path, uv=[uv])
    assert [(i.name, i.url, i.authenticate) for i in s.indexes] == [
        ("corp", "https://corp.example/simple", "always"),
        ("unnamed.example", "https://unnamed.example/simple", "auto"),
        ("primary.example", "https://primary.example/simple", "auto"),
        ("extra.example", "https://extra.example/simple", "auto"),
        ("pipsection.example", "https://pipsection.example/simple", "auto"),
    ]
    assert {i.origin for i in s.indexes} == {f"uv.toml:{uv}"}
    assert s.indexes[0].publish_url == "https://corp.example/upload"
    assert s.indexes[0].url_credentials.password == SECRET
    assert s.allow_insecure_host == ["uv-insecure.example", "https://t.example:8443"]
    assert s.keyring_provider == "subprocess" and s.system_certs is True
    assert s.warnings == [] and str(uv) in s.config_files
    assert_no_secret(repr(s) + "".join(s.notes), username="carol")


def test_pyproject_tool_uv_import(tmp_path):
    py = write(tmp_path / "proj" / "pyproject.toml", """
        [project]
        name = "x"
        [tool.uv]
        keyring-provider = "subprocess"
        [[tool.uv.index]]
        name = "pyp"
        url = "https://pyp.example/simple"
        authenticate = "sometimes"
    """)
    s = load(tmp_path, uv=[py])
    assert [(i.name, i.origin, i.authenticate) for i in s.indexes] == [("pyp", f"pyproject.toml:{py}", "auto")]
    assert s.keyring_provider == "subprocess"
    # a bad value in someone else's file is skipped with a warning naming it, not fatal
    assert len(s.warnings) == 1 and "tool.uv.index[1].authenticate" in s.warnings[0] and str(py) in s.warnings[0]


def test_project_uv_config_wins_over_user(tmp_path):
    user = write(tmp_path / "user" / "uv.toml", 'keyring-provider = "disabled"\n'
                                                '[[index]]\nname = "u"\nurl = "https://user.example/"')
    proj = write(tmp_path / "proj" / "uv.toml", 'keyring-provider = "subprocess"\n'
                                                '[[index]]\nname = "p"\nurl = "https://proj.example/"')
    s = load(tmp_path, uv=[user, proj])  # lowest priority first
    assert s.keyring_provider == "subprocess"
    assert [i.name for i in s.indexes] == ["p", "u"]


def test_malformed_uv_toml_is_skipped_with_warning(tmp_path):
    uv = write(tmp_path / "uv.toml", 'index-url = "https://x.example/simple"\nbad = [\n')
    s = load(tmp_path, uv=[uv])
    assert s.indexes == [] and str(uv) not in s.config_files
    assert len(s.warnings) == 1 and str(uv) in s.warnings[0] and "line" in s.warnings[0]


def test_uv_discovery_as_uv_does(tmp_path):
    env = base_env(tmp_path)
    user = write(tmp_path / "xdg" / "uv" / "uv.toml", "")
    project = tmp_path / "repo"
    deep = project / "src" / "pkg"
    deep.mkdir(parents=True)
    # a pyproject without [tool.uv] does not stop the upward search
    write(deep / "pyproject.toml", "[project]\nname = 'inner'\n")
    write(project / "pyproject.toml", "[tool.uv]\n")
    found = [p for p in uv_config_paths(env, deep) if str(p).startswith(str(tmp_path))]
    assert found == [user, project / "pyproject.toml"]
    # uv.toml beats pyproject.toml in the same directory
    write(project / "uv.toml", "")
    assert uv_config_paths(env, deep)[-1] == project / "uv.toml"
    assert uv_config_paths({**env, "UV_NO_CONFIG": "1"}, deep) == []
    assert uv_config_paths({**env, "UV_CONFIG_FILE": "/some/uv.toml"}, deep) == [Path("/some/uv.toml")]
    assert uv_config_paths({**env, "UV_NO_CONFIG": "0"}, deep)[-1] == project / "uv.toml"


def test_the_working_directory_is_never_imported(tmp_path):
    """Issue 9 finding 3: a repository's [tool.uv] in serve's cwd used to be read ahead of the
    user's uv config. Only the user's uv files are read unless a project is named."""
    write(tmp_path / "xdg" / "uv" / "uv.toml", '[[index]]\nname = "user-idx"\nurl = "https://user.example/simple"')
    write(tmp_path / "repo" / "pyproject.toml", '[[tool.uv.index]]\nname = "proj"\nurl = "https://proj.example/simple"\n'
                                                '[tool.uv]\nallow-insecure-host = ["user.example"]')
    write(tmp_path / "repo" / "uv.toml", 'keyring-provider = "subprocess"')
    s = load_settings(write(tmp_path / "c.toml", ""), env=base_env(tmp_path), cwd=tmp_path / "repo",
                      pip_config_files=[])
    assert [i.name for i in s.indexes] == ["user-idx"]
    assert s.allow_insecure_host == [] and s.keyring_provider == "disabled"
    assert not any("repo" in f for f in s.config_files) and s.project is None and s.project_report == []


def project_load(tmp_path, project_toml: str, *, user_uv: str = "", config: str = "", env=None, **kw):
    write(tmp_path / "xdg" / "uv" / "uv.toml", user_uv)
    write(tmp_path / "repo" / "pyproject.toml", project_toml)
    (tmp_path / "repo" / "src").mkdir(exist_ok=True)
    return load_settings(write(tmp_path / "c.toml", config), env=base_env(tmp_path, **(env or {})),
                         cwd=tmp_path, pip_config_files=[], **kw)


def test_project_flag_imports_the_project_after_the_users_own(tmp_path):
    s = project_load(tmp_path, '[[tool.uv.index]]\nname = "proj"\nurl = "https://proj.example/simple"\n'
                               '[[tool.uv.index]]\nurl = "https://t:s3cret@anon.example/simple"',
                     user_uv='[[index]]\nname = "user-idx"\nurl = "https://user.example/simple"',
                     overrides={"project": "repo/src"})  # relative to cwd; found upwards, as uv does
    assert [(i.name, i.url) for i in s.indexes] == [
        ("user-idx", "https://user.example/simple"), ("proj", "https://proj.example/simple"),
        ("anon.example", "https://anon.example/simple")]
    assert s.project == str(tmp_path / "repo" / "src")
    assert str(tmp_path / "repo" / "pyproject.toml") in s.config_files
    report = "\n".join(s.project_report)
    assert 'added index "proj" https://proj.example/simple' in report
    assert 'added index "anon.example" https://anon.example/simple (with credentials in the URL)' in report
    assert "s3cret" not in report + "\n".join(s.warnings + s.notes)
    assert s.warnings == []


def test_project_config_key_is_relative_to_the_config_file(tmp_path):
    s = project_load(tmp_path, '[[tool.uv.index]]\nname = "proj"\nurl = "https://proj.example/simple"',
                     config='project = "repo"')
    assert s.project == str(tmp_path / "repo") and [i.name for i in s.indexes] == ["proj"]
    # the flag wins over the key
    s = project_load(tmp_path, "[tool.uv]\n", config='project = "repo"', overrides={"project": str(tmp_path)})
    assert s.project == str(tmp_path)


@pytest.mark.parametrize("name", ["corp", "CORP"])
def test_project_cannot_rebind_a_users_index_name(tmp_path, name):
    s = project_load(tmp_path, f'[[tool.uv.index]]\nname = "{name}"\nurl = "https://u:SECRETX@evil.example/simple"',
                     config='[[index]]\nname = "corp"\nurl = "https://pkgs.example/simple"',
                     overrides={"project": "repo"})
    assert [(i.name, i.url) for i in s.indexes] == [("corp", "https://pkgs.example/simple")]
    assert len(s.warnings) == 1 and f'ignored index "{name}"' in s.warnings[0]
    assert "a project cannot rebind" in s.warnings[0] and "SECRETX" not in s.warnings[0]
    assert s.project_report == []


def test_project_cannot_take_a_name_spelt_differently_or_derived(tmp_path):
    # UV_INDEX_MY_CORP_* is one variable for my-corp, my_corp and MY.CORP
    s = project_load(tmp_path, '[[tool.uv.index]]\nname = "MY.CORP"\nurl = "https://evil.example/simple"\n'
                               '[[tool.uv.index]]\nname = "pkgs.example"\nurl = "https://evil2.example/simple"\n'
                               '[[tool.uv.index]]\nurl = "https://user.example:8443/other/"',
                     user_uv='[[index]]\nname = "my-corp"\nurl = "https://corp.example/simple"\n'
                             '[[index]]\nurl = "https://pkgs.example/simple"\n'  # derived name pkgs.example
                             '[[index]]\nname = "user-example-8443"\nurl = "https://x.example/simple"',
                     overrides={"project": "repo"})
    assert [i.name for i in s.indexes] == ["my-corp", "pkgs.example", "user-example-8443", "user.example-8443-2"]
    assert len(s.warnings) == 2


def test_project_cannot_change_a_users_index_or_scalars(tmp_path):
    s = project_load(tmp_path, '[tool.uv]\nkeyring-provider = "subprocess"\nsystem-certs = true\n'
                               '[[tool.uv.index]]\nname = "other"\nurl = "https://pkgs.example/simple/"\n'
                               'authenticate = "never"',
                     config='keyring-provider = "disabled"\n[[index]]\nurl = "https://pkgs.example/simple"',
                     overrides={"project": "repo"})
    assert [(i.name, i.authenticate) for i in s.indexes] == [(None, "auto")]
    assert s.keyring_provider == "disabled"  # the user's config says so
    assert s.system_certs is True  # the user's configuration is silent: the project's applies, reported
    assert any("sets system-certs = true" in r for r in s.project_report)
    assert any("already configured by you" in n for n in s.notes)


def test_project_allow_insecure_host_is_a_warning_each(tmp_path):
    s = project_load(tmp_path, '[tool.uv]\nallow-insecure-host = ["pkgs.example", "mine.example", "u:SECRETY@x.example"]',
                     config='allow-insecure-host = ["mine.example"]', overrides={"project": "repo"})
    assert s.allow_insecure_host == ["mine.example", "pkgs.example", "u:SECRETY@x.example"]
    assert len(s.warnings) == 2 and 'allow-insecure-host "pkgs.example"' in s.warnings[0]
    assert "SECRETY" not in "\n".join(s.warnings)


def test_project_directory_must_exist_and_may_have_no_uv_settings(tmp_path):
    with pytest.raises(ConfigError, match="project directory not found .*--project"):
        load_settings(write(tmp_path / "c.toml", ""), env=base_env(tmp_path), overrides={"project": str(tmp_path / "nope")},
                      pip_config_files=[], uv_config_files=[])
    (tmp_path / "empty").mkdir()
    s = load_settings(write(tmp_path / "c.toml", ""), env=base_env(tmp_path), overrides={"project": str(tmp_path / "empty")},
                      pip_config_files=[], uv_config_files=[])
    assert len(s.warnings) == 1 and "no project settings imported" in s.warnings[0]


# --- derived names ---------------------------------------------------------------------------


def test_derived_names_are_unique_and_do_not_take_configured_names(tmp_path):
    pip = write(tmp_path / "pip.conf", "[global]\nindex-url = https://h.example/a/simple\n"
                                       "extra-index-url = https://h.example/b/simple https://h.example:8443/simple\n")
    s = load(tmp_path, '[[index]]\nname = "h.example"\nurl = "https://other.example/"', pip=[pip])
    assert [i.name for i in s.indexes] == ["h.example", "h.example-2", "h.example-3", "h.example-8443"]


def test_pip_conf_index_takes_uv_index_env_credentials_under_its_host_name(tmp_path):
    """docs/legacy-pip.md: UV_INDEX_PKGS_CORP_EXAMPLE_* for pip.conf's pkgs.corp.example."""
    pip = write(tmp_path / "pip.conf", "[global]\nindex-url = https://pkgs.corp.example/simple/\n")
    env = {"UV_INDEX_PKGS_CORP_EXAMPLE_USERNAME": "alice", "UV_INDEX_PKGS_CORP_EXAMPLE_PASSWORD": SECRET}
    s = load(tmp_path, pip=[pip], env=env)
    assert [i.name for i in s.indexes] == ["pkgs.corp.example"]
    resolver = Resolver(s, default_sources(s))
    d = resolver.resolve("https://pkgs.corp.example/simple/private-pkg/")
    resolver.close()
    assert (d.action, d.source, d.credentials.username) == ("inject", "env:UV_INDEX_PKGS_CORP_EXAMPLE", "alice")


@hsettings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from(["http", "https"]),
    st.one_of(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,5}){0,2}", fullmatch=True),
              st.sampled_from(["[::1]", "127.0.0.1", "[fe80::1]"])),
    st.one_of(st.none(), st.integers(1, 65535)),
    st.sampled_from(["/simple", "/", "/r/simple/", ""])), max_size=8))
def test_derived_names_always_valid_and_distinct(specs):
    indexes = [Index(url=f"{scheme}://{host}{'' if port is None else f':{port}'}{path}", origin="pip.conf:/p")
               for scheme, host, port, path in specs]
    named = name_imported_indexes(indexes)
    names = [i.name for i in named]
    assert all(valid_index_name(n) for n in names)
    assert len(set(names)) == len(names)
    assert named == name_imported_indexes(indexes)  # deterministic
    assert all(derived_index_name(i.url) for i in indexes)


def test_settings_repr_hides_env_and_proxyauth():
    s = Settings(env={"HF_TOKEN": SECRET}, proxyauth=f"u:{SECRET}")
    assert_no_secret(repr(s), username="u")


@pytest.mark.parametrize("url", [
    f"https://bob:{SECRET_Q}@h/simple",
    f"./bob:{SECRET_Q}@wheels",
    f"file:///bob:{SECRET_Q}@x/simple",
    f"https://bob:{SECRET_Q}/x@h/simple",  # ambiguous userinfo, as uv refuses it
    f"bob:{SECRET_Q}@h",
])
def test_safe_url_masks_every_userinfo_shape(url):
    from credproxy.config import safe_url
    shown = safe_url(url)
    assert_no_secret(shown, username="bob")
    assert "****" in shown


def test_ignored_local_index_with_userinfo_leaks_nothing(tmp_path):
    s = load(tmp_path, env={"UV_EXTRA_INDEX_URL": f"./bob:{SECRET_Q}@wheels"})
    assert s.indexes == [] and len(s.notes) == 1
    assert_no_secret(s.notes[0], username="bob")


def test_same_name_in_a_lower_layer_loses_it(tmp_path):
    uv = write(tmp_path / "uv.toml", '[[index]]\nname = "private"\nurl = "https://old.example/simple"')
    s = load(tmp_path, '[[index]]\nname = "private"\nurl = "https://new.example/simple"', uv=[uv])
    assert [(i.name, i.url) for i in s.indexes] == [
        ("private", "https://new.example/simple"), ("old.example", "https://old.example/simple")]
    assert any('"private"' in n and "old.example" in n for n in s.notes)


def test_pip_option_spellings_as_pip_normalises_them(tmp_path):
    pip = write(tmp_path / "pip.conf", "[global]\nINDEX_URL = https://a.example/simple\n"
                                       "[install]\n--extra-index-url = https://b.example/simple\n")
    assert [i.url for i in load(tmp_path, pip=[pip]).indexes] == [
        "https://a.example/simple", "https://b.example/simple"]


def test_ssl_flags_win_over_environment(tmp_path):
    s = load(tmp_path, env={"SSL_CERT_FILE": "/env.pem", "SSL_CLIENT_CERT": "/envc.pem"},
             overrides={"ssl_cert_file": "/flag.pem"})
    assert (s.ssl_cert_file, s.ssl_client_cert) == ("/flag.pem", "/envc.pem")


def test_unparseable_urls_in_every_layer_are_reported_not_crashing(tmp_path):
    bad = f"https://bob:{SECRET_Q}@[not-v6/simple"
    uv = write(tmp_path / "uv.toml", f'index-url = "{bad}"')
    pip = write(tmp_path / "pip.conf", f"[global]\nindex-url = {bad}\n")
    s = load(tmp_path, uv=[uv], pip=[pip])
    assert s.indexes == [] and len(s.warnings) == 2
    assert str(uv) in s.warnings[0] and "index-url" in s.warnings[0]
    assert str(pip) in s.warnings[1] and "index-url" in s.warnings[1]
    assert_no_secret("".join(s.warnings), username="bob")
    with pytest.raises(ConfigError) as err:
        load(tmp_path, env={"UV_INDEX": f"x={bad}"})
    assert "UV_INDEX" in str(err.value) and "a valid URL" in str(err.value)
    assert_no_secret(str(err.value), username="bob")
    with pytest.raises(ConfigError) as err:
        load(tmp_path, f'[[index]]\nurl = "{bad}"')
    assert "index[1].url" in str(err.value)
    assert_no_secret(str(err.value), username="bob")


def test_uv_config_file_variable(tmp_path):
    named = write(tmp_path / "only.toml", '[[index]]\nname = "only"\nurl = "https://only.example/simple"')
    env = base_env(tmp_path, UV_CONFIG_FILE=str(named))
    s = load_settings(write(tmp_path / "c.toml", ""), env=env, cwd=tmp_path, pip_config_files=[])
    assert [i.name for i in s.indexes] == ["only"]
    env["UV_CONFIG_FILE"] = str(tmp_path / "missing.toml")
    s = load_settings(write(tmp_path / "c.toml", ""), env=env, cwd=tmp_path, pip_config_files=[])
    assert s.indexes == [] and any("UV_CONFIG_FILE" in w and "missing.toml" in w for w in s.warnings)


@pytest.mark.parametrize("text, key, suggestion", [
    ('keyring-provder = "subprocess"', '"keyring-provder"', '"keyring-provider"'),
    ('keyring_provider = "subprocess"', '"keyring_provider"', '"keyring-provider"'),
    ('allow-insecure-hosts = ["h"]', '"allow-insecure-hosts"', '"allow-insecure-host"'),
    ('[[index]]\nurl = "https://h/"\nauthentication = "always"', 'index[1]."authentication"', '"authenticate"'),
    ('[[client-cert]]\nhost = "h"\ncerts = "/c"', 'client-cert[1]."certs"', '"cert"'),
])
def test_unknown_key_gets_a_did_you_mean(tmp_path, text, key, suggestion):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text)
    assert f"{key}: expected a known key: did you mean {suggestion}? (known: " in str(e.value), str(e.value)


def test_unknown_key_without_a_close_one_gets_the_list_only(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, "colour = 1")
    assert "did you mean" not in str(e.value) and "(known: keyring-provider, " in str(e.value)


def test_credproxy_keyring_provider_is_the_native_switch_and_wins_over_uvs(tmp_path):
    """uv rejects UV_KEYRING_PROVIDER=native (exit 2): credproxy's own variable selects the OS
    keyring, and UV_KEYRING_PROVIDER=native still works but is called out with the fix."""
    s = load(tmp_path, env={"CREDPROXY_KEYRING_PROVIDER": "native", "UV_KEYRING_PROVIDER": "subprocess"})
    assert s.keyring_provider == "native" and not s.warnings
    s = load(tmp_path, env={"UV_KEYRING_PROVIDER": "native"})
    assert s.keyring_provider == "native"
    assert any("UV_KEYRING_PROVIDER=native makes uv fail" in w and "CREDPROXY_KEYRING_PROVIDER=native" in w
               for w in s.warnings)
