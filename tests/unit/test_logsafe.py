"""Control characters never reach a log raw (issue 9 finding 9)."""

from __future__ import annotations

import io
import json
import logging

from hypothesis import given
from hypothesis import strategies as st

from credproxy.logsafe import SafeFormatter, escape_controls


def test_escapes_c0_del_c1_and_bidi_controls():
    assert escape_controls("a\x1b[31mb\x07\x7f\x9b\u202e\u2028c") == "a\\x1b[31mb\\x07\\x7f\\x9b\\u202e\\u2028c"
    assert escape_controls("tab\tnl\ncr\r") == "tab\\x09nl\\x0acr\\x0d"
    assert escape_controls("plain ünïcode and 漢字") == "plain ünïcode and 漢字"


def test_json_style_is_valid_json_and_round_trips():
    text = json.dumps({"url": "/a\x9bb\u202ec\x7f"}, ensure_ascii=False)
    escaped = escape_controls(text, json=True)
    assert "\x9b" not in escaped and "\u202e" not in escaped and "\x7f" not in escaped
    assert json.loads(escaped) == {"url": "/a\x9bb\u202ec\x7f"}


@given(st.text())
def test_no_control_character_survives(text):
    out = escape_controls(text)
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in out)


def test_formatter_escapes_messages_and_keeps_traceback_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("credproxy.test.logsafe")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("path %s", "/x\x1b[2J\ry")
        try:
            raise ValueError("bad \x1b byte")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "\x1b" not in out and "\r" not in out
    assert "WARNING path /x\\x1b[2J\\x0dy" in out
    assert "Traceback (most recent call last):\n" in out  # still readable
