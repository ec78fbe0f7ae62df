"""Log lines a terminal can show safely: control characters escaped.

A request line, a Host header or an upstream's error text can carry `\\x1b[31m` (terminal
escape sequences), a carriage return (overwrites what the line said) or bidirectional
overrides. Every log line credproxy writes goes through `SafeFormatter`, so no such character
reaches a terminal or a log file raw: C0 and C1 controls, DEL, Unicode line/paragraph
separators and invisible format characters become `\\xNN` / `\\uNNNN` (text) or
`\\u00NN` (JSON, a valid JSON escape).
"""

from __future__ import annotations

import logging
import re

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")


def _text_escape(m: re.Match) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _json_escape(m: re.Match) -> str:
    return f"\\u{ord(m.group()):04x}"


def escape_controls(text: str, *, keep: str = "", json: bool = False) -> str:
    """`text` with every control character escaped, except those in `keep` (e.g. "\\n" for a
    traceback). json=True uses `\\u00NN`, valid inside a JSON string."""
    escape = _json_escape if json else _text_escape
    if not keep:
        return _CONTROLS.sub(escape, text)
    return _CONTROLS.sub(lambda m: m.group() if m.group() in keep else escape(m), text)


class SafeFormatter(logging.Formatter):
    """A logging.Formatter whose output has no raw control characters (tracebacks keep their
    line breaks)."""

    def __init__(self, fmt: str | None = None, *, json: bool = False, **kwargs):
        super().__init__(fmt, **kwargs)
        self.json = json

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record), json=self.json)

    def formatException(self, ei) -> str:
        return escape_controls(super().formatException(ei), keep="\n", json=self.json)

    def formatStack(self, stack_info: str) -> str:
        return escape_controls(super().formatStack(stack_info), keep="\n", json=self.json)
