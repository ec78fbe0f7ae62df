"""Publishing through credproxy (issue 12 point 1), with the real twine and `uv publish`.

The upload server is pypiserver with uploads enabled (`-a download,list,update`: an upload
needs a user from its htpasswd). The index is configured at `pkgs.test`, its `publish-url`
at `other.test` (the same server under another name): the upload host is intercepted only
because of the publish-url, and the index's credentials cover it. The clients carry no
credential of their own; the commands are the ones docs/recipes/publishing.md shows.
"""

from __future__ import annotations

import base64
import shlex
import shutil
import sys
from pathlib import Path

import pytest
from mitmproxy import io as mio

from tests.helpers import recipes
from tests.helpers.clients import UV, run
from tests.helpers.proxy import credproxy_cmd
from tests.helpers.wheels import make_wheel

from .observe_setup import leaks

pytestmark = pytest.mark.e2e

USER = "alice"
SECRET = "pub-S3cret:Pa55/%w0rd"
TOKEN = "pypi-TOKEN-Zq8uX2kLm4"


def _config(tmp_path, index_port: int, publish_port: int | None = None, publish_host: str = "other.test") -> None:
    publish_port = publish_port or index_port
    (tmp_path / "credproxy-config.toml").write_text(
        "[[index]]\n"
        'name = "corp"\n'
        f'url = "https://pkgs.test:{index_port}/simple/"\n'
        f'publish-url = "https://{publish_host}:{publish_port}/"\n')


# The commands of docs/recipes/publishing.md, as written there (test_the_recipe_shows_these).
UV_PUBLISH = "uv publish --trusted-publishing never --publish-url {url} --username {user} {files}"
TWINE_UPLOAD = "twine upload --non-interactive --repository-url {url} --username {user} --password '' {files}"
RECIPE = Path(__file__).resolve().parents[2] / "docs" / "recipes" / "publishing.md"


def _argv(template: str, url: str, user: str, wheel) -> list[str]:
    argv = shlex.split(template.format(url=url, user=user, files=shlex.quote(str(wheel))))
    if argv[0] == "uv":
        return [str(UV), *argv[1:]]
    return [sys.executable, "-m", "twine", *argv[1:]]


def _twine(wheel, url: str, username: str, env) -> object:
    return run(_argv(TWINE_UPLOAD, url, username, wheel), env=env, timeout=120)


def _uv_publish(wheel, url: str, username: str, env, timeout: float = 120) -> object:
    return run(_argv(UV_PUBLISH, url, username, wheel), env=env, timeout=timeout)


@pytest.mark.parametrize("template", [UV_PUBLISH, TWINE_UPLOAD])
@pytest.mark.parametrize("user", ["alice", "__token__"])
def test_the_recipe_shows_these_commands(template, user):
    line = template.format(url="https://pkgs.corp.example/upload/", user=user, files="dist/*")
    assert line in RECIPE.read_text().splitlines()


def _scan(label: str, text: str, secret: str, user: str) -> None:
    found = leaks(text, secret, user)
    assert found == [], f"{label} contains {found}"


def _scan_flows(path, secret: str, user: str) -> None:
    raw = path.read_bytes()
    for form in leaks(raw.decode("latin-1"), secret, user):
        pytest.fail(f"saved flows contain {form}")
    with open(path, "rb") as f:
        for flow in mio.FlowReader(f).stream():
            text = repr(flow.get_state())
            _scan("a saved flow", text, secret, user)


def test_twine_and_uv_publish_with_the_index_credentials(tmp_path, index_factory, credproxy_factory,
                                                         proxied_env):
    index = index_factory(username=USER, password=SECRET, wheels=[])
    _config(tmp_path, index.port)
    flows = tmp_path / "flows.mitm"
    proxy = credproxy_factory("-v", "--save-flows", str(flows), extra_env={
        "UV_INDEX_CORP_USERNAME": USER, "UV_INDEX_CORP_PASSWORD": SECRET})
    env = proxied_env(proxy)
    publish_url = f"https://other.test:{index.port}/"
    dist = tmp_path / "dist"

    twined = _twine(make_wheel(dist, "twined-pkg", "1.0"), publish_url, USER, env)
    assert twined.returncode == 0, twined.stdout + twined.stderr
    uved = _uv_publish(make_wheel(dist, "uved-pkg", "1.0"), publish_url, USER, env)
    assert uved.returncode == 0, uved.stdout + uved.stderr

    assert sorted(p.name for p in index.packages_dir.iterdir()) == [
        "twined_pkg-1.0-py3-none-any.whl", "uved_pkg-1.0-py3-none-any.whl"]
    uploads = [r for r in index.requests() if r.method == "POST"]
    # authenticated up front: one POST each, no 401 first
    assert [(r.status, r.auth) for r in uploads] == [(200, True), (200, True)], index.requests()
    # and installable from the index with the same credentials, through the proxy
    got = run([UV, "pip", "install", "--target", str(tmp_path / "t"), "--index-url", index.url, "uved-pkg"],
              env=env, timeout=120)
    assert got.returncode == 0, got.stderr

    explained = run(credproxy_cmd("explain", publish_url), env=proxy_env_of(tmp_path, proxy), timeout=60)
    assert explained.returncode == 0, explained.stderr
    assert "decision: inject from env:UV_INDEX_CORP" in explained.stdout, explained.stdout
    proxy.stop()
    log = proxy.stderr()
    assert f"POST {publish_url} 200 source=env:UV_INDEX_CORP auth=preemptive" in log, log
    for label, text in (("proxy log", log + proxy.stdout()), ("twine", twined.stdout + twined.stderr),
                        ("uv publish", uved.stdout + uved.stderr), ("explain", explained.stdout + explained.stderr)):
        _scan(label, text, SECRET, USER)
    _scan_flows(flows, SECRET, USER)


def proxy_env_of(tmp_path, proxy) -> dict[str, str]:
    """The environment the proxy was started with (credproxy_factory's default), for its CLI."""
    from tests.helpers.proxy import proxy_env

    env = proxy_env(tmp_path, extra={"UV_INDEX_CORP_USERNAME": USER, "UV_INDEX_CORP_PASSWORD": SECRET,
                                     "UV_PUBLISH_TOKEN": None})
    env["CREDPROXY_DATA_DIR"] = str(proxy.data_dir)
    return env


def test_uv_publish_token_is_sent_as_token_user_to_the_publish_url_only(
        tmp_path, index_factory, credproxy_factory, proxied_env):
    index = index_factory(username="__token__", password=TOKEN, wheels=[])
    _config(tmp_path, index.port)
    flows = tmp_path / "flows.mitm"
    proxy = credproxy_factory("-v", "--save-flows", str(flows), extra_env={"UV_PUBLISH_TOKEN": TOKEN})
    env = proxied_env(proxy)
    publish_url = f"https://other.test:{index.port}/"
    dist = tmp_path / "dist"

    uved = _uv_publish(make_wheel(dist, "tok-pkg", "1.0"), publish_url, "__token__", env)
    assert uved.returncode == 0, uved.stdout + uved.stderr
    twined = _twine(make_wheel(dist, "tok-twine", "1.0"), publish_url, "__token__", env)
    assert twined.returncode == 0, twined.stdout + twined.stderr
    assert sorted(p.name for p in index.packages_dir.iterdir()) == [
        "tok_pkg-1.0-py3-none-any.whl", "tok_twine-1.0-py3-none-any.whl"]

    # a download from the same server is not an upload: the publish token is not sent there
    index.reset()
    listing = run(["curl", "-q", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30",
                   index.url_for("other.test", path="/simple/")], env=env, timeout=40)
    assert listing.stdout == "401", listing.stdout + listing.stderr
    assert [(r.status, r.auth) for r in index.requests()] == [(401, False)]

    proxy.stop()
    log = proxy.stderr()
    assert f"POST {publish_url} 200 source=env:UV_PUBLISH_TOKEN auth=preemptive" in log, log
    for label, text in (("proxy log", log + proxy.stdout()), ("uv publish", uved.stdout + uved.stderr),
                        ("twine", twined.stdout + twined.stderr)):
        _scan(label, text, TOKEN, "__token__")
    _scan_flows(flows, TOKEN, "__token__")


def test_empty_username_jfrog_style(tmp_path, echo_factory, credproxy_factory, proxied_env):
    """UV_PUBLISH_USERNAME="" with a password: Basic `:password`, as Artifactory expects. uv
    needs some username to send at all; credproxy sends the configured (empty) one."""
    echo = echo_factory(host="other.test", credentials=("", TOKEN))
    _config(tmp_path, echo.port, publish_host="other.test")
    proxy = credproxy_factory("-v", extra_env={"UV_PUBLISH_USERNAME": "", "UV_PUBLISH_PASSWORD": TOKEN})
    env = proxied_env(proxy)
    url = f"https://other.test:{echo.port}/"
    uved = _uv_publish(make_wheel(tmp_path / "dist", "jfrog-pkg", "1.0"), url, "token", env)
    assert uved.returncode == 0, uved.stdout + uved.stderr
    assert [(r.method, r.status, r.authorization) for r in echo.requests] == [
        ("POST", 200, "Basic " + base64.b64encode(f":{TOKEN}".encode()).decode())]
    proxy.stop()
    assert f"POST {url} 200 source=env:UV_PUBLISH_USERNAME/PASSWORD auth=preemptive" in proxy.stderr()
    _scan("proxy log", proxy.stderr() + proxy.stdout(), TOKEN, "")
    _scan("uv publish", uved.stdout + uved.stderr, TOKEN, "")


def test_large_upload_streams_with_flat_memory(tmp_path, index_factory, credproxy_factory, proxied_env):
    """A ~100 MB upload, authenticated up front, passes with the proxy's peak RSS growing by
    far less than the upload (no copy kept for a re-send, nothing buffered)."""
    index = index_factory(username=USER, password=SECRET, wheels=[])
    _config(tmp_path, index.port)
    proxy = credproxy_factory(extra_env={"UV_INDEX_CORP_USERNAME": USER, "UV_INDEX_CORP_PASSWORD": SECRET})
    env = proxied_env(proxy)
    wheel = make_wheel(tmp_path / "dist", "big-pkg", "1.0", payload_bytes=100 << 20)
    # warm up the proxy's TLS and code paths, then measure what the big upload adds
    warm = _uv_publish(make_wheel(tmp_path / "dist", "warm-pkg", "1.0"), f"https://other.test:{index.port}/", USER, env)
    assert warm.returncode == 0, warm.stderr
    before = proxy.rss_peak_kb()
    uved = _uv_publish(wheel, f"https://other.test:{index.port}/", USER, env, timeout=300)
    assert uved.returncode == 0, uved.stdout + uved.stderr
    grown_kb = proxy.rss_peak_kb() - before
    assert (index.packages_dir / wheel.name).stat().st_size == wheel.stat().st_size
    uploads = [r for r in index.requests() if r.method == "POST"]
    assert [(r.status, r.auth) for r in uploads] == [(200, True), (200, True)]
    print(f"peak RSS before {before} kB, grew by {grown_kb} kB for a {wheel.stat().st_size >> 20} MiB upload")
    assert grown_kb < 12 * 1024, f"the proxy's peak RSS grew by {grown_kb} kB during a 100 MiB upload"



CORP = "https://pkgs.corp.example"
UPLOAD = f"{CORP}/upload/"


def test_the_publishing_page_as_written(tmp_path, tls_certs, index_factory):
    """docs/recipes/publishing.md, every ```sh line as written, in one terminal with the page's
    toml block as the config. Stand-ins: pypiserver with uploads on, which takes them at its
    root, so the page's publish URL `https://pkgs.corp.example/upload/` becomes
    `https://other.test:PORT/` and the index `https://pkgs.corp.example/...` becomes
    `https://pkgs.test:PORT/...` (one server, two names: the upload host is intercepted only
    because of `publish-url`). The test's own steps: a fresh wheel in dist/ before each upload
    (the page shows alternatives; a registry refuses the same file twice), the index's
    credential in the proxy's environment only (UV_INDEX_CORP_*, the page's source 2), and for
    the second block a restart of the proxy on its port with UV_PUBLISH_TOKEN, against a
    server whose user is `__token__`."""
    first = index_factory(username=USER, password=SECRET, wheels=[])
    second = index_factory(username="__token__", password=TOKEN, wheels=[])
    flows = tmp_path / "flows.mitm"
    env = recipes.machine_env(tmp_path, tls_certs)
    sh = recipes.RecipeShell(tmp_path, env, tmp_path / "project", substitutions={},
                             serve_args=("-v", "--save-flows", str(flows)))
    (toml,) = recipes.blocks("publishing.md", "toml")

    def point_at(index) -> None:
        sh.substitutions = {UPLOAD: f"https://other.test:{index.port}/", CORP: f"https://pkgs.test:{index.port}"}
        recipes.config_file(env).write_text(sh.substitute(toml))

    point_at(first)
    sh.serve_env = {"UV_INDEX_CORP_USERNAME": USER, "UV_INDEX_CORP_PASSWORD": SECRET}
    uploaded: list[tuple[object, str]] = []

    def fresh_dist(index, name: str):
        def make() -> None:
            shutil.rmtree(sh.cwd / "dist", ignore_errors=True)
            make_wheel(sh.cwd / "dist", name, "1.0")
            uploaded.append((index, name))
        return make

    def restart_with_the_publish_token() -> None:
        port = sh.proxy.port
        sh.proxy.stop()
        point_at(second)
        sh.serve_env = {"UV_PUBLISH_TOKEN": TOKEN}
        sh.serve(port=port)  # the same port: the terminal's HTTPS_PROXY stays right

    lines = [line.text for line in recipes.sh_lines("publishing.md")]
    uploads = [line for line in lines if line.startswith(("uv publish", "twine upload"))]
    assert len(uploads) == 4
    names = ["uv-alice", "twine-alice", "uv-token", "twine-token"]
    before = {line: fresh_dist(first if "alice" in line else second, name) for line, name in zip(uploads, names)}
    first_token_line = uploads[2]
    make_token_dist = before[first_token_line]
    before[first_token_line] = lambda: (restart_with_the_publish_token(), make_token_dist())
    try:
        ran = sh.run_page("publishing.md", before=before)
        for index, name in uploaded:
            assert (index.packages_dir / f"{name.replace('-', '_')}-1.0-py3-none-any.whl").exists(), name
        for index in (first, second):
            posts = [(r.status, r.auth) for r in index.requests() if r.method == "POST"]
            assert posts == [(200, True), (200, True)], index.requests()  # authenticated up front
        sh.stop()
        log_alice, log_token = sh.proxies[0].stderr(), sh.proxies[1].stderr()
    finally:
        sh.stop()
    assert log_alice.count(f"POST https://other.test:{first.port}/ 200 source=env:UV_INDEX_CORP auth=preemptive") == 2
    assert log_token.count(f"POST https://other.test:{second.port}/ 200 source=env:UV_PUBLISH_TOKEN "
                           "auth=preemptive") == 2
    texts = [(r.command, r.output) for r in ran] + [("proxy log", log_alice + log_token)]
    for label, text in texts:
        _scan(label, text, SECRET, USER)
        _scan(label, text, TOKEN, "__token__")
    _scan_flows(flows, TOKEN, "__token__")
