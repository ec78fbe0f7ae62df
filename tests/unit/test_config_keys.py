"""The key table (credproxy/config/keys.py) is the one declaration of the config file's keys:
docs/configuration.md must name every key it knows and no other, with the type and default it
declares; its defaults are the code's; the variables it names are documented; and the keys
it marks secret are never shown in an error, while the others are (so the mark is what
decides)."""

from __future__ import annotations

import json
import re
from dataclasses import fields, replace
from pathlib import Path

import pytest

from credproxy.config import ConfigError, load_settings, parse_config
from credproxy.config.keys import CLIENT_CERT_KEYS, INDEX_KEYS, TABLES, TOP_KEYS, Spot, Tables, parse_table
from credproxy.config.model import Layer, Settings
from credproxy.config.values import Problems
from credproxy.credentials.index import Index
from credproxy.credentials.sources.token_command import DEFAULT_LIFETIME

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "docs" / "configuration.md").read_text()
HEADINGS = {"": "### Top-level keys", "index": "### `[[index]]`", "client-cert": "### `[[client-cert]]`"}


def docs_rows(heading: str) -> dict[str, list[str]]:
    """The rows of the first table under `heading`: key name -> the other cells. `[[index]]` in
    the top-level table is the key `index`."""
    section = DOCS[DOCS.index(heading + "\n"):]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        m = re.match(r"^\| `(?:\[\[)?([^`\]]+)(?:\]\])?` \|(.*)\|$", line)
        if m:
            # cells split on `|` not escaped as `\|` (the choice lists)
            rows[m.group(1)] = [c.strip() for c in re.split(r"(?<!\\)\|", m.group(2))]
    return rows


def rendered_default(key) -> str:
    if key.doc_default is not None:
        return key.doc_default
    value = key.default
    if value is None or (isinstance(key.kind, Tables) and value == []):
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{json.dumps(value)}`"


@pytest.mark.parametrize("table", list(TABLES), ids=lambda t: t or "top-level")
def test_the_docs_name_every_declared_key_and_no_other(table):
    documented = set(docs_rows(HEADINGS[table]))
    declared = {k.name for k in TABLES[table]}
    assert documented - declared == set(), f"documented in {HEADINGS[table]} but not declared in keys.py"
    assert declared - documented == set(), f"declared in keys.py but not documented under {HEADINGS[table]}"


@pytest.mark.parametrize("key", TOP_KEYS, ids=lambda k: k.name)
def test_the_docs_give_a_top_level_keys_declared_type_and_its_default(key):
    doc_type, default, _meaning = docs_rows(HEADINGS[""])[key.name]
    assert doc_type == key.doc_type, f"docs/configuration.md: the type of `{key.name}` is {key.doc_type}"
    assert default == rendered_default(key) or default.startswith(rendered_default(key) + " ("), (
        f"docs/configuration.md: the default of `{key.name}` is {rendered_default(key)} (Settings.{key.attr})")


@pytest.mark.parametrize("table, key", [("index", k) for k in INDEX_KEYS] + [("client-cert", k) for k in CLIENT_CERT_KEYS],
                         ids=lambda x: x if isinstance(x, str) else x.name)
def test_the_docs_give_a_table_keys_declared_type_and_whether_it_is_required(table, key):
    doc_type, required, _meaning = docs_rows(HEADINGS[table])[key.name]
    assert doc_type == key.doc_type, f"docs/configuration.md: the type of `{key.name}` is {key.doc_type}"
    if key.required:
        assert required == "yes"
    else:
        assert required == ("no" if key.doc_default is None else f"no (`{key.doc_default}`)")


def test_the_tables_defaults_and_fields_are_the_codes():
    """A top-level key's default is its Settings field's (the docs test above checks the docs
    against it); a table key's documented default is what the code uses when it is absent."""
    for key in TOP_KEYS:
        assert key.attr in {f.name for f in fields(Layer)} and key.attr in {f.name for f in fields(Settings)}, key
    for key in INDEX_KEYS:
        assert key.attr in {f.name for f in fields(Index)}, key
    by_name = {k.name: k for k in INDEX_KEYS}
    index_defaults = {f.name: f.default for f in fields(Index)}
    assert json.loads(by_name["authenticate"].doc_default) == index_defaults["authenticate"]
    assert float(by_name["token-lifetime"].doc_default) == DEFAULT_LIFETIME


def test_the_variables_the_table_names_are_documented_with_their_key():
    env_section = DOCS[DOCS.index("## Environment variables"):]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([A-Z_]+)` \|.*$", env_section, re.M)}
    declared = [k for k in TOP_KEYS if k.env]
    assert declared, "the table names no variable"
    for key in declared:
        assert f"`{key.name}`" in rows[key.env], rows[key.env]
        if key.env_alias:
            assert f"`{key.env}`" in rows[key.env_alias], rows[key.env_alias]


# --- secret keys ------------------------------------------------------------------------------

SECRET = "Pl4nted-T0ken-Value"
CONTEXT = {"": "", "index": '[[index]]\nurl = "https://pkgs.test/simple/"\n',
           "client-cert": '[[client-cert]]\nhost = "pkgs.test"\ncert = "/c.pem"\n'}
# values a key may be given by mistake, each with the planted secret and no `@`/`://` (which
# the general masking would hide anyway): a string where an array is meant and the reverse,
# an array with a bad item
BAD_VALUES = [f"aws --token {SECRET}", [f"{SECRET}", 1], [f"--token={SECRET}", ""], [""], [1, SECRET]]


def load(tmp_path: Path, text: str):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_settings(path, env={"HOME": str(tmp_path)}, cwd=tmp_path, uv_config_files=[], pip_config_files=[])


def document(table: str, key, value) -> str:
    context = CONTEXT[table]
    if table and key.name in context.split("\n", 2)[1]:  # the key the context sets itself
        context = context.replace(context.split("\n")[1] + "\n", "")
    return context + f"{key.name} = {json.dumps(value)}\n"


def errors_for(tmp_path, table, key) -> list[str]:
    """The error texts the bad values give for `key` (the values it accepts give none)."""
    out = []
    for value in BAD_VALUES:
        try:
            load(tmp_path, document(table, key, value))
        except ConfigError as e:
            out.append(str(e))
    return out


ALL_KEYS = [(t, k) for t, keys in TABLES.items() for k in keys if not isinstance(k.kind, Tables)]


@pytest.mark.parametrize("table, key", [tk for tk in ALL_KEYS if tk[1].secret],
                         ids=lambda x: x if isinstance(x, str) else x.name)
def test_a_secret_keys_value_is_never_shown(tmp_path, table, key):
    errors = errors_for(tmp_path, table, key)
    assert errors, f"no bad value refused for {key.name}"
    for text in errors:
        assert key.name in text and SECRET not in text, text
        assert re.search(r"got (a string|an array)\b", text), text


def test_the_secret_keys_are_the_ones_that_hold_a_credential():
    """username (with token-command, the credential's user) and token-command (its arguments
    may hold a token) are secret; a change here is a change to what errors may show, and the
    docs ("Mistakes") say which values are never shown."""
    assert {(t, k.name) for t, k in ALL_KEYS if k.secret} == {("index", "username"), ("index", "token-command")}
    mistakes = DOCS[DOCS.index("### Mistakes"):DOCS.index("## Environment variables")]
    sentence = mistakes[mistakes.index("are never shown at all") - 80:mistakes.index("are never shown at all")]
    for table, key in ALL_KEYS:
        if key.secret:
            assert f"`{key.name}`" in sentence, sentence


def test_the_mark_is_what_hides_a_value():
    """The same key with and without the mark: shown (`got "aws --token ..."`), then only by
    its type. No rule elsewhere decides."""
    value = f"aws --token {SECRET}"
    for secret in (False, True):
        keys = tuple(replace(k, secret=secret) if k.name == "keyring-provider" else k for k in TOP_KEYS)
        p = Problems("c.toml")
        assert parse_table(Spot(p, "", Path("c.toml")), {"keyring-provider": value}, keys) is None
        assert len(p.items) == 1 and p.items[0].startswith("keyring-provider: expected one of ")
        assert p.items[0].endswith("got a string" if secret else f'got "{value}"'), p.items[0]


def test_the_docs_example_of_mistakes_is_what_the_code_prints():
    """docs/configuration.md "Mistakes": the same file gives the same lines, in the same order
    (the docs shorten the `known:` list with `...`)."""
    example = DOCS[DOCS.index("### Mistakes"):]
    example = example[example.index("```\n") + 4:]
    example = example[:example.index("```")].rstrip("\n").splitlines()
    data = {"keyring_provider": "subprocess", "colour": "blue",
            "index": [{"url": "https://a.example/simple/"},
                      {"url": "https://b.example/simple/", "authenticate": "sometimes"}]}
    with pytest.raises(ConfigError) as e:
        parse_config(data, Path(example[0].split(": ")[0]))
    printed = str(e.value).splitlines()
    assert len(printed) == len(example)
    for doc_line, line in zip(example, printed):
        head, dots, _ = doc_line.partition(", ...)")
        assert line == doc_line if not dots else line.startswith(head + ", "), (doc_line, line)


def test_a_flag_for_any_config_key_is_its_highest_layer_and_checked_as_the_key(tmp_path):
    """load_settings' overrides name Settings fields; one that is a config key wins over the
    config file (it used to be set under the layers, so the file's value won) and is checked
    by the key's kind, the error naming the flag."""
    path = tmp_path / "c.toml"
    path.write_text('keyring-timeout = 20\nnetrc-default = "any-host"\n')
    settings = load_settings(path, overrides={"keyring_timeout": 3.0, "netrc_default": "indexes"},
                             env={"HOME": str(tmp_path)}, cwd=tmp_path, uv_config_files=[], pip_config_files=[])
    assert settings.keyring_timeout == 3.0 and settings.netrc_default == "indexes"
    with pytest.raises(ConfigError) as e:
        load_settings(path, overrides={"keyring_timeout": -1, "netrc_default": "everywhere"},
                      env={"HOME": str(tmp_path)}, cwd=tmp_path, uv_config_files=[], pip_config_files=[])
    assert str(e.value) == ("command line: 2 problems:\n"
                            "  --keyring-timeout: expected a positive number of seconds, got an integer\n"
                            '  --netrc-default: expected one of "indexes", "any-host", got "everywhere"')
