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
- The answer `PROXY a:1; PROXY b:2; DIRECT` is a list, tried in order as browsers do (`PROXY
  h:p` = http://h:p, `HTTPS h:p` = https://h:p, `DIRECT`; SOCKS entries are skipped with a
  note): a proxy that cannot be connected to (refused, unreachable, no connection within the
  connect timeout) is marked bad in `BadProxies` for BAD_FOR seconds (30 min, as browsers) and
  the next entry is tried for the same request; entries marked bad go to the end of the list
  (tried again only when nothing else is left), and a mark expires so the proxy is retried.
  The connecting itself is the addon's (addons/upstream_proxy.py); this module keeps the marks.
  Only a failed TCP connect marks a proxy: a proxy that answered (a 407, a 403, a 502) said
  something the next proxy would not fix, so its answer stands.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
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
# a failed evaluation (a throw, a hang: perhaps only a loaded machine) sends its host DIRECT for
# this long, then the script is asked again
FAILURE_TTL = 60.0
# the longest answer taken from the script (a PAC answer is a few entries)
MAX_ANSWER = 4096
BAD_FOR = 30 * 60.0  # seconds a proxy that could not be connected to is skipped (browsers: 30 min)
MAX_BAD = 256
INSTALL_HINT = "pip install 'credproxy[pac]'"

# the child: reads {"js", "url", "host"} on stdin, prints the PAC answer
_CHILD = (
    "import json, sys\n"
    "from pypac.parser import PACFile\n"
    "d = json.load(sys.stdin)\n"
    "sys.stdout.write(str(PACFile(d['js']).find_proxy_for_url(d['url'], d['host']))[:%d])\n" % MAX_ANSWER
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


def entries(result: str) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Every usable entry of a PAC answer, in order: [("PROXY"|"HTTPS"|"DIRECT", "host:port"|None)],
    and notes on the entries skipped. Nothing after the first DIRECT (it always connects); an
    answer with no usable entry is [("DIRECT", None)]."""
    out: list[tuple[str, str | None]] = []
    notes = []
    for raw in (result or "").split(";"):
        words = raw.split()
        if not words:
            continue
        kind = words[0].upper()
        if kind == "DIRECT":
            out.append(("DIRECT", None))
            break
        if kind in ("PROXY", "HTTP", "HTTPS") and len(words) > 1:
            entry = ("HTTPS" if kind == "HTTPS" else "PROXY", words[1])
            if entry not in out:
                out.append(entry)
            continue
        notes.append(f"skipped {raw.strip()!r} (credproxy chains to http:// and https:// proxies only)")
    return out or [("DIRECT", None)], notes


def first_entry(result: str) -> tuple[str, str | None, list[str]]:
    """The first usable entry of a PAC answer: ("PROXY"|"HTTPS"|"DIRECT", "host:port"|None, notes)."""
    found, notes = entries(result)
    return found[0][0], found[0][1], notes


class BadProxies:
    """Proxies that could not be connected to, each skipped for `ttl` seconds (then retried).
    Keys are whatever the caller uses for a proxy (egress.ProxyURL); `why` is the connect error,
    never a credential. Used from the event loop only."""

    def __init__(self, ttl: float = BAD_FOR, clock=time.time):
        self.ttl = ttl
        self.clock = clock
        self._marks: OrderedDict[object, tuple[float, str]] = OrderedDict()  # key -> (until, why)
        self.version = 0  # bumped on every change (the status file is rewritten then)

    def mark(self, key, why: str, until: float | None = None) -> None:
        self._marks[key] = (self.clock() + self.ttl if until is None else until, why)
        self._marks.move_to_end(key)
        while len(self._marks) > MAX_BAD:
            self._marks.popitem(last=False)
        self.version += 1

    def clear(self, key) -> None:
        if self._marks.pop(key, None) is not None:
            self.version += 1

    def get(self, key) -> tuple[float, str] | None:
        """(until, why) while `key` is marked bad; None when it is not (or no longer)."""
        found = self._marks.get(key)
        if found is None:
            return None
        if found[0] <= self.clock():
            self.clear(key)
            return None
        return found

    def items(self) -> list[tuple[object, float, str]]:
        """The marks in force: (key, until, why)."""
        return [(k, *v) for k in list(self._marks) if (v := self.get(k)) is not None]

    def describe(self, key) -> str | None:
        found = self.get(key)
        if found is None:
            return None
        until, why = found
        return f"marked bad until {time.strftime('%H:%M:%S UTC', time.gmtime(until))}: {why}"


class PacRouter:
    """The PAC script of `location` (given without the `pac+`), evaluated per host."""

    def __init__(self, location: str, script: str | None = None):
        self.location = location
        self.display = _display(location)
        self.script = script if script is not None else fetch(location)
        self._cache: OrderedDict[tuple[str, str], str] = OrderedDict()
        # host -> (until, why its answer is the DIRECT fallback); never in _cache
        self._failed: OrderedDict[str, tuple[float, str]] = OrderedDict()
        # both are used from worker threads (one per flow) and the event loop (routes, explain)
        self._lock = threading.RLock()
        self.bad = BadProxies()  # proxies that could not be connected to, skipped for a while

    @classmethod
    def from_value(cls, value: str) -> "PacRouter":
        if not pac_available():
            raise PacError(f"{value.split('://', 1)[0]}:// needs the `pac` extra (pypac), which is not installed. "
                           f"Fix: {INSTALL_HINT}")
        return cls(value.strip()[len(PREFIX):])

    def result(self, scheme: str, host: str, port: int | None) -> str:
        """The script's answer for this URL ('DIRECT' when it throws, hangs or is not a string)."""
        key = (scheme, host.lower())
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            if self.failure(host) is not None:
                return "DIRECT"
        default = DEFAULT_PORTS.get(scheme)
        netloc = host if port in (None, default) else f"{host}:{port}"
        url = f"{scheme}://{netloc}/"
        answer = self._evaluate(url, host)  # not under the lock: it may take EVAL_TIMEOUT
        with self._lock:
            if self.failure(host) is not None:
                return answer  # the DIRECT fallback: asked again after FAILURE_TTL, not cached
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

    def failure(self, host: str) -> str | None:
        """Why `host` goes DIRECT because the script failed for it lately, else None."""
        with self._lock:
            found = self._failed.get(host.lower())
            if found is None:
                return None
            until, why = found
            if time.monotonic() >= until:
                self._failed.pop(host.lower(), None)
                return None
            return why

    def _fallback(self, host: str, why: str) -> str:
        text = f"PAC file {self.display} for {host}: {why}; going DIRECT for {FAILURE_TTL:g} s"
        with self._lock:
            self._failed[host.lower()] = (time.monotonic() + FAILURE_TTL, why)
            self._failed.move_to_end(host.lower())
            while len(self._failed) > CACHE_SIZE:
                self._failed.popitem(last=False)
        logger.warning("%s", text)
        return "DIRECT"


DEFAULT_PORTS = {"http": 80, "https": 443}
