"""Which usernames a message may show (credentials/model.py display_username)."""

from __future__ import annotations

import pytest

from credproxy.credentials.model import Credentials, display_username, looks_like_token


@pytest.mark.parametrize("username", [
    "ghp_0123456789abcdefABCDEF0123456789abcd", "github_pat_11AAAA_x", "glpat-xxxxxxxxxxxxxxxxxxxx",
    "npm_abc", "pypi-AgEIcHlwaS5vcmc", "hf_abc", "AKIAIOSFODNN7EXAMPLE", "eyJhbGciOiJIUzI1NiJ9",
    "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6",  # 32 hex characters
])
def test_token_shaped_usernames_are_masked(username):
    assert looks_like_token(username)
    assert display_username(username, "x-oauth-basic") == "****"
    assert username not in str(Credentials.basic(username, "x-oauth-basic"))
    assert username not in repr(Credentials.basic(username, "x-oauth-basic"))


@pytest.mark.parametrize("username", ["alice", "aws", "oauth2accesstoken", "VssSessionToken", "__token__",
                                      "john.smith@corp.example.com", "x-token-auth", "oauth2",
                                      "a-very-long-but-human-login-name-without-digits"])
def test_login_names_are_shown(username):
    assert not looks_like_token(username)
    assert display_username(username, "pw") == username
    assert str(Credentials.basic(username, "pw")) == f"{username}:****"


def test_a_username_without_a_password_is_masked_as_uv_masks_token_at_host():
    assert display_username("alice", None) == "****"
    assert str(Credentials.basic("alice")) == "****"
    assert display_username(None, "pw") is None and display_username("", None) is None
