"""PAC files: `upstream-proxy = "pac+https://…/proxy.pac"` (or `pac+http://`, `pac+file:///…`)
chooses the company proxy per URL, with pypac (the `pac` extra). Pure: no mitmproxy; egress.py
asks `PacRouter.result(url, host)` and turns the answer into a Route.

- The PAC file is fetched ONCE, at start: bounded to MAX_PAC_BYTES and FETCH_TIMEOUT seconds,
  always direct (urllib with no proxy handler: never through credproxy or HTTPS_PROXY).
- pypac evaluates FindProxyForURL with dukpy, which has no time limit: each evaluation runs in a
  short-lived child Python process (`subprocess.run(..., timeout=EVAL_TIMEOUT)`, killed by its
  own pid on time-out). A script that throws, hangs or returns garbage gives DIRECT and one
  warning per host; the proxy never crashes. Answers are cached per (scheme, host), CACHE_SIZE
  entries.
- The answer `PROXY a:1; PROXY b:2; DIRECT` is honoured by its FIRST usable entry (`PROXY h:p`
  = http://h:p, `HTTPS h:p` = https://h:p, `DIRECT`; SOCKS entries are skipped with a note).
  credproxy does not fall through to the next entry when that proxy fails: the connection fails
  with the company-proxy message (what failed, and the fix), as with a fixed --upstream-proxy.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import urllib.request
from collections import OrderedDict
from pathlib import Path
from urllib.parse import unquote, urlsplit

logger = logging.getLogger("credproxy.pac")

PREFIX = "pac+"
MAX_PAC_BYTES = 1024 * 1024
FETCH_TIMEOUT = 10.0
EVAL_TIMEOUT = 5.0
CACHE_SIZE = 512
INSTALL_HINT = "pip install 'credproxy[pac]'"

# the child: reads {"js", "url", "host"} on stdin, prints the PAC answer
_CHILD = (
    "import json, sys\n"
    "from pypac.parser import PACFile\n"
    "d = json.load(sys.stdin)\n"
    "sys.stdout.write(str(PACFile(d['js']).find_proxy_for_url(d['url'], d['host'])))\n"
)


class PacError(ValueError):
    """A PAC value or file that cannot be used; the text never quotes a password."""


def is_pac(value: str | None) -> bool:
    return bool(value) and value.strip().lower().startswith(PREFIX)


def pac_available() -> bool:
    try:
        import pypac.parser  # noqa: F401
    except ImportError:
        return False
    return True


def _display(location: str) -> str:
    """The PAC URL without userinfo or query (a token may ride there)."""
    parts = urlsplit(location)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def fetch(location: str) -> str:
    """The PAC script at `location` (http(s):// or file://), bounded in size and time, direct."""
    scheme = urlsplit(location).scheme.lower()
    shown = _display(location)
    if scheme == "file":
        path = Path(unquote(urlsplit(location).path))
        try:
            with path.open("rb") as f:
                data = f.read(MAX_PAC_BYTES + 1)
        except OSError as e:
            raise PacError(f"cannot read the PAC file {shown}: {e.strerror or type(e).__name__}. "
                           "Fix: correct the path (pac+file:///absolute/path/proxy.pac)") from None
    elif scheme in ("http", "https"):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # direct, never a proxy
        try:
            with opener.open(location, timeout=FETCH_TIMEOUT) as resp:
                data = resp.read(MAX_PAC_BYTES + 1)
        except Exception as e:  # noqa: BLE001 - the type and reason only, never the URL's userinfo
            reason = getattr(e, "reason", None) or getattr(e, "code", None) or type(e).__name__
            raise PacError(f"cannot fetch the PAC file {shown} ({reason}). Fix: check the URL and that "
                           "it is reachable directly, without a proxy") from None
    else:
        raise PacError(f"{PREFIX}{scheme}:// is not supported: use pac+https://, pac+http:// or pac+file://")
    if len(data) > MAX_PAC_BYTES:
        raise PacError(f"the PAC file {shown} is larger than {MAX_PAC_BYTES} bytes; credproxy does not load it")
    return data.decode("utf-8", "replace")


def first_entry(result: str) -> tuple[str, str | None, list[str]]:
    """The first usable entry of a PAC answer: ("PROXY"|"HTTPS"|"DIRECT", "host:port"|None, notes)."""
    notes = []
    for raw in (result or "").split(";"):
        words = raw.split()
        if not words:
            continue
        kind = words[0].upper()
        if kind == "DIRECT":
            return "DIRECT", None, notes
        if kind in ("PROXY", "HTTP", "HTTPS") and len(words) > 1:
            return ("HTTPS" if kind == "HTTPS" else "PROXY"), words[1], notes
        notes.append(f"skipped {raw.strip()!r} (credproxy chains to http:// and https:// proxies only)")
    return "DIRECT", None, notes


class PacRouter:
    """The PAC script of `location` (given without the `pac+`), evaluated per host."""

    def __init__(self, location: str, script: str | None = None):
        self.location = location
        self.display = _display(location)
        self.script = script if script is not None else fetch(location)
        self._cache: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.failed: dict[str, str] = {}  # host -> why its answer is the DIRECT fallback

    @classmethod
    def from_value(cls, value: str) -> "PacRouter":
        if not pac_available():
            raise PacError(f"{value.split('://', 1)[0]}:// needs the `pac` extra (pypac), which is not installed. "
                           f"Fix: {INSTALL_HINT}")
        return cls(value.strip()[len(PREFIX):])

    def result(self, scheme: str, host: str, port: int | None) -> str:
        """The script's answer for this URL ('DIRECT' when it throws, hangs or is not a string)."""
        key = (scheme, host.lower())
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        default = DEFAULT_PORTS.get(scheme)
        netloc = host if port in (None, default) else f"{host}:{port}"
        url = f"{scheme}://{netloc}/"
        answer = self._evaluate(url, host)
        self._cache[key] = answer
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return answer

    def _evaluate(self, url: str, host: str) -> str:
        payload = json.dumps({"js": self.script, "url": url, "host": host})
        try:
            done = subprocess.run([sys.executable, "-I", "-c", _CHILD], input=payload, capture_output=True,
                                  text=True, timeout=EVAL_TIMEOUT)
        except subprocess.TimeoutExpired:
            return self._fallback(host, f"FindProxyForURL did not answer within {EVAL_TIMEOUT:g} s")
        except OSError as e:
            return self._fallback(host, f"could not run the PAC evaluator ({type(e).__name__})")
        if done.returncode != 0:
            lines = [ln.strip() for ln in done.stderr.splitlines() if "Error" in ln] or ["failed"]
            last = lines[-1][:200]
            return self._fallback(host, f"the script failed: {last}")
        answer = done.stdout.strip()
        if not answer:
            return self._fallback(host, "the script returned nothing")
        return answer

    def _fallback(self, host: str, why: str) -> str:
        text = f"PAC file {self.display} for {host}: {why}; going DIRECT"
        self.failed[host.lower()] = why
        logger.warning("%s", text)
        return "DIRECT"


DEFAULT_PORTS = {"http": 80, "https": 443}
