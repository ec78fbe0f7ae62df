"""The commands and configuration of docs/recipes/*.md, run as written by the tests.

A recipe names the real service (`https://pkgs.dev.azure.com/...`); a test swaps that origin
for its local stand-in's (`https://pkgs.test:PORT`) and runs exactly the rest.

    sh = RecipeShell(tmp_path, machine_env(tmp_path, tls_certs), cwd,
                     substitutions={"https://pkgs.dev.azure.com": "https://pkgs.test:PORT"},
                     serve_args=("-v", "--save-flows", str(flows)))
    sh.run_page("azure-artifacts.md", stdin={LOGIN_LINE: pat + "\\n"}, before={...}, after={...})

`run_page` runs every line of every ```sh block of the page, in order, in one terminal
(tests/helpers/shell.py: exports and the directory carry over), and fails on the first line
that exits non-zero. What the test may change, and nothing else:

- `substitutions`: the real service's origin -> the stand-in's origin (longest first); the
  substituted text is what runs, the doc line is what is recorded;
- `credproxy serve &` (alone on its line, a comment allowed) starts the real `credproxy serve`
  in the background with the terminal's environment and directory, as the shell would, plus
  `--port 0` and the test's `serve_args` (-v, --save-flows: to observe it); the port it took
  is exported as CREDPROXY_PORT, which `credproxy env` reads. It is stopped by pid in `stop()`;
- `stdin`: what the user types or pastes for a line (`--password -`, `--token -`), keyed by the
  doc line as written; a secret is never edited into a command;
- `before` / `after`: the test's own actions around a doc line (rotate a token, make a commit),
  keyed by the doc line as written. A key that matches no line fails the run, so a hook never
  silently stops firing when the page changes.

A line that needs a program this machine cannot have for real (`aws`, `gcloud`) runs as
written against a stand-in program the test puts on PATH; the test says so.

Every page with a ```sh block is listed in PAGE_TESTS with the test that runs all of it
(tests/e2e/test_recipe_pages.py checks this, so a new page without a test fails; a new line
in a listed page is run by that page's test)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from tests.helpers.clients import REAL_PYTHON, UV, VENV_BIN, home_env
from tests.helpers.proxy import Proxy, start_credproxy
from tests.helpers.shell import Shell

RECIPES = Path(__file__).resolve().parents[2] / "docs" / "recipes"
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
# `credproxy serve &` as a page writes it; any other `credproxy serve` line cannot be run here
SERVE = re.compile(r"credproxy serve\s*&\s*(#.*)?")

# page -> the test that runs all of its ```sh lines through RecipeShell.run_page
PAGE_TESTS = {
    "README.md": "tests/e2e/test_recipe_pages.py::test_readme_serve_and_env",
    "aws-codeartifact.md": "tests/e2e/test_cloud_registries.py::test_aws_codeartifact_token_command",
    "azure-artifacts.md": "tests/e2e/test_cloud_registries.py::test_azure_artifacts_vss_session_token_from_a_keyring",
    "git.md": "tests/e2e/test_git.py::test_git_clone_and_push_with_the_password_from_the_store",
    "gitlab-github.md": "tests/e2e/test_cloud_registries.py::test_gitlab_token_in_the_store",
    "google-artifact-registry.md":
        "tests/e2e/test_cloud_registries.py::test_google_artifact_registry_oauth2accesstoken",
    "jfrog-artifactory.md":
        "tests/e2e/test_cloud_registries.py::test_jfrog_empty_username_from_the_environment_says_restart_after_rotation",
    "npm.md": "tests/e2e/test_npm.py::test_npm_install_of_a_scoped_package_with_a_bearer_token_from_the_store",
    "publishing.md": "tests/e2e/test_publish.py::test_the_publishing_page_as_written",
}


def blocks(page: str, lang: str, root: Path = RECIPES) -> list[str]:
    text = (root / page).read_text()
    return [body for kind, body in _BLOCK.findall(text) if kind == lang]


def config(page: str, origin: str, standin_origin: str) -> str:
    """The page's first ```toml block, pointed at the stand-in."""
    (first, *_) = blocks(page, "toml")
    assert origin in first, f"{page}: the toml block does not name {origin}"
    return first.replace(origin, standin_origin)


def commands(page: str, prefix: str, origin: str, standin_origin: str) -> list[list[str]]:
    """argv of every ```sh line starting with `prefix` (e.g. `credproxy auth login`), without
    comments, pointed at the stand-in."""
    found = []
    for body in blocks(page, "sh"):
        for line in body.splitlines():
            if line.startswith(prefix):
                found.append(shlex.split(line.replace(origin, standin_origin), comments=True))
    assert found, f"{page}: no `{prefix}` command"
    return found


@dataclass(frozen=True)
class Line:
    page: str
    block: int  # index among the page's ```sh blocks
    text: str  # as written (continuation lines joined)


def sh_lines(page: str, root: Path = RECIPES) -> list[Line]:
    """Every command line of the page's ```sh blocks (blank and comment-only lines skipped)."""
    found: list[Line] = []
    for b, body in enumerate(blocks(page, "sh", root)):
        pending = ""
        for raw in body.splitlines():
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            text, pending = pending + raw, ""
            if text.strip() and not text.strip().startswith("#"):
                found.append(Line(page, b, text.strip()))
        assert not pending, f"{page}: a ```sh block ends with a continuation line"
    return found


def pages_with_commands(root: Path = RECIPES) -> list[str]:
    return sorted(p.name for p in root.glob("*.md") if sh_lines(p.name, root))


def machine_env(tmp: Path, tls_certs, *, bins: Sequence[os.PathLike | str] = ()) -> dict[str, str]:
    """A user's machine for a page: HOME under tmp/home (nothing of this machine's pip, uv,
    git, npm or credproxy configuration), PATH with ~/.local/bin, `bins` (stand-in programs),
    credproxy, uv, twine and python3 from this venv, then /usr/bin:/bin (git, curl, node);
    a CA bundle that trusts the stand-ins' CA (SSL_CERT_FILE, as a corporate machine has);
    the stand-ins' names resolved by the proxy only (CREDPROXY_TEST_RESOLVE); no prompts and
    no calls home (pip's version check, npm's update notifier and audit)."""
    home = tmp / "home"
    env = home_env(home)
    tools = tmp / "tools"
    tools.mkdir(exist_ok=True)
    for name, target in (("credproxy", VENV_BIN / "credproxy"), ("uv", UV), ("twine", VENV_BIN / "twine"),
                         ("python3", REAL_PYTHON)):
        link = tools / name
        if not link.exists():
            link.symlink_to(target)
    env.update({
        "PATH": ":".join([str(home / ".local/bin"), *map(str, bins), str(tools), "/usr/bin", "/bin"]),
        "CREDPROXY_TEST_RESOLVE": "pkgs.test=127.0.0.1,other.test=127.0.0.1",
        "SSL_CERT_FILE": str(tls_certs.ca_plus_certifi_pem),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "npm_config_update_notifier": "false",
        "npm_config_audit": "false",
        "npm_config_fund": "false",
    })
    return env


def config_file(env: Mapping[str, str]) -> Path:
    """Where `credproxy serve` reads its configuration on this machine (the pages say
    `~/.config/credproxy/config.toml`)."""
    path = Path(env["XDG_CONFIG_HOME"]) / "credproxy" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Ran:
    line: Line
    command: str  # what ran: the line after substitution
    output: str  # stdout + stderr (for a `credproxy serve &` line: its first stdout line)
    returncode: int


class RecipeShell(Shell):
    """A terminal that runs a recipe page's lines (see the module docstring)."""

    def __init__(self, tmp: Path, env: dict[str, str], cwd: Path, *, substitutions: Mapping[str, str],
                 serve_args: Sequence[str] = ("-v",)):
        cwd.mkdir(parents=True, exist_ok=True)
        super().__init__(tmp, env, cwd)
        self.tmp = tmp
        self.substitutions = dict(substitutions)
        self.serve_args = tuple(serve_args)
        self.proxies: list[Proxy] = []
        self.ran: list[Ran] = []
        # what only the proxy's environment has (a credential the page says `credproxy serve`
        # reads from its environment), so no client in this terminal can send it itself
        self.serve_env: dict[str, str] = {}

    @property
    def proxy(self) -> Proxy | None:
        return self.proxies[-1] if self.proxies else None

    def substitute(self, text: str) -> str:
        for real in sorted(self.substitutions, key=len, reverse=True):
            text = text.replace(real, self.substitutions[real])
        return text

    def serve(self, *, port: int | None = None) -> Proxy:
        """`credproxy serve &`: the real proxy with this terminal's environment (plus
        `serve_env`) and directory, on a free port (or `port`: a restart) exported as
        CREDPROXY_PORT. Its state is where `credproxy env` looks (the platform's data dir)."""
        env = {**self.env(), **self.serve_env}
        data_dir = Path(env.get("CREDPROXY_DATA_DIR") or Path(env["XDG_DATA_HOME"]) / "credproxy")
        args = (*self.serve_args, *(("--port", str(port)) if port is not None else ()))
        proxy = start_credproxy(self.tmp, *args, env=env, data_dir=data_dir, cwd=self.cwd,
                                name=f"credproxy{len(self.proxies)}")
        self.proxies.append(proxy)
        self.export("CREDPROXY_PORT", str(proxy.port))
        return proxy

    def stop(self) -> None:
        """Stop every proxy this terminal started (by pid)."""
        for proxy in self.proxies:
            proxy.stop()

    def run_line(self, text: str, *, stdin: str | None = None) -> subprocess.CompletedProcess:
        """One command, substituted, in this terminal (the test's own or a page's)."""
        return self.run(self.substitute(text), stdin=stdin)

    def run_page(self, page: str, *, stdin: Mapping[str, str] | None = None,
                 before: Mapping[str, Callable[[], object]] | None = None,
                 after: Mapping[str, Callable[[Ran], object]] | None = None,
                 root: Path = RECIPES) -> list[Ran]:
        """Run every ```sh line of `page`, in order; each must succeed. Returns what ran."""
        lines = sh_lines(page, root)
        assert lines, f"{page} has no ```sh line"
        texts = [line.text for line in lines]
        for name, keys in (("stdin", stdin), ("before", before), ("after", after)):
            unknown = [k for k in (keys or {}) if k not in texts]
            assert not unknown, f"{page}: {name} names lines the page does not have: {unknown}"
        done: list[Ran] = []
        for line in lines:
            if before and line.text in before:
                before[line.text]()
            command = self.substitute(line.text)
            if command.startswith("credproxy serve"):
                assert SERVE.fullmatch(command), (
                    f"{page}: `{line.text}`: only `credproxy serve &` can be run by the tests")
                proxy = self.serve()
                ran = Ran(line, command, proxy.stdout().splitlines()[0], 0)
            else:
                result = self.run(command, stdin=(stdin or {}).get(line.text))
                ran = Ran(line, command, result.stdout + result.stderr, result.returncode)
            done.append(ran)
            self.ran.append(ran)
            assert ran.returncode == 0, f"{page}: `{command}` failed ({ran.returncode}):\n{ran.output}"
            if after and line.text in after:
                after[line.text](ran)
        assert [r.line for r in done] == lines  # every line of the page ran
        return done
