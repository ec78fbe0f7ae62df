"""Combining layers: one index per URL, unique names, derived names for imported indexes."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Iterable

from ..credentials.index import Index
from ..credentials.model import Realm
from .values import quote, url_key


_IMPORT_PREFIXES = ("uv.toml:", "pyproject.toml:", "pip.conf:", "env:PIP_")


def merge_indexes(indexes: Iterable[Index], notes: list[str] | None = None) -> list[Index]:
    """One Index per URL, in first-seen order. The first (highest layer) keeps its fields;
    name, username, publish-url and URL credentials it lacks come from later duplicates."""
    merged: dict[tuple, Index] = {}
    for index in indexes:
        key = url_key(index.url)
        first = merged.get(key)
        if index.name is not None and any(i.name == index.name for k, i in merged.items() if k != key):
            # UV_INDEX_<NAME>_* must mean one index: the highest layer's keeps the name
            if notes is not None:
                notes.append(f"index name {quote(index.name)} from {index.origin} is already used by "
                             f"a higher-priority index; {index.url} is kept without it")
            index = replace(index, name=None)
        if first is None:
            merged[key] = index
            continue
        fill = {}
        for attr in ("name", "username", "publish_url", "url_credentials"):
            if getattr(first, attr) is None and getattr(index, attr) is not None:
                if attr == "name" and any(i.name == index.name for i in merged.values()):
                    continue
                fill[attr] = getattr(index, attr)
        if fill:
            merged[key] = replace(first, **fill)
    return list(merged.values())


def derived_index_name(url: str) -> str:
    """A deterministic name for an imported index that has none: its host (and port), with
    characters an index name cannot hold replaced by `-`. UV_INDEX_<NAME>_* then apply."""
    realm = Realm.of(url)
    return re.sub(r"[^A-Za-z0-9._]+", "-", realm.netloc).strip("-") or "index"


def name_imported_indexes(indexes: list[Index]) -> list[Index]:
    used = {i.name for i in indexes if i.name}
    out = []
    for index in indexes:
        if index.name is None and index.origin.startswith(_IMPORT_PREFIXES):
            base = derived_index_name(index.url)
            name, n = base, 2
            while name in used:
                name, n = f"{base}-{n}", n + 1
            used.add(name)
            index = replace(index, name=name)
        out.append(index)
    return out


def dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))

