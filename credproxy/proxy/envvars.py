"""The variables `credproxy env` prints and `credproxy run` sets (design.md "Commands").

Every CA variable names the same combined bundle (public roots + proxy CA + configured
upstream CA): several of them replace a client's default roots (mitmproxy-notes.md §7)."""

from __future__ import annotations

from pathlib import Path

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
LOOPBACK = "localhost,127.0.0.1,::1"


def proxy_environment(proxy_url: str, bundle: Path | str) -> dict[str, str]:
    env = {name: proxy_url for name in PROXY_VARS}
    env.update({name: LOOPBACK for name in NO_PROXY_VARS})
    env.update({name: str(bundle) for name in CA_VARS})
    return env


def _quote_posix(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _quote_fish(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _quote_powershell(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def render(env: dict[str, str], shell: str = "bash", unset: bool = False) -> str:
    """Shell code that sets (or unsets) the variables, ending with the eval hint."""
    lines = []
    for name in (env if not unset else ALL_VARS):
        if shell in ("bash", "zsh"):
            lines.append(f"unset {name}" if unset else f"export {name}={_quote_posix(env[name])}")
        elif shell == "fish":
            lines.append(f"set -e {name}" if unset else f"set -gx {name} {_quote_fish(env[name])}")
        elif shell == "powershell":
            lines.append(
                f"Remove-Item Env:{name} -ErrorAction SilentlyContinue" if unset
                else f"$Env:{name} = {_quote_powershell(env[name])}")
        else:
            raise ValueError(f"unknown shell {shell!r}; choose one of {', '.join(SHELLS)}")
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
