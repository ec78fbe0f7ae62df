"""Cloud registries through credproxy, against local stand-ins (issue 12 points 4, 5).

Each stand-in (tests/helpers/registries.py) checks the exact username the real service
requires and rotates its token while the proxy runs. The page tests (recipes.PAGE_TESTS) run
every ```sh line of their docs/recipes page as written, in one terminal on a user's machine
(tests/helpers/recipes.py: the service's origin swapped for the stand-in's, the page's toml
block as ~/.config/credproxy/config.toml, secrets pasted on stdin or read by the proxy from
the program the page names); the rotation steps after them are the test's own:

- AWS CodeArtifact: username `aws`, token from `aws codeartifact get-authorization-token`
  through `token-command` (a stand-in `aws` on PATH: no AWS CLI or account here).
- Google Artifact Registry: username `oauth2accesstoken`, token from `gcloud auth
  print-access-token` through `token-command` (a stand-in `gcloud`).
- Azure Artifacts: `VssSessionToken` from the real `keyring` command, installed by the page's
  `uv tool install keyring --with artifacts-keyring` (offline; artifacts-keyring is a stand-in
  backend), keyring-provider = subprocess; and a PAT in the store (any username).
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
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from mitmproxy import io as mio

from credproxy.credentials.model import secret_forms
from tests.helpers import recipes
from tests.helpers.clients import REAL_PYTHON, client_env, installed, pip_install, uv_pip_install
from tests.helpers.proxy import credproxy_cmd, proxy_env, start_credproxy
from tests.helpers.registries import TokenRegistry
from tests.helpers.wheelhouse import wheelhouse
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
    """A stand-in, the real proxy, the real client.

    Either the recipe page runs as written (`page_shell`: one terminal on a user's machine,
    `credproxy serve &` and the clients run by the page's lines), or the test drives the proxy
    and clients itself (`start`/`install`, for what a page shows outside a ```sh block)."""

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
        self._proxy = None
        self.shell: recipes.RecipeShell | None = None
        self.outputs: list[tuple[str, str]] = []

    @property
    def proxy(self):
        return self.shell.proxy if self.shell is not None else self._proxy

    @property
    def env(self) -> dict[str, str]:
        import os

        extra = {"PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}", **self.extra}
        return proxy_env(self.tmp, upstream_ca=self.certs.ca_plus_certifi_pem, extra=extra)

    def page_shell(self, page: str, origin: str, *, substitutions: dict[str, str] | None = None,
                   config: bool = True) -> recipes.RecipeShell:
        """A user's terminal for `page`: the stand-in programs in self.bin on PATH, the page's
        toml block in ~/.config/credproxy/config.toml, and an activated venv (the project's)."""
        env = recipes.machine_env(self.tmp, self.certs, bins=[self.bin])
        if config:
            recipes.config_file(env).write_text(recipes.config(page, origin, standin_origin(self)))
        self.shell = recipes.RecipeShell(self.tmp, env, self.tmp / "project",
                                         substitutions={origin: standin_origin(self), **(substitutions or {})},
                                         serve_args=("-v", "--save-flows", str(self.flows)))
        venv = self.shell.run(f"{shlex.quote(str(REAL_PYTHON))} -m venv .venv && . .venv/bin/activate")
        assert venv.returncode == 0, venv.stderr
        return self.shell

    def run_page(self, page: str, **hooks) -> list[recipes.Ran]:
        ran = self.shell.run_page(page, **hooks)
        self.outputs += [(r.command, r.output) for r in ran]
        return ran

    def run_own(self, command: str, *, ok: bool = True) -> subprocess.CompletedProcess:
        """A command of the test's own (not the page's) in the page's terminal."""
        result = self.shell.run_line(command)
        self.outputs.append((command, result.stdout + result.stderr))
        if ok:
            assert result.returncode == 0, f"`{command}` failed:\n{result.stdout}{result.stderr}"
        return result

    def venv_has_the_package(self) -> bool:
        return installed(self.shell.cwd / ".venv").get("my-package") == "1.0"

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(credproxy_cmd(*args), env=self.env, input=stdin, capture_output=True,
                                text=True, timeout=60)
        self.outputs.append((f"credproxy {args[0]}", result.stdout + result.stderr))
        return result

    def start(self) -> None:
        (self.tmp / "credproxy-config.toml").write_text(self.config)
        self._proxy = start_credproxy(self.tmp, "-v", "--save-flows", str(self.flows), env=self.env)

    def install(self, n: int, client: str = "pip") -> subprocess.CompletedProcess:
        env = client_env(self.tmp, proxy_url=self.proxy.url, ca_bundle=self.proxy.ca_cert)
        url = self.reg.index_url()
        if client == "pip":
            result = pip_install(self.tmp / f"target{n}", "--index-url", url, "--no-cache-dir", "my-package", env=env)
        else:
            result = uv_pip_install(self.tmp / f"target{n}", "--index-url", url, "--no-cache", "my-package", env=env)
        self.outputs.append((f"{client} install {n}", result.stdout + result.stderr))
        if result.returncode == 0:
            assert "my-package" in installed(self.tmp / f"target{n}")
        return result

    def finish(self, usernames: list[str | None], tokens: tuple[str, ...] = (OLD, NEW)) -> str:
        """Stop the proxy, run explain, scan everything for both tokens; the proxy's stderr."""
        url = self.reg.index_url() + "my-package/"
        if self.shell is not None:
            explain = self.run_own(f"credproxy explain {url}")
        else:
            explain = self.cli("explain", url)
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
        for token in tokens:
            forms = set(secret_forms(token))
            for user in usernames:
                forms.update(secret_forms(token, user))
            for label, text in texts:
                found = [form for form in forms if form in text]
                assert found == [], f"{label} shows a token: {found}"
        return stderr


@pytest.fixture(scope="module")
def cloud_wheel(tmp_path_factory) -> Path:
    # the package name the recipe pages install
    return make_wheel(tmp_path_factory.mktemp("cloud-wheels"), "my-package", "1.0")


@pytest.fixture
def world(tmp_path, tls_certs, cloud_wheel):
    made: list[World] = []

    def make(**kwargs) -> World:
        w = World(tmp_path, tls_certs, wheel=cloud_wheel, **kwargs)
        made.append(w)
        return w

    yield make
    for w in made:
        if w.shell is not None:
            w.shell.stop()
        if w._proxy is not None:
            w._proxy.stop()
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


def reinstall(w: World, client: str) -> None:
    """The test's own install of the page's package, fetched again from the registry."""
    url = w.reg.index_url()
    if client == "pip":
        w.run_own(f"pip install --force-reinstall --no-deps --no-cache-dir --index-url {url} my-package")
    else:
        w.run_own(f"uv pip install --reinstall --no-cache --index-url {url} my-package")
    assert w.venv_has_the_package()


def rotate(w: World) -> None:
    """The service issues a new token: its CLI/keyring prints it, the old one gets 401."""
    w.token_file.write_text(NEW + "\n")
    w.reg.reset()
    w.reg.rotate(NEW)


def assert_reasked_once(w: World) -> None:
    """The old token got one 401; the proxy asked its source again and everything passed."""
    statuses = w.reg.statuses()
    assert statuses[0] == 401 and statuses[1:] and set(statuses[1:]) == {200}, statuses


def test_aws_codeartifact_token_command(world):
    """docs/recipes/aws-codeartifact.md, every line as written. `aws` is a stand-in on PATH
    (this machine has no AWS CLI or account): it prints the stand-in registry's token. The
    token rotates between the page's pip and uv install."""
    w = world(base="/pypi/my-repo", username="aws")
    fake_program(w.bin, "aws", PRINT_TOKEN, w.token_file)
    w.page_shell("aws-codeartifact.md", AWS)

    def between_pip_and_uv():
        assert w.venv_has_the_package()
        assert set(w.reg.statuses()) == {200} and {s.who for s in w.reg.seen} == {"aws"}
        assert runs(w.bin, "aws") == 1  # once for the whole install, not per request
        assert json.loads((w.bin / "aws.runs").read_text().splitlines()[0])[:2] == [
            "codeartifact", "get-authorization-token"]
        w.run_own("pip uninstall -y my-package")  # so that uv installs it again
        rotate(w)

    w.run_page("aws-codeartifact.md",
               before={f"uv pip install --index-url {AWS}/pypi/my-repo/simple/ my-package": between_pip_and_uv})
    assert w.venv_has_the_package()
    assert_reasked_once(w)
    assert runs(w.bin, "aws") == 2
    stderr = w.finish(["aws"])
    assert "diagnostic: fetched ****" in stderr  # the command's stderr, masked
    assert "source=token-command" in stderr


GAR = "https://us-central1-python.pkg.dev"


def test_google_artifact_registry_oauth2accesstoken(world):
    """docs/recipes/google-artifact-registry.md as written; `gcloud` is a stand-in on PATH."""
    w = world(base="/my-project/my-repo", username="oauth2accesstoken")
    fake_program(w.bin, "gcloud", PRINT_TOKEN, w.token_file)
    w.page_shell("google-artifact-registry.md", GAR)
    w.run_page("google-artifact-registry.md")
    assert w.venv_has_the_package()
    assert {s.who for s in w.reg.seen} == {"oauth2accesstoken"}
    rotate(w)
    reinstall(w, "pip")
    assert_reasked_once(w)
    assert runs(w.bin, "gcloud") == 2
    w.finish(["oauth2accesstoken"])


AZURE = "https://pkgs.dev.azure.com"
AZURE_PIP = f"pip install --index-url {AZURE}/my-org/_packaging/my-feed/pypi/simple/ my-package"
AZURE_PAT_LOGIN = f"credproxy auth login {AZURE}/my-org/_packaging/my-feed/pypi/ --username azure --password -"
PAT = "azure-PAT/+=:@%-third"
# artifacts-keyring's stand-in: a keyring backend (the real one signs in to Azure) that answers
# `keyring get <feed URL> VssSessionToken` with the stand-in registry's current session token.
ARTIFACTS_KEYRING = """import keyring.backend
import keyring.credentials
import keyring.errors

TOKEN_FILE = {token_file!r}


class ArtifactsKeyringStandIn(keyring.backend.KeyringBackend):
    priority = 9.9

    def _token(self, service):
        if "/_packaging/" not in service:
            return None
        with open(TOKEN_FILE) as f:
            return f.read().strip()

    def get_password(self, service, username):
        return self._token(service) if username == "VssSessionToken" else None

    def get_credential(self, service, username):
        token = self._token(service)
        if token is None or username not in (None, "VssSessionToken"):
            return None
        return keyring.credentials.SimpleCredential("VssSessionToken", token)

    def set_password(self, service, username, password):
        raise keyring.errors.PasswordSetError("read-only")

    def delete_password(self, service, username):
        raise keyring.errors.PasswordDeleteError("read-only")
"""


@pytest.fixture(scope="module")
def keyring_wheelhouse(tmp_path_factory) -> Path:
    """keyring and its dependencies, packed from this venv (offline)."""
    return wheelhouse(tmp_path_factory.mktemp("keyring-wheelhouse"), ["keyring"])


def test_azure_artifacts_vss_session_token_from_a_keyring(world, keyring_wheelhouse, tmp_path):
    """docs/recipes/azure-artifacts.md, every line as written: the real `uv tool install keyring
    --with artifacts-keyring` (offline, from a local wheelhouse whose artifacts-keyring is a
    stand-in backend: the real one needs an Azure sign-in), the real `keyring` command asked by
    the proxy for VssSessionToken; the session token rotates and the proxy asks again. Then
    the page's PAT line: the PAT pasted on stdin, the next install sends it (any username)."""
    w = world(base="/my-org/_packaging/my-feed/pypi", username="VssSessionToken")
    links = tmp_path / "find-links"
    links.mkdir()
    for wheel in keyring_wheelhouse.iterdir():
        (links / wheel.name).symlink_to(wheel)
    make_wheel(links, "artifacts-keyring", "1.0",
               extra_files={"artifacts_keyring/__init__.py":
                            ARTIFACTS_KEYRING.format(token_file=str(w.token_file)).encode()},
               entry_points="[keyring.backends]\nartifacts = artifacts_keyring\n")
    offline = f"--with artifacts-keyring --offline --no-index --find-links {shlex.quote(str(links))}"
    w.page_shell("azure-artifacts.md", AZURE, substitutions={"--with artifacts-keyring": offline})

    def after_pip(ran):
        assert w.venv_has_the_package()
        assert set(w.reg.statuses()) == {200} and {s.who for s in w.reg.seen} == {"VssSessionToken"}
        rotate(w)  # artifacts-keyring hands out a fresh session token
        reinstall(w, "pip")
        assert_reasked_once(w)

    def before_pat():
        w.reg.username = None  # a PAT takes any username
        w.reg.reset()
        w.reg.rotate(PAT)

    w.run_page("azure-artifacts.md", stdin={AZURE_PAT_LOGIN: PAT + "\n"}, after={AZURE_PIP: after_pip},
               before={AZURE_PAT_LOGIN: before_pat})
    reinstall(w, "uv")
    assert set(w.reg.statuses()) == {200} and {s.who for s in w.reg.seen} == {"azure"}
    stderr = w.finish(["VssSessionToken", "azure"], tokens=(OLD, NEW, PAT))
    assert "source=keyring" in stderr and "source=store" in stderr


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


GITLAB_LOGIN = f"credproxy auth login {GITLAB}/api/v4/projects/42/packages/pypi/ --token -"


def test_gitlab_token_in_the_store(world):
    """docs/recipes/gitlab-github.md's block as written (the token pasted on stdin); the token
    is replaced with the same command and the running proxy sends the new one, no 401."""
    w = world(base="/api/v4/projects/42/packages/pypi", username="__token__")
    sh = w.page_shell("gitlab-github.md", GITLAB, config=False)
    w.run_page("gitlab-github.md", stdin={GITLAB_LOGIN: OLD + "\n"})
    assert w.venv_has_the_package()
    assert set(w.reg.statuses()) == {200} and {s.who for s in w.reg.seen} == {"__token__"}
    rotate(w)
    again = sh.run_line(GITLAB_LOGIN, stdin=NEW + "\n")
    w.outputs.append(("auth login again", again.stdout + again.stderr))
    assert again.returncode == 0, again.stderr
    reinstall(w, "uv")
    assert set(w.reg.statuses()) == {200}, w.reg.statuses()
    assert "source=store" in w.finish(["__token__"])


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
    """docs/recipes/jfrog-artifactory.md as written (the token in ~/.jfrog-token, exported
    before `credproxy serve &`); after a rotation the running proxy cannot learn the new
    value, and its log says to restart it."""
    w = world(base="/artifactory/api/pypi/pypi-local", username="")
    sh = w.page_shell("jfrog-artifactory.md", "https://example.jfrog.io")
    token_file = Path(sh.env()["HOME"]) / ".jfrog-token"
    token_file.write_text(OLD + "\n")
    token_file.chmod(0o600)
    w.run_page("jfrog-artifactory.md")
    assert w.venv_has_the_package()
    assert set(w.reg.statuses()) == {200} and {s.who for s in w.reg.seen} == {""}
    rotate(w)
    second = w.run_own(f"pip install --force-reinstall --no-cache-dir --index-url {w.reg.index_url()} my-package",
                       ok=False)
    assert second.returncode != 0  # the proxy cannot learn a new environment variable
    stderr = w.finish([None, ""])
    assert "UV_INDEX_JFROG_PASSWORD" in stderr and "restart the proxy" in stderr
