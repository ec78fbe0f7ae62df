"""Cloud registries through credproxy, against local stand-ins (issue 12 points 4, 5).

Each stand-in (tests/helpers/registries.py) checks the exact username the real service
requires and rotates its token while the proxy runs. Each test follows its docs/recipes page:

- AWS CodeArtifact: username `aws`, token from `aws codeartifact get-authorization-token`
  through `token-command` (a fake `aws` on the proxy's PATH).
- Google Artifact Registry: username `oauth2accesstoken`, token from `gcloud auth
  print-access-token` through `token-command`.
- Azure Artifacts: `VssSessionToken` from a keyring (artifacts-keyring's role: a `keyring`
  command on PATH, keyring-provider = subprocess); and a PAT in the store (any username).
- JFrog Artifactory: empty username, token as password (UV_INDEX_<NAME>_PASSWORD alone).
- GitLab: `__token__` + a personal access token from `credproxy auth login --token -`.
- GitHub-style named user + PAT in the netrc.

Rotation: the first install succeeds; the stand-in switches to a new token and the source
learns it (the command/keyring prints it, the store/netrc file changes); a second install with
the real client succeeds without seeing a failure: for a program the proxy re-asks it after the
401 and re-sends once; a changed store/netrc file is read before the request goes out. For an
environment variable that cannot change under a running proxy, the log says to restart it.
Every run: -v request log, --save-flows and `credproxy explain` are scanned for both tokens."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mitmproxy import io as mio

from credproxy.credentials.model import secret_forms
from tests.helpers import recipes
from tests.helpers.clients import client_env, installed, pip_install, uv_pip_install
from tests.helpers.proxy import credproxy_cmd, proxy_env, start_credproxy
from tests.helpers.registries import TokenRegistry
from tests.helpers.wheels import make_wheel

pytestmark = pytest.mark.e2e

OLD = "old-Tok3n/+=:@%-first"
NEW = "new-Tok3n/+=:@%-second"

FAKE_CLI = '''#!{python}
import json, os, sys
with open({runs!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
token = open({token_file!r}).read().strip()
{body}
'''
# the fake `aws`/`gcloud`: print the current token (as `--output text` / print-access-token do)
PRINT_TOKEN = "print('diagnostic: fetched ' + token, file=sys.stderr)\nprint(token)"
# a fake `keyring` with artifacts-keyring's answers: VssSessionToken and the current token
KEYRING = """args = sys.argv[1:]
if args[:1] != ["get"]:
    sys.exit(2)
if args[2:] == ["--mode", "creds"]:
    print("VssSessionToken"); print(token)
elif args[2:] == ["VssSessionToken"]:
    print(token)
else:
    sys.exit(1)"""


def fake_program(bin_dir: Path, name: str, body: str, token_file: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(FAKE_CLI.format(python=sys.executable, runs=str(bin_dir / f"{name}.runs"),
                                    token_file=str(token_file), body=body))
    path.chmod(0o755)
    return path


def runs(bin_dir: Path, name: str) -> int:
    log = bin_dir / f"{name}.runs"
    return len(log.read_text().splitlines()) if log.exists() else 0


class World:
    """A stand-in, the proxy's environment and config, the real proxy, the real client."""

    def __init__(self, tmp_path: Path, tls_certs, *, base: str, username: str | None, wheel: Path):
        self.tmp = tmp_path
        self.certs = tls_certs
        self.reg = TokenRegistry.start(tls_certs, base=base, username=username, token=OLD, wheels=[wheel])
        self.bin = tmp_path / "bin"
        self.token_file = tmp_path / "token.txt"
        self.token_file.write_text(OLD + "\n")
        self.extra: dict[str, str] = {}
        self.config = ""
        self.flows = tmp_path / "flows.mitm"
        self.proxy = None
        self.outputs: list[tuple[str, str]] = []

    @property
    def env(self) -> dict[str, str]:
        import os

        extra = {"PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}", **self.extra}
        return proxy_env(self.tmp, upstream_ca=self.certs.ca_plus_certifi_pem, extra=extra)

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(credproxy_cmd(*args), env=self.env, input=stdin, capture_output=True,
                                text=True, timeout=60)
        self.outputs.append((f"credproxy {args[0]}", result.stdout + result.stderr))
        return result

    def start(self) -> None:
        (self.tmp / "credproxy-config.toml").write_text(self.config)
        self.proxy = start_credproxy(self.tmp, "-v", "--save-flows", str(self.flows), env=self.env)

    def install(self, n: int, client: str = "pip") -> subprocess.CompletedProcess:
        env = client_env(self.tmp, proxy_url=self.proxy.url, ca_bundle=self.proxy.ca_cert)
        url = self.reg.index_url()
        if client == "pip":
            result = pip_install(self.tmp / f"target{n}", "--index-url", url, "--no-cache-dir", "cloud-pkg", env=env)
        else:
            result = uv_pip_install(self.tmp / f"target{n}", "--index-url", url, "--no-cache", "cloud-pkg", env=env)
        self.outputs.append((f"{client} install {n}", result.stdout + result.stderr))
        if result.returncode == 0:
            assert "cloud-pkg" in installed(self.tmp / f"target{n}")
        return result

    def finish(self, usernames: list[str | None]) -> str:
        """Stop the proxy, run explain, scan everything for both tokens; the proxy's stderr."""
        explain = self.cli("explain", self.reg.index_url() + "cloud-pkg/")
        assert explain.returncode == 0, explain.stderr
        self.proxy.stop()
        self.reg.stop()
        stderr = self.proxy.stderr()
        texts = [*self.outputs, ("proxy stderr (-v request log)", stderr),
                 ("saved flows (raw)", self.flows.read_bytes().decode("latin-1"))]
        with open(self.flows, "rb") as f:
            flows = list(mio.FlowReader(f).stream())
        assert flows, "no flow was saved"
        texts += [(f"saved flow {fl.request.url}", repr(fl.get_state())) for fl in flows]
        for token in (OLD, NEW):
            forms = set(secret_forms(token))
            for user in usernames:
                forms.update(secret_forms(token, user))
            for label, text in texts:
                found = [form for form in forms if form in text]
                assert found == [], f"{label} shows a token: {found}"
        return stderr


@pytest.fixture(scope="module")
def cloud_wheel(tmp_path_factory) -> Path:
    return make_wheel(tmp_path_factory.mktemp("cloud-wheels"), "cloud-pkg", "1.0")


@pytest.fixture
def world(tmp_path, tls_certs, cloud_wheel):
    made: list[World] = []

    def make(**kwargs) -> World:
        w = World(tmp_path, tls_certs, wheel=cloud_wheel, **kwargs)
        made.append(w)
        return w

    yield make
    for w in made:
        if w.proxy is not None:
            w.proxy.stop()
        w.reg.stop()


def rotate_and_install_again(w: World, client: str, *, file_source: bool = False) -> None:
    """The registry rotates; the client's next install succeeds. A program (token command,
    keyring) is asked again after the 401 on the old token, and the request re-sent once; a
    file (store, netrc) is read on every request, so its new token goes out before any 401."""
    w.reg.reset()
    w.reg.rotate(NEW)
    second = w.install(2, client)
    assert second.returncode == 0, second.stderr
    statuses = w.reg.statuses()
    if file_source:
        assert statuses and set(statuses) == {200}, statuses
    else:
        assert statuses[0] == 401 and statuses[1:] and set(statuses[1:]) == {200}, statuses


def standin_origin(w: World) -> str:
    return f"https://pkgs.test:{w.reg.port}"


def login_as_the_recipe_says(w: World, page: str, origin: str, secret: str) -> None:
    for argv in recipes.commands(page, "credproxy auth login", origin, standin_origin(w)):
        result = w.cli(*argv[1:], stdin=secret + "\n")
        assert result.returncode == 0, result.stderr


AWS = "https://my-domain-111122223333.d.codeartifact.us-east-1.amazonaws.com"


def test_aws_codeartifact_token_command(world):
    w = world(base="/pypi/my-repo", username="aws")
    fake_program(w.bin, "aws", PRINT_TOKEN, w.token_file)
    w.config = recipes.config("aws-codeartifact.md", AWS, standin_origin(w))
    w.start()
    first = w.install(1, "pip")
    assert first.returncode == 0, first.stderr
    assert runs(w.bin, "aws") == 1  # once for the whole install, not per request
    assert json.loads((w.bin / "aws.runs").read_text().splitlines()[0])[:2] == ["codeartifact", "get-authorization-token"]
    w.token_file.write_text(NEW + "\n")  # what `aws codeartifact get-authorization-token` prints now
    rotate_and_install_again(w, "uv")
    assert runs(w.bin, "aws") == 2
    stderr = w.finish(["aws"])
    assert "diagnostic: fetched ****" in stderr  # the command's stderr, masked
    assert "source=token-command" in stderr


def test_google_artifact_registry_oauth2accesstoken(world):
    w = world(base="/my-project/my-repo", username="oauth2accesstoken")
    fake_program(w.bin, "gcloud", PRINT_TOKEN, w.token_file)
    w.config = recipes.config("google-artifact-registry.md", "https://us-central1-python.pkg.dev", standin_origin(w))
    w.start()
    first = w.install(1, "uv")
    assert first.returncode == 0, first.stderr
    w.token_file.write_text(NEW + "\n")
    rotate_and_install_again(w, "pip")
    assert runs(w.bin, "gcloud") == 2
    w.finish(["oauth2accesstoken"])


AZURE = "https://pkgs.dev.azure.com"


def test_azure_artifacts_vss_session_token_from_a_keyring(world):
    w = world(base="/my-org/_packaging/my-feed/pypi", username="VssSessionToken")
    fake_program(w.bin, "keyring", KEYRING, w.token_file)
    w.config = recipes.config("azure-artifacts.md", AZURE, standin_origin(w))
    w.start()
    first = w.install(1, "pip")
    assert first.returncode == 0, first.stderr
    w.token_file.write_text(NEW + "\n")  # artifacts-keyring hands out a fresh session token
    rotate_and_install_again(w, "uv")
    stderr = w.finish(["VssSessionToken"])
    assert "source=keyring" in stderr


def test_azure_artifacts_pat_in_the_store(world):
    w = world(base="/my-org/_packaging/my-feed/pypi", username=None)  # a PAT takes any username
    login_as_the_recipe_says(w, "azure-artifacts.md", AZURE, OLD)
    w.start()
    first = w.install(1, "uv")
    assert first.returncode == 0, first.stderr
    login_as_the_recipe_says(w, "azure-artifacts.md", AZURE, NEW)  # "run the same command again"
    rotate_and_install_again(w, "pip", file_source=True)
    stderr = w.finish(["azure"])
    assert "source=store" in stderr


GITLAB = "https://gitlab.example.com"


def test_gitlab_token_in_the_store(world):
    w = world(base="/api/v4/projects/42/packages/pypi", username="__token__")
    login_as_the_recipe_says(w, "gitlab-github.md", GITLAB, OLD)
    w.start()
    first = w.install(1, "pip")
    assert first.returncode == 0, first.stderr
    login_as_the_recipe_says(w, "gitlab-github.md", GITLAB, NEW)
    rotate_and_install_again(w, "uv", file_source=True)
    w.finish(["__token__"])


def test_named_user_and_token_in_the_netrc(world):
    w = world(base="/pypi", username="octocat")
    (line,) = [b for b in recipes.blocks("gitlab-github.md", "") if b.startswith("machine ")]
    netrc = w.tmp / "proxy-home" / ".netrc"
    netrc.parent.mkdir(parents=True, exist_ok=True)
    netrc.write_text(line.replace("npm.pkg.github.com", "pkgs.test").replace("ghp_XXXXXXXXXXXX", OLD))
    netrc.chmod(0o600)
    w.start()
    first = w.install(1, "uv")
    assert first.returncode == 0, first.stderr
    netrc.write_text(line.replace("npm.pkg.github.com", "pkgs.test").replace("ghp_XXXXXXXXXXXX", NEW))
    rotate_and_install_again(w, "pip", file_source=True)
    w.finish(["octocat"])


def test_jfrog_empty_username_from_the_environment_says_restart_after_rotation(world):
    w = world(base="/artifactory/api/pypi/pypi-local", username="")
    w.config = recipes.config("jfrog-artifactory.md", "https://example.jfrog.io", standin_origin(w))
    (export,) = [line for b in recipes.blocks("jfrog-artifactory.md", "sh") for line in b.splitlines()
                 if line.startswith("export ")]
    assert export.startswith("export UV_INDEX_JFROG_PASSWORD=") and "USERNAME" not in export.split("#")[0]
    w.extra = {"UV_INDEX_JFROG_PASSWORD": OLD}
    w.start()
    first = w.install(1, "uv")
    assert first.returncode == 0, first.stderr
    assert w.reg.statuses() and set(w.reg.statuses()) == {200}
    w.reg.rotate(NEW)
    second = w.install(2, "pip")
    assert second.returncode != 0  # the proxy cannot learn a new environment variable
    stderr = w.finish([None, ""])
    assert "UV_INDEX_JFROG_PASSWORD" in stderr and "restart the proxy" in stderr
