"""The command-line layer: flags, keyed by Settings field name (None = not given)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

from ..credentials.index import Index, valid_index_name
from .env import parse_index_arg
from .keys import INVALID, Spot, key_for
from .model import LOG_FORMATS, Layer, Settings
from .values import Problems, one_of, safe_url, shown_value, url_problem



def override_layer(overrides: Mapping[str, Any], settings: Settings) -> Layer:
    """Flags: keys are Settings field names; None means "not given". A field that is a config
    key (keys.py) is the highest layer of it, its value checked as the key's kind does; list
    fields are put in front of the lower layers' lists; scalars replace."""
    names = {f.name for f in fields(Settings)}
    layer = Layer()
    problems = Problems("command line")
    for key, value in overrides.items():
        if key not in names:
            problems.add(f"option {shown_value(key)}", "a setting name (" + ", ".join(sorted(names)) + ")")
            continue
        if value is None:
            continue
        if key == "indexes":
            for item in value:
                if isinstance(item, Index):
                    layer.indexes.append(item)
                    continue
                name, url = parse_index_arg(item)
                if name is not None and not (name.isascii() and valid_index_name(name)):
                    problems.add("--index", "a name of ASCII letters, digits, `.`, `_` or `-`", name)
                elif (why := url_problem(url)) is not None:
                    problems.add("--index", why, safe_url(url))
                else:
                    layer.indexes.append(Index.from_url(url, name=name, origin="flag"))
        elif (declared := key_for(key)) is not None:  # a config key: the flag is its highest layer
            value = declared.kind.from_flag(Spot(problems, f"--{declared.name}", Path(), declared.secret), value)
            if value is not INVALID:
                setattr(layer, key, value)
        elif key == "log_format" and value not in LOG_FORMATS:
            problems.add("--log-format", one_of(LOG_FORMATS), value)
        elif key in ("config_files", "warnings", "notes"):
            getattr(settings, key).extend(value)
        else:
            setattr(settings, key, value)
    problems.raise_if_any()
    return layer

