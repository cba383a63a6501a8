"""The package's shape: its units (each subpackage of bcmodels, each remaining top-level module, stages/) import
each other without a cycle and in chains of at most MAX_CHAIN units, and no source file outgrows MAX_LINES."""

from __future__ import annotations

import itertools
from pathlib import Path

from tests.conftest import PROJECT_ROOT
from tests.imports import direct_imports

MAX_CHAIN = 6  # units on the longest import chain, both ends counted: stages -> training -> ... -> errors
MAX_LINES = 400
ROOTS = ("bcmodels", "stages")


def unit_of(root: Path, file: Path) -> str | None:
    """bcmodels.<subpackage>, bcmodels.<module> or stages; None for a top-level __init__.py (a docstring)."""
    parts = file.relative_to(root).parts
    if parts[0] == "stages":
        return "stages"
    if len(parts) == 2:
        return None if parts[1] == "__init__.py" else f"bcmodels.{parts[1].removesuffix('.py')}"
    return f"bcmodels.{parts[1]}"


def sources(root: Path) -> list[Path]:
    return sorted(p for name in ROOTS if (root / name).is_dir() for p in (root / name).rglob("*.py"))


def unit_graph(root: Path) -> dict[str, set[str]]:
    """Each unit and the other units its files import (inside functions too, type-only imports not)."""
    graph: dict[str, set[str]] = {}
    for file in sources(root):
        unit = unit_of(root, file)
        if unit is None:
            continue
        imported = {unit_of(root, f) for f in direct_imports(root, file)}
        graph.setdefault(unit, set()).update(imported - {unit, None})
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of units as [a, b, ..., a], or None."""
    done: set[str] = set()

    def visit(unit: str, path: list[str]) -> list[str] | None:
        if unit in path:
            return [*path[path.index(unit) :], unit]
        if unit in done:
            return None
        for other in sorted(graph.get(unit, ())):
            cycle = visit(other, [*path, unit])
            if cycle:
                return cycle
        done.add(unit)
        return None

    for unit in sorted(graph):
        cycle = visit(unit, [])
        if cycle:
            return cycle
    return None


def longest_chain(graph: dict[str, set[str]]) -> list[str]:
    """The longest import chain of units (the graph has no cycle), as [importer, ..., the last imported]."""
    longest: dict[str, list[str]] = {}

    def chain(unit: str) -> list[str]:
        if unit not in longest:
            tails = [chain(other) for other in sorted(graph.get(unit, ()))]
            longest[unit] = [unit, *max(tails, key=len, default=[])]
        return longest[unit]

    return max((chain(unit) for unit in sorted(graph)), key=len)


def long_files(root: Path) -> dict[str, int]:
    counts = {p.relative_to(root).as_posix(): len(p.read_text().splitlines()) for p in sources(root)}
    return {name: n for name, n in counts.items() if n > MAX_LINES}


def test_the_units_import_each_other_without_a_cycle_in_chains_of_at_most_six():
    graph = unit_graph(PROJECT_ROOT)
    assert {"stages", "bcmodels.config", "bcmodels.training", "bcmodels.errors"} <= set(graph)
    assert find_cycle(graph) is None, f"units import each other in a cycle: {' -> '.join(find_cycle(graph))}"
    chain = longest_chain(graph)
    assert len(chain) <= MAX_CHAIN, f"an import chain of {len(chain)} units: {' -> '.join(chain)}"


def test_the_top_level_package_files_import_nothing_of_the_project():
    """They run before every import of a unit: an import there would chain every unit to it."""
    for name in ROOTS:
        assert direct_imports(PROJECT_ROOT, PROJECT_ROOT / name / "__init__.py") == set(), name


def test_no_source_file_is_over_400_lines():
    too_long = long_files(PROJECT_ROOT)
    assert too_long == {}, f"over {MAX_LINES} lines (split by concern): {too_long}"


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_a_cycle_a_long_chain_and_a_long_file_are_found(tmp_path):
    """The checks above on a made-up tree: units a..g chained through a function's import, f back to c."""
    letters = "abcdefg"
    files = {"bcmodels/__init__.py": "", "stages/__init__.py": "", "stages/run.py": "import bcmodels.a.m\n"}
    for letter, following in itertools.pairwise(letters):
        files[f"bcmodels/{letter}/__init__.py"] = ""
        files[f"bcmodels/{letter}/m.py"] = f"def f():\n    from bcmodels.{following} import m\n"
    files["bcmodels/g.py"] = "x = 1\n" * 401  # a top-level module is a unit of its own
    files["bcmodels/a/n.py"] = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import stages.run\n"
    root = _tree(tmp_path, files)
    graph = unit_graph(root)
    assert find_cycle(graph) is None
    assert longest_chain(graph) == ["stages", *(f"bcmodels.{letter}" for letter in letters)]
    assert long_files(root) == {"bcmodels/g.py": 401}
    (root / "bcmodels/f/m.py").write_text("import bcmodels.g\nimport bcmodels.c.m\n")
    assert find_cycle(unit_graph(root)) == ["bcmodels.c", "bcmodels.d", "bcmodels.e", "bcmodels.f", "bcmodels.c"]
