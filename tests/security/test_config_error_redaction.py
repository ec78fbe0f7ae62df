"""Issue 9 finding 9 (second bullet): configuration errors printed values with their userinfo
in clear (`allow-insecure-host: ... got "u:SECRET@pkgs.test"`).

Every way a value reaches a ConfigError (the config file's keys, environment variables,
flags, the upstream TLS plan) is tried with a planted secret in several shapes; the error
must be raised (so the case is real) and no form of the secret may be in its text. The same
for the warnings and notes a lenient import (uv.toml, pip.conf) produces. And once through a
real `credproxy serve`, as a user meets it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from credproxy.config import ConfigError, load_settings
from credproxy.config.keys import TABLES, Argv, StringList, Tables
from credproxy.credentials.model import secret_forms
from credproxy.tlsrules import build_plan
from tests.helpers.proxy import proxy_env

SECRET = "Pl4nted-S3cret"
# shapes a secret takes in a value: userinfo with and without a scheme, a token alone, a
# password with a space and a slash (where a text-level mask alone would stop)
SHAPES = [
    f"u:{SECRET}@pkgs.test",
    f"https://u:{SECRET}@pkgs.test/simple/",
    f"{SECRET}@pkgs.test",
    f"u:pa ss/{SECRET}@pkgs.test",
    f"https://u:{SECRET}@",
    f"http://pkgs.test/simple/?X-Amz-Signature={SECRET}",
]


def toml(value) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML string


# Every key the config file knows, from its one declaration (credproxy/config/keys.py), in
# the smallest document that reaches it: (what, config-file text) with {v} the planted value
# (inside an array for the keys that take one). A key added to the table is covered here.
CONTEXT = {"": "", "index": '[[index]]\nurl = "https://pkgs.test/simple/"',
           "client-cert": '[[client-cert]]\nhost = "pkgs.test"\ncert = "/nonexistent.pem"'}


def key_case(table: str, key) -> tuple[str, str]:
    lines = [line for line in CONTEXT[table].splitlines() if not line.startswith(f"{key.name} =")]
    value = "[{v}]" if isinstance(key.kind, (StringList, Argv)) else "{v}"
    return (f"{table}.{key.name}" if table else key.name), "\n".join(lines + [f"{key.name} = {value}"])


DECLARED = [(t, k) for t, keys in TABLES.items() for k in keys if not isinstance(k.kind, Tables)]
CONFIG_CASES = [key_case(t, k) for t, k in DECLARED] + [
    ("unknown key", "{v} = 1"),
    ("index.url with scheme ftp", '[[index]]\nurl = {ftp}'),
    ("index unknown key", '[[index]]\nurl = "https://pkgs.test/simple/"\n{v} = 1'),
]
# a key the table marks secret is never shown at all, so its cases add values with no `@` or
# `://` for the general masking to catch: the bare secret, and it among arguments
SECRET_CASES = [key_case(t, k) for t, k in DECLARED if k.secret]
BARE_SHAPES = [SECRET, f"aws --token {SECRET}"]

# the variables the table declares for its keys, and those that are not a key's
ENV_CASES = [var for _, k in DECLARED for var in (k.env, k.env_alias) if var] + [
    "UV_KEYRING_PROVIDER", "UV_INDEX", "UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL"]
OVERRIDE_CASES = ["keyring_provider", "intercept", "log_format", "indexes", "no_such_option"]
# accepted by the loader, refused by the upstream TLS plan (a ConfigError at start-up)
PLAN_CASES = ["allow_insecure_host", "UV_INSECURE_HOST", "client_cert_host"]


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), "CREDPROXY_DATA_DIR": str(tmp_path / "data"),
            "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "XDG_CONFIG_DIRS": str(tmp_path / "xdgsys"), **extra}


def assert_masked(text: str) -> None:
    for form in secret_forms(SECRET) + ["pa ss/"]:
        assert form not in text, f"{form!r} in: {text}"


def check_messages(action) -> None:
    """Run `action`; its ConfigError, or the warnings and notes of the Settings it returns (a
    value it accepts, or skips as not an index), must not show the secret."""
    try:
        result = action()
    except ConfigError as e:
        assert_masked(str(e))
        return
    if hasattr(result, "warnings"):
        assert_masked("\n".join(result.warnings + result.notes))


# The finding's own cases, and the other list keys: these must be errors, masked.
MUST_FAIL = [
    ("config", f'allow-insecure-host = ["u:{SECRET}@pkgs.test"]'),
    ("config", f'intercept-hosts = ["u:{SECRET}@pkgs.test"]'),
    ("config", f'[[client-cert]]\nhost = "u:{SECRET}@pkgs.test"\ncert = "c.pem"'),
    ("config", f'keyring-provider = "https://u:{SECRET}@pkgs.test"'),
    ("config", f'[[index]]\nurl = "ftp://u:{SECRET}@pkgs.test/"'),
    ("env", f"UV_KEYRING_PROVIDER=u:{SECRET}@pkgs.test"),
    ("env", f"UV_INDEX=u@x=https://u:{SECRET}@pkgs.test/"),
    ("flag", f"u:{SECRET}@pkgs.test"),
]


@pytest.mark.parametrize("where, value", MUST_FAIL)
def test_the_findings_values_are_errors_and_masked(tmp_path, where, value):
    with pytest.raises(ConfigError) as e:
        if where == "config":
            load(tmp_path, value)
        elif where == "env":
            name, _, v = value.partition("=")
            load(tmp_path, env={name: v})
        else:
            build_plan(load(tmp_path, overrides={"allow_insecure_host": [value]}))
    assert_masked(str(e.value))
    assert "****@" in str(e.value), str(e.value)


def load(tmp_path, config="", env=None, overrides=None, uv=(), pip=()):
    cfg = tmp_path / "c.toml"
    cfg.write_text(config)
    return load_settings(cfg, overrides=overrides, env=base_env(tmp_path, **(env or {})), cwd=tmp_path,
                         uv_config_files=list(uv), pip_config_files=list(pip))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("what, text", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_file_errors_mask_the_value(tmp_path, what, text, shape):
    config = text.replace("{v}", toml(shape)).replace("{ftp}", toml("ftp" + shape[shape.find(":"):]))
    check_messages(lambda: load(tmp_path, config))


@pytest.mark.parametrize("shape", BARE_SHAPES)
@pytest.mark.parametrize("what, text", SECRET_CASES, ids=[c[0] for c in SECRET_CASES])
def test_a_secret_keys_value_is_not_shown_in_any_shape(tmp_path, what, text, shape):
    """As a string where an array is meant (token-command) or inside an array (both): an
    error, naming the key, without the value."""
    key = what.rpartition(".")[2]
    errors = []
    for value in (toml(shape), f"[{toml(shape)}, 1]"):
        try:
            load(tmp_path, text.replace("[{v}]", "{v}").replace("{v}", value))
        except ConfigError as e:
            errors.append(str(e))
    assert errors, f"no planted value for {what} was refused"
    for error in errors:
        assert f".{key}: expected" in error, error
        assert_masked(error)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("var", ENV_CASES)
def test_environment_errors_mask_the_value(tmp_path, var, shape):
    value = shape if var not in ("UV_INDEX", "UV_DEFAULT_INDEX") else f"bad@name={shape}"
    check_messages(lambda: load(tmp_path, env={var: value}))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("key", OVERRIDE_CASES)
def test_flag_errors_mask_the_value(tmp_path, key, shape):
    value = [shape] if key == "indexes" else shape
    check_messages(lambda: load(tmp_path, overrides={key if key != "no_such_option" else shape: value}))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("how", PLAN_CASES)
def test_upstream_tls_errors_mask_the_value(tmp_path, how, shape):
    if how == "allow_insecure_host":
        settings = load(tmp_path, overrides={"allow_insecure_host": [shape]})
    elif how == "UV_INSECURE_HOST":
        settings = load(tmp_path, env={"UV_INSECURE_HOST": shape.replace(" ", "")})
    else:
        from credproxy.config import ClientCertRule

        settings = load(tmp_path)
        settings.client_certs = [ClientCertRule(shape, "/nonexistent.pem", "config:c.toml")]
    check_messages(lambda: build_plan(settings) and settings)


@pytest.mark.parametrize("shape", SHAPES)
def test_import_warnings_and_notes_mask_the_value(tmp_path, shape):
    uv = tmp_path / "uv.toml"
    uv.write_text(f"index-url = {toml(shape)}\nextra-index-url = [{toml('x' + shape)}]\n"
                  f"keyring-provider = {toml(shape)}\n[[index]]\nname = {toml(shape)}\nurl = {toml(shape)}\n")
    pip = tmp_path / "pip.conf"
    pip.write_text(f"[global]\nindex-url = {shape}\nextra-index-url = ftp{shape}\n")
    settings = load(tmp_path, uv=[uv], pip=[pip])
    text = "\n".join(settings.warnings + settings.notes)
    assert settings.warnings  # the bad values were reported
    assert_masked(text)


def test_serve_with_a_secret_in_allow_insecure_host_fails_without_printing_it(tmp_path):
    """The finding as reproduced: `credproxy serve` with the value in the config file."""
    env = proxy_env(tmp_path)
    Path(env["CREDPROXY_CONFIG"]).write_text(f'allow-insecure-host = ["u:{SECRET}@pkgs.test"]\n'
                                             f'intercept-hosts = ["u:{SECRET}@pkgs.test"]\n')
    env["CREDPROXY_DATA_DIR"] = str(tmp_path / "data")
    proc = subprocess.run([sys.executable, "-m", "credproxy.cli", "serve", "--port", "0"], env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert "allow-insecure-host" in proc.stderr and "intercept-hosts" in proc.stderr
    assert "****@pkgs.test" in proc.stderr, proc.stderr
    assert_masked(proc.stdout + proc.stderr)
    # and with the value on the command line, refused by the upstream TLS plan
    Path(env["CREDPROXY_CONFIG"]).write_text("")
    proc = subprocess.run([sys.executable, "-m", "credproxy.cli", "serve", "--port", "0",
                           "--allow-insecure-host", f"u:{SECRET}@pkgs.test"], env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert_masked(proc.stdout + proc.stderr)


def test_serve_with_a_secret_in_a_missing_project_path_fails_without_printing_it(tmp_path):
    """`project` names a directory; when it does not exist the error names it, masked like
    every other value (it showed `u:pa ss/SECRET@...` and a signature query in clear)."""
    env = proxy_env(tmp_path)
    env["CREDPROXY_DATA_DIR"] = str(tmp_path / "data")
    for value in (f"u:pa ss/{SECRET}@pkgs.test", f"http://pkgs.test/simple/?X-Amz-Signature={SECRET}"):
        Path(env["CREDPROXY_CONFIG"]).write_text(f"project = {toml(value)}\n")
        proc = subprocess.run([sys.executable, "-m", "credproxy.cli", "serve", "--port", "0"], env=env,
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert proc.returncode == 2, proc.stderr
        assert "project directory not found (named by project in" in proc.stderr, proc.stderr
        assert_masked(proc.stdout + proc.stderr)
