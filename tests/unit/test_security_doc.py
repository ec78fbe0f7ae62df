"""docs/security.md names, for every promise, the tests that prove it. Each named test must
exist: a renamed or deleted test would otherwise leave a promise that nothing proves.

The "proved by" cell names tests as `tests/dir/test_x.py::test_name`, `test_x.py::test_name`
(in the folder of the last full path in that cell, else the one file of that name under
tests/), `::test_name` (the file named last in the cell), or a whole file."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
_REF = re.compile(r"`([\w/.]*\.py)?(?:::(\w+))?(?:\[[^\]`]*\])?`")


def _file(name: str, folder: Path | None) -> Path | None:
    if "/" in name:
        path = ROOT / name
        return path if path.is_file() else None
    if folder is not None and (folder / name).is_file():
        return folder / name
    found = sorted((ROOT / "tests").rglob(name))
    return found[0] if len(found) == 1 else None


def _defined(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def problems(text: str) -> tuple[int, list[str]]:
    """(how many references, what is wrong with them)."""
    count, wrong = 0, []
    for number, line in enumerate(text.splitlines(), 1):
        cells = line.split("|")
        if not line.startswith("|") or len(cells) < 3:
            continue
        folder: Path | None = None
        path: Path | None = None
        for name, test in _REF.findall(cells[-2]):  # the last cell: "proved by"
            if not (name or test):
                continue
            count += 1
            if name:
                path = _file(name, folder)
                if path is None:
                    wrong.append(f"security.md:{number}: no file {name} (or more than one) under tests/")
                    continue
                if "/" in name:
                    folder = path.parent
            elif path is None:
                wrong.append(f"security.md:{number}: `::{test}` names no file before it")
                continue
            if test and test not in _defined(path):
                wrong.append(f"security.md:{number}: {path.relative_to(ROOT)} defines no {test}")
    return count, wrong


def test_every_test_the_threat_model_names_exists():
    count, wrong = problems(DOC.read_text())
    assert count > 100, f"only {count} references found: the parser no longer reads the tables"
    assert wrong == [], "\n".join(wrong)


def test_the_check_finds_a_test_that_does_not_exist():
    _, wrong = problems(
        "| t | p | `tests/security/test_scope.py::test_that_was_renamed`, "
        "`::test_path_tricks_do_not_get_the_team_a_credential`, `test_owner_only.py::gone` |\n"
        "| t | p | `::orphan` |\n| t | p | `test_nowhere.py` |\n")
    assert wrong == [
        "security.md:1: tests/security/test_scope.py defines no test_that_was_renamed",
        "security.md:1: tests/security/test_owner_only.py defines no gone",
        "security.md:2: `::orphan` names no file before it",
        "security.md:3: no file test_nowhere.py (or more than one) under tests/",
    ]
