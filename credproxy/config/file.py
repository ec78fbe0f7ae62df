"""The credproxy config file (TOML): strict, one ConfigError lists every problem in the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from ..credentials.index import Index, valid_index_name
from .model import (AUTH_POLICIES, INTERCEPT_POLICIES, KEYRING_PROVIDERS, NETRC_DEFAULT_SCOPES, NETRC_LOOPBACK_SCOPES,
                    ClientCertRule, Layer)
from .values import Problems, known_key, one_of, positive_seconds, quote, safe_url, url_problem, valid_host_pattern

_TOP_KEYS = ("keyring-provider", "keyring-timeout", "request-head-timeout", "allow-insecure-host", "system-certs", "ca-bundle", "intercept",
             "intercept-hosts", "index", "client-cert", "netrc-default", "netrc-loopback", "project",
             "upstream-proxy", "upstream-proxy-connect-timeout", "git-credential-hosts")
_INDEX_KEYS = ("name", "url", "authenticate", "username", "publish-url", "token-command", "token-lifetime")
_CERT_KEYS = ("host", "cert")

def _string_list(p: Problems, key: str, value: Any, check=None, expected: str = "an array of strings") -> list[str]:
    if not isinstance(value, list):
        p.add(key, expected, value)
        return []
    out = []
    for i, item in enumerate(value, 1):
        if not isinstance(item, str):
            p.add(f"{key}[{i}]", "a string", item)
        elif check is not None and not check(item):
            p.add(f"{key}[{i}]", expected, item)
        else:
            out.append(item)
    return out


def _path_value(value: str, base: Path) -> str:
    """`~` expanded; a relative path is relative to the config file's directory."""
    path = Path(os.path.expanduser(value))
    return str(path if path.is_absolute() else base / path)


def parse_config(data: Mapping[str, Any], path: Path) -> Layer:
    """Validate a credproxy config document; one ConfigError lists every problem."""
    p = Problems(str(path))
    layer = Layer()
    origin = f"config:{path}"
    for key in data:
        if key not in _TOP_KEYS:
            p.add(quote(key), known_key(key, _TOP_KEYS))

    if "keyring-provider" in data:
        v = data["keyring-provider"]
        if v in KEYRING_PROVIDERS:
            layer.keyring_provider = v
        else:
            p.add("keyring-provider", one_of(KEYRING_PROVIDERS), v)
    if "keyring-timeout" in data:
        v = data["keyring-timeout"]
        if positive_seconds(v):
            layer.keyring_timeout = float(v)
        else:
            p.add("keyring-timeout", "a positive number of seconds", v)
    if "request-head-timeout" in data:
        v = data["request-head-timeout"]
        if positive_seconds(v):
            layer.request_head_timeout = float(v)
        else:
            p.add("request-head-timeout", "a positive number of seconds", v)
    if "upstream-proxy-connect-timeout" in data:
        v = data["upstream-proxy-connect-timeout"]
        if positive_seconds(v):
            layer.upstream_proxy_connect_timeout = float(v)
        else:
            p.add("upstream-proxy-connect-timeout", "a positive number of seconds", v)
    if "intercept" in data:
        v = data["intercept"]
        if v in INTERCEPT_POLICIES:
            layer.intercept = v
        else:
            p.add("intercept", one_of(INTERCEPT_POLICIES), v)
    for key, allowed in (("netrc-default", NETRC_DEFAULT_SCOPES), ("netrc-loopback", NETRC_LOOPBACK_SCOPES)):
        if key in data:
            if data[key] in allowed:
                setattr(layer, key.replace("-", "_"), data[key])
            else:
                p.add(key, one_of(allowed), data[key])
    if "system-certs" in data:
        v = data["system-certs"]
        if isinstance(v, bool):
            layer.system_certs = v
        else:
            p.add("system-certs", "a boolean (true or false)", v)
    if "ca-bundle" in data:
        v = data["ca-bundle"]
        if isinstance(v, str) and v:
            layer.ca_bundle = _path_value(v, path.parent)
        else:
            p.add("ca-bundle", "a non-empty string (path to a PEM file)", v)
    if "project" in data:
        v = data["project"]
        if isinstance(v, str) and v:
            layer.project = _path_value(v, path.parent)
        else:
            p.add("project", "a non-empty string (a project directory whose uv settings to import)", v)
    if "allow-insecure-host" in data:
        layer.allow_insecure_host = _string_list(
            p, "allow-insecure-host", data["allow-insecure-host"],
            check=lambda s: bool(s.strip()) and "@" not in s,
            expected="an array of host names (`host`, `host:port`, `https://host`)")
    if "intercept-hosts" in data:
        layer.intercept_hosts = _string_list(
            p, "intercept-hosts", data["intercept-hosts"], check=valid_host_pattern,
            expected="an array of host patterns (`host`, `*.suffix`, `host:port`)")
    if "git-credential-hosts" in data:
        layer.git_credential_hosts = _string_list(
            p, "git-credential-hosts", data["git-credential-hosts"], check=valid_host_pattern,
            expected="an array of host patterns (`host`, `*.suffix`, `host:port`)")

    if "upstream-proxy" in data:
        v = data["upstream-proxy"]
        pac = isinstance(v, str) and v.strip().lower().startswith(("pac+http://", "pac+https://", "pac+file://"))
        if isinstance(v, str) and (v.strip().lower() in ("none", "direct") or pac or url_problem(
                v if "://" in v else "http://" + v) is None):
            layer.upstream_proxy = (v, f"upstream-proxy in {path}")
        else:
            p.add("upstream-proxy", 'an http:// or https:// proxy URL, a PAC file (pac+https://…, pac+http://…, '
                  'pac+file:///…), or "none"',
                  safe_url(v) if isinstance(v, str) else v)
    if "index" in data:
        tables = data["index"]
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            p.add("index", "an array of tables ([[index]])", tables)
        else:
            seen_names: dict[str, int] = {}
            for n, table in enumerate(tables, 1):
                index = _parse_index_table(p, f"index[{n}]", table, origin, seen_names, n)
                if index is not None:
                    layer.indexes.append(index)

    if "client-cert" in data:
        tables = data["client-cert"]
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            p.add("client-cert", "an array of tables ([[client-cert]])", tables)
        else:
            for n, table in enumerate(tables, 1):
                key = f"client-cert[{n}]"
                for k in table:
                    if k not in _CERT_KEYS:
                        p.add(f"{key}.{quote(k)}", known_key(k, _CERT_KEYS))
                host, cert = table.get("host"), table.get("cert")
                ok = True
                if not isinstance(host, str) or not valid_host_pattern(host):
                    p.add(f"{key}.host", "a host pattern (`host`, `*.suffix`, `host:port`)",
                          ... if host is None else host)
                    ok = False
                if not isinstance(cert, str) or not cert:
                    p.add(f"{key}.cert", "a non-empty string (path to a PEM file with certificate and key)",
                          ... if cert is None else cert)
                    ok = False
                if ok:
                    layer.client_certs.append(ClientCertRule(host, _path_value(cert, path.parent), origin))
    p.raise_if_any()
    return layer


def _parse_index_table(p: Problems, key: str, table: dict, origin: str,
                       seen_names: dict[str, int], n: int) -> Index | None:
    ok = True
    for k in table:
        if k not in _INDEX_KEYS:
            p.add(f"{key}.{quote(k)}", known_key(k, _INDEX_KEYS))
            ok = False
    name = table.get("name")
    if name is not None:
        if not isinstance(name, str) or not name.isascii() or not valid_index_name(name):
            p.add(f"{key}.name", "a name of ASCII letters, digits, `.`, `_` or `-`", name)
            ok = False
        elif name in seen_names:
            p.add(f"{key}.name", f"a name not used by another index (index[{seen_names[name]}] has it)", name)
            ok = False
        else:
            seen_names[name] = n
    url = table.get("url")
    if url is None:
        p.add(f"{key}.url", "an http:// or https:// URL (the key is required)")
        ok = False
    elif not isinstance(url, str):
        p.add(f"{key}.url", "an http:// or https:// URL", url)
        ok = False
    elif (why := url_problem(url)) is not None:
        p.add(f"{key}.url", why, safe_url(url))
        ok = False
    auth = table.get("authenticate", "auto")
    if auth not in AUTH_POLICIES:
        p.add(f"{key}.authenticate", one_of(AUTH_POLICIES), auth)
        ok = False
    username = table.get("username")
    if username is not None and (not isinstance(username, str) or not username):
        p.add(f"{key}.username", "a non-empty string", username, show_value=False)
        ok = False
    publish = table.get("publish-url")
    if publish is not None:
        if not isinstance(publish, str):
            p.add(f"{key}.publish-url", "an http:// or https:// URL", publish)
            ok = False
        elif (why := url_problem(publish)) is not None:
            p.add(f"{key}.publish-url", why, safe_url(publish))
            ok = False
        elif "@" in urlsplit(publish).netloc:
            p.add(f"{key}.publish-url", "a URL without credentials (use UV_INDEX_<NAME>_USERNAME/"
                  "_PASSWORD or `credproxy auth login`)", safe_url(publish))
            ok = False
    command = table.get("token-command")
    if command is not None:
        if (not isinstance(command, list) or not command
                or not all(isinstance(a, str) for a in command) or not command[0]):
            p.add(f"{key}.token-command", "a non-empty array of strings (the program and its arguments; "
                  "no shell), e.g. [\"aws\", \"codeartifact\", \"get-authorization-token\", ...]",
                  command, show_value=False)
            ok = False
        else:
            command = tuple(command)
    lifetime = table.get("token-lifetime")
    if lifetime is not None:
        if not positive_seconds(lifetime):
            p.add(f"{key}.token-lifetime", "a positive number of seconds", lifetime)
            ok = False
        elif command is None:
            p.add(f"{key}.token-lifetime", "to be set together with token-command", lifetime)
            ok = False
        else:
            lifetime = float(lifetime)
    if not ok:
        return None
    return Index.from_url(url, name=name, authenticate=auth, username=username,
                          publish_url=publish, origin=origin, token_command=command,
                          token_lifetime=lifetime)

