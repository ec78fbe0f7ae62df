"""RememberAddon on mitmproxy test flows: what is remembered, where, and what never is."""

from __future__ import annotations

import asyncio
import base64
import logging

import pytest
from mitmproxy.test import tflow

from credproxy.addons.auth import METADATA_KEY, RETRY_MARK
from credproxy.addons.remember import RememberAddon
from credproxy.config import Settings
from credproxy.credentials.index import Index
from credproxy.credentials.model import secret_forms
from credproxy.credentials.store import Store

SECRET = "cl1ent-S3cret/+"
USER = "alice"
CLIENT_META = {"source": "client", "action": "leave", "preemptive": True, "retried": False, "reason": "", "cached": False}


def basic(user, secret):
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def flow(url="https://pkgs.test/simple/foo/", status=200, auth=None, meta=CLIENT_META):
    f = tflow.tflow(resp=True)
    f.request.url = url
    f.response.status_code = status
    if auth is not None:
        f.request.headers["authorization"] = auth
    if meta is not None:
        f.metadata[METADATA_KEY] = dict(meta)
    return f


class FakeKeyring:
    def __init__(self):
        self.items = {}

    def set_password(self, service, user, password):
        self.items[(service, user)] = password


def addon(tmp_path, *, indexes=(), native=False, exclude=(), keyring=None):
    settings = Settings(indexes=list(indexes), keyring_provider="native" if native else "disabled",
                        remember=True, remember_exclude=list(exclude),
                        env={"CREDPROXY_CREDENTIALS_DIR": str(tmp_path)})

    class R:
        pass

    r = R()
    r.indexes = list(indexes)
    return RememberAddon(settings, r, store=Store(tmp_path / "credentials.toml"), keyring_backend=keyring)


def run(a, f):
    asyncio.run(a.responseheaders(f))


def entries(tmp_path):
    path = tmp_path / "credentials.toml"
    return [(e.service, e.username) for e in Store(path).read()] if path.exists() else []


def test_remembered_once_under_the_index_root_and_logged_without_the_secret(tmp_path, caplog):
    ix = Index.from_url("https://pkgs.test/private/simple/")
    a = addon(tmp_path, indexes=[ix])
    with caplog.at_level(logging.INFO, logger="credproxy.remember"):
        for path in ("simple/foo/", "simple/bar/", "files/foo-1.whl"):
            run(a, flow(f"https://pkgs.test/private/{path}", auth=basic(USER, SECRET)))
    assert entries(tmp_path) == [(ix.root_url, USER)] and ix.root_url == "https://pkgs.test/private"
    lines = [r.getMessage() for r in caplog.records if r.name == "credproxy.remember"]
    assert lines == ["remembered https://pkgs.test/private for alice in the store (source: client)"]
    assert not any(form in caplog.text for form in secret_forms(SECRET, USER))


def test_the_host_when_no_index_matches(tmp_path):
    a = addon(tmp_path)
    run(a, flow("https://other.test:8443/x/y", auth=basic(USER, SECRET)))
    assert entries(tmp_path) == [("https://other.test:8443/", USER)]


@pytest.mark.parametrize("case", ["rejected", "injected", "retry", "username-only", "plain-http", "excluded",
                                  "never", "no-metadata", "other-scheme"])
def test_never_remembered(tmp_path, case):
    ix = Index.from_url("https://never.test/simple/", authenticate="never")
    a = addon(tmp_path, indexes=[ix], exclude=["*.excluded.test"])
    kwargs = {"auth": basic(USER, SECRET)}
    if case == "rejected":
        f = flow(status=401, **kwargs)
    elif case == "injected":
        f = flow(meta={**CLIENT_META, "source": "store", "action": "inject"}, **kwargs)
    elif case == "retry":
        f = flow(**kwargs)
        f.metadata[RETRY_MARK] = "x"
    elif case == "username-only":
        f = flow(auth=basic(USER, "").rstrip("="))
        f.request.headers["authorization"] = "Basic " + base64.b64encode(f"{USER}:".encode()).decode()
    elif case == "plain-http":
        f = flow("http://pkgs.example/simple/", **kwargs)
    elif case == "excluded":
        f = flow("https://a.excluded.test/simple/", **kwargs)
    elif case == "never":
        f = flow("https://never.test/simple/x/", **kwargs)
    elif case == "no-metadata":
        f = flow(meta=None, **kwargs)
    else:
        f = flow(auth="Negotiate abc")
    run(a, f)
    assert entries(tmp_path) == []


def test_plain_http_to_loopback_is_remembered(tmp_path):
    a = addon(tmp_path)
    run(a, flow("http://127.0.0.1:8080/simple/", auth=basic(USER, SECRET)))
    assert entries(tmp_path) == [("http://127.0.0.1:8080/", USER)]


def test_native_store_when_on_under_uv_service_names(tmp_path):
    kr = FakeKeyring()
    ix = Index.from_url("https://pkgs.test/simple/")
    a = addon(tmp_path, indexes=[ix], native=True, keyring=kr)
    run(a, flow(auth=basic(USER, SECRET)))
    run(a, flow(auth="Bearer tok"))  # uv's native store has no bearer entries
    assert kr.items == {("uv:https://pkgs.test/", USER): SECRET}
    assert entries(tmp_path) == []


def test_a_failing_store_is_a_warning_without_the_secret(tmp_path, caplog):
    class Broken:
        def add(self, entry):
            raise OSError(f"disk full {SECRET}")

    a = addon(tmp_path)
    a._store = Broken()
    with caplog.at_level(logging.INFO, logger="credproxy.remember"):
        run(a, flow(auth=basic(USER, SECRET)))
    assert "remembering https://pkgs.test/ for alice failed (OSError); nothing was stored" in caplog.text
    assert not any(form in caplog.text for form in secret_forms(SECRET, USER))


def test_not_copied_when_a_source_already_has_it(tmp_path):
    from credproxy.credentials.model import Credentials
    from credproxy.credentials.resolver import Decision

    class Knows:
        indexes = []

        def __init__(self, creds):
            self.creds = creds

        async def aresolve(self, url, authorization):
            return Decision("inject", self.creds, source="netrc")

    settings = Settings(remember=True, env={})
    same = RememberAddon(settings, Knows(Credentials.basic(USER, SECRET)), store=Store(tmp_path / "credentials.toml"))
    run(same, flow(auth=basic(USER, SECRET)))
    assert entries(tmp_path) == []
    other = RememberAddon(settings, Knows(Credentials.basic(USER, "old")), store=Store(tmp_path / "credentials.toml"))
    run(other, flow(auth=basic(USER, SECRET)))
    assert entries(tmp_path) == [("https://pkgs.test/", USER)]


def test_an_upload_to_a_publish_url_is_remembered_for_that_host_not_the_index(tmp_path):
    ix = Index.from_url("https://pkgs.test/simple/", publish_url="https://upload.test/legacy/")
    a = addon(tmp_path, indexes=[ix])
    run(a, flow("https://upload.test/legacy/", auth=basic(USER, SECRET)))
    assert entries(tmp_path) == [("https://upload.test/", USER)]


def test_a_token_in_the_index_urls_query_is_masked_in_the_log_line(tmp_path, caplog):
    ix = Index.from_url("https://pkgs.test/private/repo/?private_token=QS3cret-t0ken")
    a = addon(tmp_path, indexes=[ix])
    with caplog.at_level(logging.INFO, logger="credproxy.remember"):
        run(a, flow("https://pkgs.test/private/repo/foo/", auth=basic(USER, SECRET)))
    assert [service for service, _ in entries(tmp_path)] == [ix.root_url]
    lines = [r.getMessage() for r in caplog.records if r.name == "credproxy.remember"]
    assert lines == ["remembered https://pkgs.test/private/repo/?private_token=**** for alice in the store (source: client)"]
    assert "QS3cret-t0ken" not in caplog.text
