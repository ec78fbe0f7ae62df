"""model.py and index.py: realms, path prefixes, index roots, userinfo, headers, redaction."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from credproxy.credentials.index import Index, env_name, match_index
from credproxy.credentials.model import (
    Credentials,
    Realm,
    is_path_prefix,
    parse_authorization,
    redact_text,
    redact_url,
    secret_forms,
    split_userinfo,
    strip_simple,
)
from credproxy.credentials.sources.base import Answer


@pytest.mark.parametrize(
    "a, b, equal",
    [
        ("https://h/", "https://h:443/x", True),
        ("https://H/", "https://h/", True),
        ("http://h/", "https://h/", False),
        ("http://h:80/", "http://h/", True),
        ("https://h:8443/", "https://h/", False),
        ("https://u:p@h/", "https://h/", True),
        ("https://[::1]:8443/", "https://[::1]:8443/a", True),
    ],
)
def test_realm_equality(a, b, equal):
    assert (Realm.of(a) == Realm.of(b)) is equal


def test_realm_display():
    assert str(Realm.of("https://h:443/x")) == "https://h"
    assert str(Realm.of("http://h:8080/x")) == "http://h:8080"
    assert str(Realm.of("https://[::1]:8443/")) == "https://[::1]:8443"


@pytest.mark.parametrize(
    "prefix, path, expected",
    [
        ("/simple", "/simple", True),
        ("/simple", "/simple/", True),
        ("/simple", "/simple/x", True),
        ("/simple", "/simpleevil", False),
        ("/simple", "/simple-evil", False),
        ("/simple/", "/simple/x", True),
        ("/", "/anything", True),
        ("/Simple", "/simple", False),
    ],
)
def test_is_path_prefix(prefix, path, expected):
    assert is_path_prefix(prefix, path) is expected


@pytest.mark.parametrize(
    "url, root",
    [
        ("https://h/simple/", "https://h/"),
        ("https://h/simple", "https://h/"),
        ("https://h/repo/simple", "https://h/repo"),
        ("https://h/root/+simple/", "https://h/root"),
        ("https://h/repo/SIMPLE/", "https://h/repo"),
        ("https://h/repo/", "https://h/repo/"),
        ("https://h/simplex", "https://h/simplex"),
    ],
)
def test_strip_simple(url, root):
    assert strip_simple(url) == root


@pytest.mark.parametrize(
    "url, clean, user, pw",
    [
        ("https://h/x", "https://h/x", None, None),
        ("https://alice:s3cret@h/x", "https://h/x", "alice", "s3cret"),
        ("https://user%40corp:p%3Aw@h:8443/x?q=1", "https://h:8443/x?q=1", "user@corp", "p:w"),
        ("https://alice@h/", "https://h/", "alice", None),
        ("https://:tok@h/", "https://h/", None, "tok"),
        ("https://alice:@h/", "https://h/", "alice", ""),
    ],
)
def test_split_userinfo(url, clean, user, pw):
    got_url, creds = split_userinfo(url)
    assert got_url == clean
    if user is None and pw is None:
        assert creds is None
    else:
        assert (creds.username, creds.password) == (user, pw)


def test_split_userinfo_invalid_utf8_names_part_not_secret():
    with pytest.raises(ValueError, match="password contains invalid UTF-8") as e:
        split_userinfo("https://alice:%ff%fe@h/")
    assert "%ff" not in str(e.value)
    with pytest.raises(ValueError, match="username contains invalid UTF-8"):
        split_userinfo("https://%ff@h/")


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


@pytest.mark.parametrize(
    "header, expected",
    [
        (None, None),
        ("", None),
        (f"Basic {b64('alice:s3cret')}", ("basic", "alice", "s3cret")),
        (f"basic   {b64('alice:s3cret')}", ("basic", "alice", "s3cret")),
        (f"Basic {b64('alice')}", ("basic", "alice", None)),
        (f"Basic {b64(':tok')}", ("basic", None, "tok")),
        (f"Basic {b64(':')}", None),
        (f"Basic {b64('a:b:c')}", ("basic", "a", "b:c")),
        ("Basic !!!notbase64", None),
        ("Basic YWxpY2U", None),  # bad padding
        ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), None),  # not UTF-8
        ("Basic", None),
        ("Bearer abc", ("bearer", None, "abc")),
        ("Bearer ", None),
        ("Digest username=x", None),
    ],
)
def test_parse_authorization(header, expected):
    creds = parse_authorization(header)
    if expected is None:
        assert creds is None
    else:
        assert (creds.scheme, creds.username, creds.secret) == expected


def test_header_values():
    assert Credentials.basic("alice", "s3cret").header_value() == "Basic YWxpY2U6czNjcmV0"
    assert Credentials.basic(None, "tok").header_value() == "Basic " + b64(":tok")
    assert Credentials.basic("alice").header_value() == "Basic " + b64("alice:")
    assert Credentials.bearer("t").header_value() == "Bearer t"
    assert Credentials.basic("a", "").is_complete and not Credentials.basic("a").is_complete
    assert not Credentials.bearer("").is_complete


@pytest.mark.parametrize(
    "url, shown",
    [
        ("https://alice:s3cret@h/x", "https://alice:****@h/x"),
        ("https://tokenonly@h/x", "https://****@h/x"),
        ("https://:s3cret@h/x", "https://:****@h/x"),
        ("ssh://git@github.com/a/b", "ssh://git@github.com/a/b"),
        ("git+https://git@github.com/a/b", "git+https://git@github.com/a/b"),
        ("https://git@github.com/a/b", "https://****@github.com/a/b"),
        ("https://h/f?X-Amz-Signature=abc&x=1&x-amz-credential=def&X-Amz-Security-Token=ghi",
         "https://h/f?X-Amz-Signature=****&x=1&x-amz-credential=****&X-Amz-Security-Token=****"),
        ("https://h/plain", "https://h/plain"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_text_all_forms():
    text = f"a s3c/ret b {quote('s3c/ret', safe='')} c {b64('alice:s3c/ret')}"
    assert b64("alice:s3c/ret") in redact_text(text, ["s3c/ret"])  # needs the username
    out = redact_text(text, ["s3c/ret", None, ""], usernames=["alice", None])
    assert "s3c" not in out.replace("****", "")
    assert b64("alice:s3c/ret") not in out


# --- index matching ---------------------------------------------------------------------


@pytest.mark.parametrize("name, env", [("my-index", "MY_INDEX"), ("my.idx", "MY_IDX"), ("a_b", "A_B"), ("Ab9", "AB9")])
def test_env_name(name, env):
    assert env_name(name) == env


def test_match_index_longest_root_and_realm():
    a = Index.from_url("https://h/simple", name="a")
    b = Index.from_url("https://h/b/simple", name="b")
    c = Index.from_url("https://h:8443/simple", name="c")
    assert match_index([a, b, c], "https://h/b/simple/x/").name == "b"
    assert match_index([b, a, c], "https://h/b/simple/x/").name == "b"
    assert match_index([a, b, c], "https://h/bb/x").name == "a"
    assert match_index([b], "https://h/bb/x") is None
    assert match_index([a, b, c], "https://h:8443/x").name == "c"
    assert match_index([a], "http://h/simple/") is None


# --- properties -------------------------------------------------------------------------

segment = st.text(alphabet="abcxyz-_.0123456789", min_size=1, max_size=6)


@given(st.lists(segment, max_size=4), st.lists(segment, max_size=4), st.booleans())
def test_prefix_property_matches_segments(pre, rest, trailing):
    prefix = "/" + "/".join(pre) + ("/" if trailing and pre else "")
    path = "/" + "/".join(pre + rest)
    assert is_path_prefix(prefix, path) or (trailing and not rest)


@given(st.lists(segment, min_size=1, max_size=4), segment, segment)
def test_prefix_property_never_partial_segment(pre, tail, more):
    prefix = "/" + "/".join(pre)
    path = prefix + tail + "/" + more  # extends the last segment: never covered
    assert not is_path_prefix(prefix, path)


hosts = st.sampled_from(["h", "H", "pkgs.example.com", "127.0.0.1"])
schemes = st.sampled_from(["http", "https"])
ports = st.one_of(st.none(), st.sampled_from([80, 443, 8080]))


@given(schemes, hosts, ports, schemes, hosts, ports)
def test_realm_equality_property(s1, h1, p1, s2, h2, p2):
    u1 = f"{s1}://{h1}{':' + str(p1) if p1 else ''}/x"
    u2 = f"{s2}://{h2}{':' + str(p2) if p2 else ''}/y"
    eff = lambda s, p: p or {"http": 80, "https": 443}[s]  # noqa: E731
    expected = s1 == s2 and h1.lower() == h2.lower() and eff(s1, p1) == eff(s2, p2)
    assert (Realm.of(u1) == Realm.of(u2)) is expected


secrets_st = st.text(min_size=4, max_size=20).filter(lambda s: s.strip() and "*" not in s)


@given(st.one_of(st.none(), st.text(alphabet="abcdef", min_size=1, max_size=8)), secrets_st)
def test_secret_never_in_str_or_repr(username, secret):
    basic = Credentials.basic(username, secret)
    bearer = Credentials.bearer(secret)

    def shown(creds):
        answers = (Answer("netrc", creds, detail="machine h in /x"), Answer("keyring", creds))
        return " ".join([str(creds), repr(creds), creds.redacted(), *map(str, answers), *map(repr, answers)])

    # the same text with a placeholder secret: a form that occurs there is boilerplate
    baseline = shown(Credentials.basic(username, "\x00")) + shown(Credentials.bearer("\x00"))
    forms = secret_forms(secret, username)
    assume(not any(form in baseline for form in forms))
    for creds in (basic, bearer):
        text = shown(creds)
        for form in forms:
            assert form not in text


# --- token query parameters (issue 9 finding 9) -------------------------------------------


def test_redact_url_masks_token_query_parameters_and_keeps_the_rest():
    from credproxy.credentials.model import redact_url

    url = ("https://h/p?page=2&token=abc&Access_Token=def;private_token=ghi&sig=jkl"
           "&X-Amz-Signature=mno&%74oken=pqr&api-key=stu&keyword=keep&key=vwx#frag")
    assert redact_url(url) == (
        "https://h/p?page=2&token=****&Access_Token=****;private_token=****&sig=****"
        "&X-Amz-Signature=****&%74oken=****&api-key=****&keyword=keep&key=****#frag")


def test_redact_url_leaves_names_without_values_and_other_parameters():
    from credproxy.credentials.model import redact_url

    assert redact_url("https://h/p?token&tokens=1&x=token=2") == "https://h/p?token&tokens=1&x=token=2"


def test_index_and_settings_repr_show_no_secret():
    """repr(Settings) reaches tracebacks and debuggers: an index URL's token query parameter,
    its userinfo and a token command's arguments stay out of it."""
    from credproxy.config import Settings
    from credproxy.credentials.index import Index

    index = Index.from_url("https://alice:pw-in-url@h.example/simple/?private_token=tok-in-query",
                           name="corp", token_command=("aws", "--secret", "arg-secret"))
    text = repr(Settings(indexes=[index]))
    for secret in ("pw-in-url", "tok-in-query", "arg-secret"):
        assert secret not in text
    assert "h.example" in text and "'aws'" in text
