"""Issue 9 finding 3: a project folder must not steer credentials.

The user's own uv config (~/.config/uv/uv.toml) defines the index `corp`; its password is in
UV_INDEX_CORP_PASSWORD. A repository's pyproject.toml redefines `corp` to an attacker's URL (a
recording server that answers 401 to get credentials) and adds allow-insecure-host for the
real index's host. Before the fix, `credproxy serve` started inside that repository imported
it ahead of the user's uv config: the attacker received UV_INDEX_CORP_*, and certificates of
the real index's host were no longer checked.

Real `credproxy serve`, real curl, real servers on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from credproxy.credentials.model import secret_forms
from tests.e2e.conftest import credproxy_factory, echo_factory, proxied_env, tls_certs  # noqa: F401 (fixtures)
from tests.helpers.clients import curl

USER, SECRET = "corp-user", "corp-S3cret:pw"

pytestmark = pytest.mark.e2e


@pytest.fixture
def world(tmp_path, echo_factory):  # noqa: F811
    real = echo_factory(host="pkgs.test", credentials=(USER, SECRET))
    attacker = echo_factory(host="other.test", credentials=("nobody", "nothing"))
    # a server on the real index's host with a certificate nobody trusts (an interceptor)
    impostor = echo_factory(host="pkgs.test", untrusted=True)
    user_uv = tmp_path / "proxy-home" / ".config" / "uv" / "uv.toml"
    user_uv.parent.mkdir(parents=True, exist_ok=True)
    user_uv.write_text(f'[[index]]\nname = "corp"\nurl = "{real.url_for(path="/simple/")}"\n')
    # intercept every port of pkgs.test, so the impostor's certificate is checked by the proxy
    (tmp_path / "credproxy-config.toml").write_text('intercept-hosts = ["pkgs.test"]\n')
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "innocent"\nversion = "1.0"\n\n'
        f'[[tool.uv.index]]\nname = "corp"\nurl = "{attacker.url_for(path="/simple/")}"\n\n'
        '[tool.uv]\nallow-insecure-host = ["pkgs.test"]\n')
    return real, attacker, impostor, repo


def _get(env, url: str) -> tuple[int, str]:
    out = curl("-w", "\n%{http_code}", url, env=env)
    body, _, status = out.stdout.rpartition("\n")
    return int(status or 0), body + out.stderr


def _check(proxy, env, real, attacker, impostor) -> None:
    status, _ = _get(env, attacker.url_for(path="/simple/pkg/"))
    assert attacker.requests and all(r.authorization is None for r in attacker.requests), \
        "the attacker got a credential"

    status, body = _get(env, impostor.url_for(path="/simple/pkg/"))
    assert impostor.requests == [], "the proxy talked to a pkgs.test it could not verify"
    assert status == 502 and "unknown issuer" in body, body

    status, body = _get(env, real.url_for(path="/simple/pkg/"))
    assert status == 200, body  # the user's corp still works, with the user's credentials

    proxy.stop()
    log = proxy.stderr() + proxy.stdout()
    for form in secret_forms(SECRET, USER):
        assert form not in log


def test_serve_in_a_project_directory_does_not_import_it(tmp_path, world, credproxy_factory, proxied_env):  # noqa: F811
    real, attacker, impostor, repo = world
    proxy = credproxy_factory(extra_env={"UV_INDEX_CORP_USERNAME": USER, "UV_INDEX_CORP_PASSWORD": SECRET},
                              cwd=repo)
    _check(proxy, proxied_env(proxy), real, attacker, impostor)
    assert "repo" not in proxy.stderr()  # nothing from the project, not even a warning


def test_project_flag_refuses_to_rebind_corp_with_a_warning(tmp_path, world, credproxy_factory, proxied_env):  # noqa: F811
    real, attacker, impostor, repo = world
    proxy = credproxy_factory("--project", str(repo),
                              extra_env={"UV_INDEX_CORP_USERNAME": USER, "UV_INDEX_CORP_PASSWORD": SECRET})
    env = proxied_env(proxy)
    # the project's allow-insecure-host is applied, with a warning naming it
    stderr = proxy.stderr()
    assert f'{repo / "pyproject.toml"}: ignored index "corp"' in stderr, stderr
    assert "a project cannot rebind an index name" in stderr
    assert 'adds allow-insecure-host "pkgs.test"' in stderr

    status, body = _get(env, real.url_for(path="/simple/pkg/"))
    assert status == 200, body
    status, _ = _get(env, attacker.url_for(path="/simple/pkg/"))
    assert attacker.requests and all(r.authorization is None for r in attacker.requests)
    proxy.stop()
    for form in secret_forms(SECRET, USER):
        assert form not in proxy.stderr() + proxy.stdout()


def test_project_flag_adds_a_new_index_and_says_so(tmp_path, echo_factory, credproxy_factory, proxied_env):  # noqa: F811
    """The opt-in works: a project's own index `team` gets UV_INDEX_TEAM_*, and the start-up log
    names it (URL without its userinfo)."""
    team = echo_factory(host="mirror.test", credentials=("team-user", "team-S3cret"))
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "uv.toml").write_text(
        f'[[index]]\nname = "team"\nurl = "{team.url_for(path="/simple/").replace("https://", "https://tok:URLSECRET@")}"\n')
    proxy = credproxy_factory("--project", str(repo / "."),
                              extra_env={"UV_INDEX_TEAM_USERNAME": "team-user", "UV_INDEX_TEAM_PASSWORD": "team-S3cret"})
    status, body = _get(proxied_env(proxy), team.url_for(path="/simple/pkg/"))
    assert status == 200, body
    assert json.loads(body.splitlines()[0])["authorization"] is True
    stderr = proxy.stderr()
    assert f'project {repo / "uv.toml"}: added index "team" {team.url_for(path="/simple/")}' in stderr, stderr
    assert "URLSECRET" not in stderr
