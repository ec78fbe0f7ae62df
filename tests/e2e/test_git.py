"""git over HTTPS through credproxy (issue 12 point 2): real `git clone` and `git push`.

The server is git's own `git http-backend` (tests/helpers/git_server.py) behind TLS, answering
401 without the exact Basic credential. git runs with the variables `credproxy env` prints and
no credential of its own (no helper, no userinfo, prompts disabled). Credentials come from
the store (the `auth login` line of docs/recipes/git.md), the netrc, or git's own credential
helper (`git-credential-hosts`, the config block of the page). A push and clone of a 40 MB
pack check that the proxy's memory stays flat. Each run's -v log, saved flows and explain
output are scanned for the password."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
from mitmproxy import io as mio

from credproxy.credentials.model import secret_forms
from tests.helpers import recipes
from tests.helpers.git_server import GitServer, git_identity_env
from tests.helpers.proxy import credproxy_cmd, proxy_env, start_credproxy

pytestmark = pytest.mark.e2e

USER = "alice"
PASSWORD = "g1t-Pa55/+=:@%word"
ORIGIN = "https://git.corp.example"


class GitWorld:
    def __init__(self, tmp_path: Path, tls_certs):
        self.tmp = tmp_path
        self.server = GitServer.start(tmp_path / "srv", tls_certs, username=USER, password=PASSWORD)
        self.seed = self.server.create_repo("team/repo.git", {"README": b"hello\n"})
        self.env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem,
                             extra={"CREDPROXY_DATA_DIR": str(tmp_path / "data")})
        self.flows = tmp_path / "flows.mitm"
        self.proxy = None
        self.outputs: list[tuple[str, str]] = []
        self.client_home = tmp_path / "client-home"
        self.client_home.mkdir()

    @property
    def origin(self) -> str:
        return f"https://pkgs.test:{self.server.port}"

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(credproxy_cmd(*args), env=self.env, input=stdin, capture_output=True,
                                text=True, timeout=60)
        self.outputs.append((f"credproxy {args[0]}", result.stdout + result.stderr))
        assert result.returncode == 0, result.stderr
        return result

    def start(self, config: str = "") -> None:
        (self.tmp / "credproxy-config.toml").write_text(config)
        self.proxy = start_credproxy(self.tmp, "-v", "--save-flows", str(self.flows), env=self.env)
        printed = {}
        for line in self.cli("env", "--port", str(self.proxy.port)).stdout.splitlines():
            parts = shlex.split(line)
            if len(parts) == 2 and parts[0] == "export":
                name, _, value = parts[1].partition("=")
                printed[name] = value
        assert printed["GIT_SSL_CAINFO"] and printed["HTTPS_PROXY"] == self.proxy.url
        self.git_env = git_identity_env(self.client_home, **printed)

    def git(self, *args: str, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
        result = subprocess.run(["git", *args], cwd=cwd or self.tmp, env=self.git_env, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=timeout)
        self.outputs.append((f"git {args[0]}", result.stdout + result.stderr))
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def clone_commit_push(self, name: str, files: dict[str, bytes]) -> str:
        work = self.tmp / name
        self.git("clone", "-q", f"{self.origin}/team/repo.git", str(work))
        assert (work / "README").read_text() == "hello\n"
        for rel, data in files.items():
            (work / rel).write_bytes(data)
        self.git("add", "-A", cwd=work)
        self.git("commit", "-q", "-m", f"from {name}", cwd=work)
        self.git("push", "-q", "origin", "main", cwd=work)
        pushed = self.git("rev-parse", "HEAD", cwd=work).stdout.strip()
        assert self.server.head("team/repo.git") == pushed
        return pushed

    def finish(self, shell: recipes.RecipeShell | None = None) -> str:
        """Explain (in the page's terminal when the page ran), stop the proxy, scan for the password."""
        url = f"{self.origin}/team/repo.git/info/refs?service=git-upload-pack"
        if shell is not None:
            explained = shell.run(f"credproxy explain '{url}'")
            self.outputs.append(("credproxy explain", explained.stdout + explained.stderr))
            assert explained.returncode == 0, explained.stderr
        else:
            self.cli("explain", url)
        self.proxy.stop()
        stderr = self.proxy.stderr()
        texts = [*self.outputs, ("proxy stderr (-v request log)", stderr),
                 ("saved flows (raw)", self.flows.read_bytes().decode("latin-1"))]
        with open(self.flows, "rb") as f:
            texts += [(f"saved flow {fl.request.url}", repr(fl.get_state())) for fl in mio.FlowReader(f).stream()]
        texts.append(("client .git/config and home", "".join(
            p.read_text(errors="replace") for p in self.tmp.rglob("config") if ".git" in p.parts)))
        for label, text in texts:
            found = [form for form in secret_forms(PASSWORD, USER) if form in text]
            assert found == [], f"{label} shows the password: {found}"
        return stderr

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        self.server.stop()


@pytest.fixture
def git_world(tmp_path, tls_certs):
    world = GitWorld(tmp_path, tls_certs)
    yield world
    world.stop()


GIT_LOGIN = f"credproxy auth login {ORIGIN}/ --username {USER} --password -"
GIT_PUSH = "git -C repo push origin main"


def test_git_clone_and_push_with_the_password_from_the_store(git_world, tls_certs, tmp_path):
    """docs/recipes/git.md's block, every line as written, in one terminal: the password pasted
    on stdin to `auth login`, `credproxy serve &`, `eval "$(credproxy env)"`, `git clone`, and
    `git -C repo push origin main` after the test commits a file in the clone."""
    w = git_world
    sh = recipes.RecipeShell(tmp_path, recipes.machine_env(tmp_path, tls_certs), tmp_path / "work",
                             substitutions={ORIGIN: w.origin}, serve_args=("-v", "--save-flows", str(w.flows)))

    def commit() -> None:  # the test's own step: something to push
        (sh.cwd / "repo" / "new.txt").write_text("pushed through credproxy\n")
        r = sh.run("git -C repo add -A && git -C repo -c user.name=Test -c user.email=test@example.invalid "
                   "commit -q -m 'from the recipe'")
        assert r.returncode == 0, r.stdout + r.stderr

    try:
        ran = sh.run_page("git.md", stdin={GIT_LOGIN: PASSWORD + "\n"}, before={GIT_PUSH: commit})
        w.proxy = sh.proxy
        w.outputs += [(r.command, r.output) for r in ran]
        assert (sh.cwd / "repo" / "README").read_text() == "hello\n"
        pushed = sh.run("git -C repo rev-parse HEAD").stdout.strip()
        assert pushed and w.server.head("team/repo.git") == pushed
        assert 401 not in w.server.statuses()  # authenticated up front: git never saw a challenge
        stderr = w.finish(shell=sh)
    finally:
        sh.stop()
    assert "source=store" in stderr and "git-receive-pack" in stderr


def test_git_clone_and_push_with_the_password_from_the_netrc(git_world):
    w = git_world
    (line,) = [b for b in recipes.blocks("git.md", "") if b.startswith("machine ")]
    netrc = w.tmp / "proxy-home" / ".netrc"
    netrc.parent.mkdir(parents=True, exist_ok=True)
    netrc.write_text(line.replace("git.corp.example", "pkgs.test").replace("ghp_XXXXXXXXXXXX", PASSWORD))
    netrc.chmod(0o600)
    w.start()
    w.clone_commit_push("work", {"new.txt": b"netrc\n"})
    assert "source=netrc" in w.finish()


def test_git_clone_and_push_with_gits_own_credential_helper(git_world):
    """git's `store` helper, configured for the proxy's user, holds the credential; credproxy
    asks `git credential fill` after the server's 401 and re-sends."""
    w = git_world
    creds = w.tmp / "proxy-home" / "git-credentials"
    creds.parent.mkdir(parents=True, exist_ok=True)
    from urllib.parse import quote

    creds.write_text(f"https://{USER}:{quote(PASSWORD, safe='')}@pkgs.test%3a{w.server.port}\n")
    creds.chmod(0o600)
    (w.tmp / "proxy-home" / ".gitconfig").write_text(f'[credential]\n\thelper = "store --file={creds}"\n')
    (config,) = recipes.blocks("git.md", "toml")
    w.start(config.replace("git.corp.example", "pkgs.test"))
    w.clone_commit_push("work", {"new.txt": b"helper\n"})
    stderr = w.finish()
    assert "source=git-credential" in stderr and "auth=retry" in stderr


def test_git_packs_of_tens_of_megabytes_stream_with_flat_proxy_memory(git_world):
    w = git_world
    (login,) = recipes.commands("git.md", "credproxy auth login", ORIGIN, w.origin)
    w.cli(*login[1:], stdin=PASSWORD + "\n")
    w.start()
    w.clone_commit_push("small", {"small.txt": b"x\n"})
    baseline = w.proxy.rss_peak_kb()
    size = 40 * 1024 * 1024
    w.clone_commit_push("big", {"big.bin": os.urandom(size)})  # incompressible: the pack is ~40 MB
    after_push = w.proxy.rss_peak_kb()
    w.git("clone", "-q", f"{w.origin}/team/repo.git", str(w.tmp / "big-clone"))
    assert (w.tmp / "big-clone" / "big.bin").stat().st_size == size
    growth_mb = (w.proxy.rss_peak_kb() - baseline) / 1024
    print(f"proxy RSS peak: baseline {baseline / 1024:.0f} MB, +{(after_push - baseline) / 1024:.1f} MB after "
          f"a 40 MB push, +{growth_mb:.1f} MB after the clone of it")
    assert growth_mb < 30, f"proxy peak RSS grew by {growth_mb:.0f} MB for a 40 MB pack"
    w.finish()
