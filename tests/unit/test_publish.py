"""publish-url and UV_PUBLISH_*: which URLs they cover, what is sent, what is cached."""

from __future__ import annotations

import base64

import pytest

from credproxy.config import Settings
from credproxy.credentials.index import Index, match_index
from credproxy.credentials.model import Credentials, Realm
from credproxy.credentials.resolver import Resolver, default_sources
from credproxy.credentials.sources.base import Answer
from credproxy.credentials.sources.publish_env import PublishEnvSource
from credproxy.credentials.sources.url_env import IndexCredentialsSource

TOKEN = "pypi-T0ken/+="
SECRET = "ind3x-S3cret"
INDEX = Index.from_url("https://pkgs.test/simple/", name="corp", publish_url="https://upload.test/legacy/")


class Files:
    """A store/netrc-like fast source keyed by (host, path prefix)."""

    name = "store"
    fast = True

    def __init__(self, entries):
        self.entries = entries  # url prefix -> Credentials
        self.calls = []

    def lookup(self, url, username, index):
        self.calls.append(url)
        for prefix, creds in self.entries.items():
            if url.startswith(prefix):
                return Answer(self.name, creds, detail=prefix)
        return Answer(self.name, detail="no entry")

    def knows_host(self, scheme, host, port):
        return False


def resolver(env, sources=None, indexes=(INDEX,)):
    settings = Settings(indexes=list(indexes), env=env)
    return Resolver(settings, sources if sources is not None else default_sources(settings))


@pytest.mark.parametrize("url, publish", [
    ("https://upload.test/legacy/", True),
    ("https://upload.test/legacy", True),  # a trailing slash does not matter
    ("https://UPLOAD.test:443/legacy/", True),
    ("https://upload.test/legacy/x", False),  # exact, not a prefix
    ("https://upload.test/", False),
    ("http://upload.test/legacy/", False),  # another realm
    ("https://upload.test:8443/legacy/", False),
])
def test_publish_url_matches_exactly(url, publish):
    assert INDEX.matches_publish(url) is publish
    assert (match_index([INDEX], url) is INDEX) is publish


def test_root_publish_url_does_not_cover_downloads():
    ix = Index.from_url("https://pkgs.test/simple/", publish_url="https://other.test/")
    assert ix.matches_publish("https://other.test/")
    assert not ix.matches_publish("https://other.test/simple/x/")


def test_token_is_sent_as_token_user_and_wins_over_username_password():
    src = PublishEnvSource([INDEX], {"UV_PUBLISH_TOKEN": TOKEN, "UV_PUBLISH_USERNAME": "u",
                                     "UV_PUBLISH_PASSWORD": "p"})
    a = src.lookup("https://upload.test/legacy/", None, None)
    assert (a.source, a.credentials, a.prefix) == ("env:UV_PUBLISH_TOKEN", Credentials.basic("__token__", TOKEN),
                                                   "https://upload.test/legacy/")
    assert TOKEN not in a.detail and TOKEN not in repr(a)


def test_empty_username_is_allowed():
    src = PublishEnvSource([INDEX], {"UV_PUBLISH_USERNAME": "", "UV_PUBLISH_PASSWORD": TOKEN})
    creds = src.lookup("https://upload.test/legacy/", None, None).credentials
    assert creds.header_value() == "Basic " + base64.b64encode(f":{TOKEN}".encode()).decode()
    # whatever username the client put on its request (uv needs one to send at all)
    assert src.lookup("https://upload.test/legacy/", "token", None).credentials == creds


@pytest.mark.parametrize("url", ["https://pkgs.test/simple/x/", "https://upload.test/simple/",
                                 "https://elsewhere.test/legacy/"])
def test_publish_variables_answer_for_the_publish_url_only(url):
    r = resolver({"UV_PUBLISH_TOKEN": TOKEN})
    d = r.resolve(url)
    assert d.credentials is None or d.credentials.password != TOKEN


def test_upload_gets_the_publish_token_before_the_seeded_index_credentials():
    env = {"UV_PUBLISH_TOKEN": TOKEN, "UV_INDEX_CORP_USERNAME": "alice", "UV_INDEX_CORP_PASSWORD": SECRET}
    # the publish URL under the index root: the index's credentials are cached (seeded) there
    ix = Index.from_url("https://pkgs.test/simple/", name="corp", publish_url="https://pkgs.test/")
    r = resolver(env, indexes=(ix,))
    d = r.resolve("https://pkgs.test/")
    assert (d.action, d.source, d.credentials.username) == ("inject", "env:UV_PUBLISH_TOKEN", "__token__")
    r.record("https://pkgs.test/", d, 200)
    # a download from the same host still gets the index's credentials, never the token,
    # neither before sending nor after a 401
    download = r.resolve("https://pkgs.test/simple/x/")
    assert (download.source, download.credentials.password) == ("env:UV_INDEX_CORP", SECRET)
    again = r.challenge("https://pkgs.test/simple/x/", download, 401)
    assert again is None or again.credentials is None or again.credentials.password != TOKEN


def test_index_credentials_cover_the_publish_url_on_another_host():
    env = {"UV_INDEX_CORP_USERNAME": "alice", "UV_INDEX_CORP_PASSWORD": SECRET}
    r = resolver(env)
    d = r.resolve("https://upload.test/legacy/")
    assert (d.action, d.source, d.credentials) == ("inject", "env:UV_INDEX_CORP", Credentials.basic("alice", SECRET))
    assert r.knows_host("https", "upload.test", 443)  # intercepted because of the publish-url
    r.record("https://upload.test/legacy/", d, 200)
    # not cached for the upload host: another path there gets nothing from the index
    assert r.resolve("https://upload.test/other/").action == "send"


def test_store_entry_for_the_index_covers_its_publish_url():
    files = Files({"https://pkgs.test/simple/": Credentials.basic("alice", SECRET)})
    r = resolver({}, sources=[IndexCredentialsSource([INDEX], {}), files])
    d = r.resolve("https://upload.test/legacy/")
    assert (d.action, d.source, d.credentials.username) == ("inject", "store", "alice")
    assert files.calls == ["https://upload.test/legacy/", INDEX.url]
    # and not for a host no index names as its publish URL
    files.calls.clear()
    assert r.resolve("https://nothing.test/legacy/").action == "send"
    assert files.calls == ["https://nothing.test/legacy/"]


def test_publish_source_is_in_the_chain_only_with_a_publish_url():
    with_publish = [s.name for s in default_sources(Settings(indexes=[INDEX], env={}))]
    without = [s.name for s in default_sources(Settings(indexes=[Index.from_url("https://pkgs.test/simple/")], env={}))]
    assert with_publish[:2] == ["env:UV_PUBLISH", "index-url"] and "env:UV_PUBLISH" not in without


def test_knows_host_for_a_publish_realm_only():
    r = resolver({})
    assert r.knows_host("https", "upload.test", 443)
    assert not r.knows_host("https", "upload.test", 8443)
    assert Realm.of(INDEX.publish_url) == Realm("https", "upload.test", 443)
