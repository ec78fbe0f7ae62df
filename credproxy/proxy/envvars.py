"""The variables `credproxy env` prints and `credproxy run` sets (design.md "Commands").

Every CA variable names the same combined bundle (public roots + proxy CA + configured
upstream CA): several of them replace a client's default roots (mitmproxy-notes.md §7).

NO_PROXY is merged, not replaced: the user's entries stay, loopback is added, and an entry
that would send a registry credproxy knows about (an index, a store entry, a netrc machine)
around the proxy is left out, loopback included. `env` remembers every variable it replaces
as `CREDPROXY_PREVIOUS_<VAR>`; `env --unset` puts those back."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

SHELLS = ("bash", "zsh", "fish", "powershell")

PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")
NO_PROXY_VARS = ("NO_PROXY", "no_proxy")
CA_VARS = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PIP_CERT",
    "GIT_SSL_CAINFO",
    "NODE_EXTRA_CA_CERTS",
    "NPM_CONFIG_CAFILE",
)
ALL_VARS = PROXY_VARS + NO_PROXY_VARS + CA_VARS
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
LOOPBACK = ",".join(LOOPBACK_HOSTS)
PREVIOUS_PREFIX = "CREDPROXY_PREVIOUS_"
# Set by `credproxy env`: the variables above hold its values now, so a second `eval` must not
# remember them as the user's own.
ACTIVE = "CREDPROXY_ENV_ACTIVE"


def url_host(host: str) -> str:
    """The host as it goes into a URL: an IPv6 address in brackets."""
    host = host.strip("[]")
    return f"[{host}]" if ":" in host else host


def proxy_url(host: str, port: int, credential=None) -> str:
    """The proxy URL clients are given (`env` prints it, `run` sets it): the one place that
    builds it. `credential` (a token.ProxyCredential) goes in as userinfo,
    `http://USER:TOKEN@HOST:PORT`, the form every client (pip, uv, curl, git, npm) turns into a
    Proxy-Authorization header."""
    from urllib.parse import quote

    address = f"{url_host(host)}:{port}"
    if credential is None:
        return f"http://{address}"
    return f"http://{quote(credential.user, safe='')}:{quote(credential.token, safe='')}@{address}"


def _entries(value: str | None) -> list[str]:
    return [e.strip() for e in (value or "").replace(" ", ",").split(",") if e.strip()]


def merge_no_proxy(user_values: Iterable[str | None], registry_urls: Iterable[str]) -> tuple[str, list[str]]:
    """(NO_PROXY value, entries dropped): the user's entries, then loopback, without any entry
    that would make a client bypass the proxy for one of `registry_urls`."""
    from ..hints import no_proxy_match

    urls = list(registry_urls)
    kept: list[str] = []
    dropped: list[str] = []
    candidates = [e for value in user_values for e in _entries(value)]
    user = set(candidates)
    for entry in candidates + list(LOOPBACK_HOSTS):
        if entry in kept or entry in dropped:
            continue
        if any(no_proxy_match(url, entry) for url in urls):
            if entry in user:
                dropped.append(entry)
            continue
        kept.append(entry)
    return ",".join(kept), dropped


def proxy_environment(proxy_url: str, bundle: Path | str, no_proxy: str = LOOPBACK) -> dict[str, str]:
    env = {name: proxy_url for name in PROXY_VARS}
    env.update({name: no_proxy for name in NO_PROXY_VARS})
    env.update({name: str(bundle) for name in CA_VARS})
    return env


def user_values(current: Mapping[str, str]) -> dict[str, str]:
    """The user's own values of ALL_VARS: remembered ones (CREDPROXY_PREVIOUS_*), else, unless
    `credproxy env` is active already, what is set now."""
    active = current.get(ACTIVE) == "1"
    values = {}
    for name in ALL_VARS:
        if PREVIOUS_PREFIX + name in current:
            values[name] = current[PREVIOUS_PREFIX + name]
        elif not active and name in current:
            values[name] = current[name]
    return values


def shell_environment(url: str, bundle: Path | str, current: Mapping[str, str],
                      registry_urls: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """What `credproxy env` exports: the proxy variables (NO_PROXY merged with the user's),
    CREDPROXY_PREVIOUS_<VAR> for each user value it replaces, and the marker. Also the user's
    NO_PROXY entries it left out (for a note on stderr)."""
    previous = user_values(current)
    no_proxy, dropped = merge_no_proxy((previous.get(n) for n in ("no_proxy", "NO_PROXY")), registry_urls)
    env = proxy_environment(url, bundle, no_proxy)
    for name, value in previous.items():
        env[PREVIOUS_PREFIX + name] = value
    env[ACTIVE] = "1"
    return env, dropped


def restore_environment(current: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """What `credproxy env --unset` does: (variables to set back, variables to unset)."""
    restore = {name: current[PREVIOUS_PREFIX + name] for name in ALL_VARS if PREVIOUS_PREFIX + name in current}
    unset = [name for name in ALL_VARS if name not in restore]
    unset += [PREVIOUS_PREFIX + name for name in ALL_VARS] + [ACTIVE]
    return restore, unset


def registry_urls(settings) -> list[str]:
    """URLs of the registries credproxy holds credentials or an index for: every index, every
    store entry (the store shared with uv, and credproxy's old location), every netrc machine. A problem reading one is skipped."""
    from ..credentials.sources.netrc import NetrcSource
    from ..credentials.store import Store, StoreError, default_store_path, legacy_store_path

    env = getattr(settings, "env", None) or {}
    urls = [index.url for index in getattr(settings, "indexes", []) or []]
    for path in dict.fromkeys((default_store_path(env), legacy_store_path(env))):
        try:
            urls += [entry.service for entry in Store(path).read()]
        except (StoreError, OSError):
            pass
    try:
        netrc = NetrcSource(env)
        netrc.knows_host("https", "", 0)  # loads the file
        urls += [f"https://{host}/" for host in getattr(netrc, "_hosts", {})]
    except Exception:  # noqa: BLE001 - a broken netrc is reported by the proxy and doctor
        pass
    return urls


def _quote_posix(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _quote_fish(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _quote_powershell(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _set_line(shell: str, name: str, value: str) -> str:
    if shell in ("bash", "zsh"):
        return f"export {name}={_quote_posix(value)}"
    if shell == "fish":
        return f"set -gx {name} {_quote_fish(value)}"
    if shell == "powershell":
        return f"$Env:{name} = {_quote_powershell(value)}"
    raise ValueError(f"unknown shell {shell!r}; choose one of {', '.join(SHELLS)}")


def _unset_line(shell: str, name: str) -> str:
    if shell in ("bash", "zsh"):
        return f"unset {name}"
    if shell == "fish":
        return f"set -e {name}"
    if shell == "powershell":
        return f"Remove-Item Env:{name} -ErrorAction SilentlyContinue"
    raise ValueError(f"unknown shell {shell!r}; choose one of {', '.join(SHELLS)}")


def render(env: dict[str, str], shell: str = "bash", unset: bool = False,
           unset_names: Iterable[str] | None = None) -> str:
    """Shell code that sets the variables in `env` and unsets `unset_names` (with `unset` and
    no names: every variable `env` sets), ending with the eval hint."""
    if unset and unset_names is None:
        unset_names = list(ALL_VARS)
    lines = [_set_line(shell, name, value) for name, value in env.items()]
    lines += [_unset_line(shell, name) for name in (unset_names or ())]
    flag = " --unset" if unset else ""
    shell_flag = "" if shell == "bash" else f" --shell {shell}"
    hint = {
        "bash": f'# Run: eval "$(credproxy env{shell_flag}{flag})"',
        "zsh": f'# Run: eval "$(credproxy env{shell_flag}{flag})"',
        "fish": f"# Run: credproxy env{shell_flag}{flag} | source",
        "powershell": f"# Run: credproxy env{shell_flag}{flag} | Out-String | Invoke-Expression",
    }[shell]
    lines.append(hint)
    return "\n".join(lines) + "\n"
