"""The credproxy config file (TOML): strict, one ConfigError lists every problem in the file.
What each key accepts is declared once, in keys.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .keys import TOP_KEYS, Spot, parse_table
from .model import Layer
from .values import Problems


def parse_config(data: Mapping[str, Any], path: Path) -> Layer:
    """Validate a credproxy config document; one ConfigError lists every problem."""
    p = Problems(str(path))
    values = parse_table(Spot(p, "", path), data, TOP_KEYS)
    p.raise_if_any()
    layer = Layer()
    for key in TOP_KEYS:
        if key.name in (values or {}):
            setattr(layer, key.attr, values[key.name])
    return layer
