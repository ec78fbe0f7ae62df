"""Every command line of docs/recipes/*.md is run as written by a test (issue 12, acceptance).

- The guard: each page with a ```sh block is in recipes.PAGE_TESTS, and that test runs the
  whole page through RecipeShell.run_page (which runs every line of every ```sh block of the
  page, in order, and fails on the first that fails). So a new page without a test fails
  here, and a new line on a page is run by its page's test.
- The runner itself, on pages written here: every line runs, in one terminal, a failing line
  fails the run, a hook for a line the page lacks fails it, and `credproxy serve` in any form
  but `credproxy serve &` is refused rather than guessed.
- docs/recipes/README.md's own block (`credproxy serve &`, `eval "$(credproxy env)"`), run
  literally: afterwards this shell's curl reaches a registry through the proxy and gets in
  with the stored credential.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

from credproxy.credentials.model import secret_forms
from tests.helpers import recipes
from tests.helpers.clients import home_env
from tests.helpers.registries import TokenRegistry

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def untested_pages(root: Path = recipes.RECIPES) -> list[str]:
    """Pages with ```sh lines that no test in PAGE_TESTS runs in full."""
    missing = []
    for page in recipes.pages_with_commands(root):
        nodeid = recipes.PAGE_TESTS.get(page)
        if nodeid is None:
            missing.append(page)
            continue
        path, _, name = nodeid.partition("::")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        source = inspect.getsource(getattr(module, name))
        if not re.search(r"run_page\(\s*" + re.escape(repr(page)), source.replace('"', "'")):
            missing.append(page)
    return missing


def test_every_recipe_page_with_commands_is_run_in_full_by_its_test():
    assert recipes.pages_with_commands() == sorted(recipes.PAGE_TESTS)
    assert untested_pages() == []
    for page, nodeid in recipes.PAGE_TESTS.items():
        # the page says which test runs it
        assert nodeid.partition("::")[2] in (recipes.RECIPES / page).read_text(), (page, nodeid)


def test_a_new_page_or_a_page_whose_test_does_not_run_it_is_found(tmp_path):
    for page in recipes.pages_with_commands():
        (tmp_path / page).write_text((recipes.RECIPES / page).read_text())
    (tmp_path / "new-registry.md").write_text("# New\n\n```sh\npip install --index-url https://x/ y\n```\n")
    (tmp_path / "notes.md").write_text("# No commands\n\n```toml\nx = 1\n```\n")
    assert untested_pages(tmp_path) == ["new-registry.md"]


def _shell(tmp_path: Path) -> recipes.RecipeShell:
    env = home_env(tmp_path / "home")
    env["PATH"] = "/usr/bin:/bin"
    return recipes.RecipeShell(tmp_path, env, tmp_path / "work", substitutions={"https://real.example": "LOCAL"})


def test_run_page_runs_every_line_in_one_terminal(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n```sh\nmkdir sub && cd sub   # a comment\n# a comment line\n\n"
                    "export SEEN=https://real.example/x\n```\n\nmore\n\n```toml\nnot = 'run'\n```\n\n"
                    "```sh\necho \"$SEEN\" \\\n  two > out\ncat out\n```\n")
    sh = _shell(tmp_path)
    before, after = [], []
    ran = sh.run_page("page.md", root=tmp_path, before={"cat out": lambda: before.append(sh.cwd.name)},
                      after={"cat out": lambda r: after.append(r.output)})
    assert [r.line.text for r in ran] == ["mkdir sub && cd sub   # a comment", "export SEEN=https://real.example/x",
                                          'echo "$SEEN"    two > out', "cat out"]
    assert [r.line.block for r in ran] == [0, 0, 1, 1]
    assert (tmp_path / "work" / "sub" / "out").read_text() == "LOCAL/x two\n"
    assert before == ["sub"] and after == ["LOCAL/x two\n"]


def test_run_page_fails_on_a_failing_line_and_never_runs_the_rest(tmp_path):
    (tmp_path / "page.md").write_text("```sh\ntrue\nls /no/such/dir\ntouch after\n```\n")
    with pytest.raises(AssertionError, match="ls /no/such/dir` failed"):
        _shell(tmp_path).run_page("page.md", root=tmp_path)
    assert not (tmp_path / "work" / "after").exists()


def test_run_page_refuses_hooks_for_lines_the_page_lacks_and_serve_forms_it_cannot_run(tmp_path):
    (tmp_path / "page.md").write_text("```sh\ntrue\n```\n")
    with pytest.raises(AssertionError, match="does not have"):
        _shell(tmp_path).run_page("page.md", root=tmp_path, before={"false": lambda: None})
    (tmp_path / "serve.md").write_text("```sh\ncredproxy serve --port 1234 &\n```\n")
    with pytest.raises(AssertionError, match="only `credproxy serve &`"):
        _shell(tmp_path).run_page("serve.md", root=tmp_path)


TOKEN = "readme-T0ken/+=:@%"


def test_readme_serve_and_env(tmp_path, tls_certs):
    """docs/recipes/README.md's block as written; then curl, in the same terminal, gets into a
    registry that requires the token, which only the store (not curl) has."""
    reg = TokenRegistry.start(tls_certs, base="/simple-reg", username="__token__", token=TOKEN)
    sh = recipes.RecipeShell(tmp_path, recipes.machine_env(tmp_path, tls_certs), tmp_path / "home",
                             substitutions={})
    try:
        url = f"https://pkgs.test:{reg.port}/simple-reg/"
        login = sh.run_line(f"credproxy auth login {url} --token -", stdin=TOKEN + "\n")  # the test's own step
        assert login.returncode == 0, login.stderr
        ran = sh.run_page("README.md")
        env = sh.env()
        assert env["HTTPS_PROXY"] == sh.proxy.url and env["CREDPROXY_PORT"] == str(sh.proxy.port)
        got = sh.run_line(f"curl -q -sS --max-time 30 -o /dev/null -w '%{{http_code}}' {url}x/")
        assert got.stdout == "404", got.stdout + got.stderr  # past the 401: the registry has no /x/
        assert [(s.status, s.who) for s in reg.seen] == [(404, "__token__")]
        sh.stop()
        for text in [r.output for r in ran] + [login.stdout + login.stderr, sh.proxy.stderr()]:
            assert not [f for f in secret_forms(TOKEN, "__token__") if f in text]
    finally:
        sh.stop()
        reg.stop()
