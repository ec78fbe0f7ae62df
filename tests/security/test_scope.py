"""No credential outside its prefix (issue 9 findings 1 [loopback, netrc default], 4, 8
[cross-talk], 11), each reproduced against a real `credproxy serve` with real curl as the
client and a real upstream that records every Authorization header it receives.

Each test failed on 3cb1379 (the base of this work): there the credential went where these
tests say it must not.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from credproxy.credentials.model import secret_forms
from credproxy.credentials.store import Store, StoreEntry
from tests.helpers.clients import client_env, combined_bundle, curl
from tests.helpers.proxy import Proxy, credproxy_cmd, proxy_env, start_credproxy
from tests.helpers.servers import EchoServer, TestCerts, make_certs

pytestmark = pytest.mark.e2e

SECRETS = {  # user -> password; every one is scanned for in the proxy's output
    "a": "pw-team-a/S3cr3t", "b": "pw-team-b/S3cr3t", "alice": "pw-alice/S3cr3t",
    "carol": "pw-carol/S3cr3t", "i": "pw-ip/S3cr3t", "l": "pw-localhost/S3cr3t",
    "d": "pw-default/S3cr3t", "s": "pw-store/S3cr3t",
}


def basic(user: str, password: str | None = None) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()


def auth_of(user: str) -> str:
    return basic(user, SECRETS[user])


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> TestCerts:
    return make_certs(tmp_path_factory.mktemp("certs"))


class Setup:
    """The proxy's world: netrc, config, store; `start()` runs `credproxy serve -v
    --save-flows FILE`."""

    def __init__(self, tmp_path: Path, certs: TestCerts):
        self.tmp, self.certs = tmp_path, certs
        self.env = proxy_env(tmp_path, upstream_ca=certs.ca_plus_certifi_pem,
                             resolve=("pkgs.test", "other.test", "mirror.test"))
        self.env["CREDPROXY_DATA_DIR"] = str(tmp_path / "proxy-data")
        self.servers: list[EchoServer] = []
        self.proxy: Proxy | None = None

    def echo(self, **kwargs) -> EchoServer:
        server = EchoServer.start(self.certs, **kwargs)
        self.servers.append(server)
        return server

    def netrc(self, text: str) -> None:
        path = Path(self.env["HOME"]) / ".netrc"
        path.write_text(text)
        path.chmod(0o600)

    def config(self, text: str) -> None:
        Path(self.env["CREDPROXY_CONFIG"]).write_text(text)

    def store(self, service: str, user: str) -> None:
        Store(Path(self.env["CREDPROXY_CREDENTIALS_DIR"]) / "credentials.toml").add(
            StoreEntry.basic(service, user, SECRETS[user]))

    def start(self, *args: str) -> Proxy:
        self.flows = self.tmp / "flows.mitm"
        self.proxy = start_credproxy(self.tmp, "-v", "--save-flows", str(self.flows), *args, env=self.env)
        bundle = combined_bundle(self.tmp / "client-bundle.pem", self.proxy.ca_cert, self.certs.ca_pem)
        self.client = client_env(self.tmp, proxy_url=self.proxy.url, ca_bundle=bundle)
        return self.proxy

    def get(self, url: str, *headers: str) -> str:
        """curl through the proxy, the path exactly as given; returns the status code."""
        args = ["--path-as-is", "-o", "/dev/null", "-w", "%{http_code}"]
        for header in headers:
            args += ["-H", header]
        result = curl(*args, url, env=self.client)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def explain(self, url: str) -> str:
        result = subprocess.run(credproxy_cmd("explain", url), env=self.env, capture_output=True,
                                text=True, timeout=60, cwd=self.tmp)
        assert result.returncode == 0, result.stderr
        return result.stdout + result.stderr

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        for server in self.servers:
            server.stop()

    def assert_no_secret_in_output(self) -> None:
        """Neither the log (-v) nor the saved flows hold any secret, in any encoding."""
        assert self.proxy is not None
        self.proxy.stop()  # flushes the flows file
        text = self.proxy.stdout() + self.proxy.stderr()
        assert self.flows.exists() and self.flows.stat().st_size > 0, "no flow was saved: nothing scanned"
        saved = self.flows.read_bytes().decode("latin-1")
        for user, secret in SECRETS.items():
            for where, content in (("log", text), ("saved flows", saved)):
                found = [f for f in secret_forms(secret, user) if f in content]
                assert found == [], f"the proxy's {where} holds {user}'s secret: {found}"


@pytest.fixture
def world(tmp_path, certs):
    setup = Setup(tmp_path, certs)
    yield setup
    setup.close()


def received(server: EchoServer, path: str) -> list[str | None]:
    """The Authorization values `server` received for `path`, in order (None = none)."""
    return [r.authorization for r in server.requests if r.path == path]


# --- finding 4: a store entry for /team-a/ stays in /team-a/ -----------------------------------


def test_team_a_credential_is_not_sent_to_team_b_team_c_or_the_root(world):
    server = world.echo(host="other.test", credentials=("a", SECRETS["a"]))
    base = f"https://other.test:{server.port}"
    world.store(f"{base}/team-a/", "a")
    world.store(f"{base}/team-b/", "b")
    world.start()
    assert world.get(f"{base}/team-a/simple/x/") == "200"  # a's credential works: cached
    assert world.get(f"{base}/team-a/simple/y/") == "200"
    assert world.get(f"{base}/team-b/x") == "401"  # b's own entry, which this server rejects
    assert world.get(f"{base}/team-c/x") == "401"
    assert world.get(f"{base}/") == "401"
    assert received(server, "/team-a/simple/x/") == [auth_of("a")]
    assert received(server, "/team-b/x") == [auth_of("b")], "team-a's cached credential shadowed team-b's entry"
    assert received(server, "/team-c/x") == [None], "team-a's credential went to /team-c/"
    assert received(server, "/") == [None], "team-a's credential went to /"
    world.assert_no_secret_in_output()


# --- finding 8: a client's `Basic alice:` does not change what anonymous clients get ------------


def test_username_only_client_does_not_change_the_anonymous_credential(world):
    server = world.echo(host="other.test")
    base = f"https://other.test:{server.port}"
    world.netrc("machine other.test login carol password " + SECRETS["carol"] + "\n")
    world.store(f"{base}/", "alice")
    world.start()
    assert world.get(f"{base}/first", "Authorization: " + basic("alice")) == "200"
    assert received(server, "/first") == [auth_of("alice")]
    assert world.get(f"{base}/second") == "200"
    assert received(server, "/second") == [auth_of("carol")], \
        "an anonymous client got the credential another client's username selected"
    world.assert_no_secret_in_output()


# --- finding 11: /team-a/..%2fteam-b/x is not under /team-a/ -----------------------------------


@pytest.mark.parametrize("trick", ["/team-a/..%2fteam-b/x", "/team-a/%2e%2e/team-b/x",
                                   "/team-a/..%5cteam-b/x", "/team-a/../team-b/x"])
def test_path_tricks_do_not_get_the_team_a_credential(world, trick):
    server = world.echo(host="other.test")
    base = f"https://other.test:{server.port}"
    world.store(f"{base}/team-a/", "a")
    world.start()
    assert world.get(f"{base}/team-a/ok") == "200"  # cached for /team-a/ now
    assert world.get(base + trick) == "200"
    assert received(server, "/team-a/ok") == [auth_of("a")]
    assert received(server, trick) == [None], f"{trick} got the /team-a/ credential"
    world.assert_no_secret_in_output()


# --- finding 1 (loopback): a loopback port no index names gets no netrc password ---------------


NETRC_ALL = (f"machine 127.0.0.1 login i password {SECRETS['i']}\n"
             f"machine localhost login l password {SECRETS['l']}\n"
             f"default login d password {SECRETS['d']}\n")


def test_plain_http_loopback_port_nobody_names_gets_nothing(world):
    stranger = world.echo(plain=True, credentials=("i", SECRETS["i"]))  # any local user's listener
    named = world.echo(plain=True, credentials=("i", SECRETS["i"]))
    world.netrc(NETRC_ALL)
    world.config(f'[[index]]\nname = "local"\nurl = "http://127.0.0.1:{named.port}/simple/"\n')
    world.start()
    assert world.get(f"http://127.0.0.1:{named.port}/simple/x/") == "200"  # the index's port: yes
    assert received(named, "/simple/x/") == [auth_of("i")]
    for host in ("127.0.0.1", "localhost"):
        assert world.get(f"http://{host}:{stranger.port}/{host}") == "401"
        assert received(stranger, f"/{host}") == [None], f"http://{host}:PORT got a netrc password"
    world.assert_no_secret_in_output()
    out = world.explain(f"http://localhost:{stranger.port}/x")
    assert "decision: leave" in out and "no index or credential source names this port" in out
    assert "no index names this loopback port" in out and 'netrc-loopback = "any-port"' in out
    assert not any(f in out for f in secret_forms(SECRETS["l"], "l"))


def test_netrc_loopback_any_port_is_the_documented_widening(world):
    server = world.echo(plain=True, credentials=("l", SECRETS["l"]))
    world.netrc(NETRC_ALL)
    world.config('netrc-loopback = "any-port"\n')
    world.start()
    assert world.get(f"http://localhost:{server.port}/x") == "200"
    assert received(server, "/x") == [auth_of("l")]


# --- finding 1 (netrc default): only configured indexes, also with --intercept-all --------------


def test_netrc_default_is_not_sent_to_a_host_without_an_index(world):
    index = world.echo(host="pkgs.test", credentials=("d", SECRETS["d"]))
    other = world.echo(host="other.test", credentials=("d", SECRETS["d"]))
    world.netrc(f"default login d password {SECRETS['d']}\n")
    world.config(f'[[index]]\nname = "corp"\nurl = "https://pkgs.test:{index.port}/simple/"\n')
    # other.test is intercepted (a store entry names a path on it) but no index covers /elsewhere
    world.store(f"https://other.test:{other.port}/team/", "s")
    world.start()
    assert world.get(f"https://pkgs.test:{index.port}/simple/x/") == "200"  # the index: yes
    assert received(index, "/simple/x/") == [None, auth_of("d")]
    assert world.get(f"https://other.test:{other.port}/elsewhere") == "401"
    assert received(other, "/elsewhere") == [None], "the netrc default entry answered a host with no index"
    world.assert_no_secret_in_output()
    out = world.explain(f"https://other.test:{other.port}/elsewhere")
    assert "answers configured indexes only" in out and "on 401:   no source would answer" in out
    assert not any(f in out for f in secret_forms(SECRETS["d"], "d"))


def test_intercept_all_sends_neither_default_nor_localhost_entry_to_strangers(world):
    unknown = world.echo(host="mirror.test", credentials=("d", SECRETS["d"]))
    local = world.echo(host="localhost", credentials=("l", SECRETS["l"]))
    world.netrc(NETRC_ALL)
    world.start("--intercept-all")
    assert world.get(f"https://mirror.test:{unknown.port}/x") == "401"
    assert received(unknown, "/x") == [None], "--intercept-all: the default entry went to an unconfigured host"
    assert world.get(f"https://localhost:{local.port}/y") == "401"
    assert received(local, "/y") == [None], "--intercept-all: machine localhost went to an unnamed port"
    world.assert_no_secret_in_output()


def test_netrc_default_any_host_is_the_documented_widening(world):
    unknown = world.echo(host="mirror.test", credentials=("d", SECRETS["d"]))
    world.netrc(f"default login d password {SECRETS['d']}\n")
    world.config('netrc-default = "any-host"\n')
    world.start("--intercept-all")
    assert world.get(f"https://mirror.test:{unknown.port}/x") == "200"
    assert received(unknown, "/x") == [None, auth_of("d")]
