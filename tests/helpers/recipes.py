"""The commands and configuration of docs/recipes/*.md, for the tests that exercise them.

A recipe names the real service (`https://pkgs.dev.azure.com/...`); a test swaps that origin
for its local stand-in's (`https://pkgs.test:PORT`) and runs exactly the rest."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

RECIPES = Path(__file__).resolve().parents[2] / "docs" / "recipes"
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(page: str, lang: str) -> list[str]:
    text = (RECIPES / page).read_text()
    return [body for kind, body in _BLOCK.findall(text) if kind == lang]


def config(page: str, origin: str, standin_origin: str) -> str:
    """The page's first ```toml block, pointed at the stand-in."""
    (first, *_) = blocks(page, "toml")
    assert origin in first, f"{page}: the toml block does not name {origin}"
    return first.replace(origin, standin_origin)


def commands(page: str, prefix: str, origin: str, standin_origin: str) -> list[list[str]]:
    """argv of every ```sh line starting with `prefix` (e.g. `credproxy auth login`), without
    comments, pointed at the stand-in."""
    found = []
    for body in blocks(page, "sh"):
        for line in body.splitlines():
            if line.startswith(prefix):
                found.append(shlex.split(line.replace(origin, standin_origin), comments=True))
    assert found, f"{page}: no `{prefix}` command"
    return found
