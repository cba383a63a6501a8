"""The project modules a Python file imports, directly or through other project modules (for the deps test)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGES = ("bcmodels", "stages")


def _module_file(root: Path, module: str) -> Path | None:
    path = root.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _imported_names(source: str) -> tuple[str, ...]:
    """The dotted names a module's source imports, anywhere in it; parsed once per distinct source."""
    found = []
    tree = ast.parse(source)
    type_only = {  # `if TYPE_CHECKING:` imports never run
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        for stmt in node.body
        for n in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.extend([node.module, *(f"{node.module}.{alias.name}" for alias in node.names)])
    return tuple(found)


def direct_imports(root: Path, file: Path) -> set[Path]:
    """Project files imported by file: `import a.b`, `from a.b import c` (c a module or a name), anywhere in it."""
    found = set()
    for name in _imported_names(file.read_text()):
        if name.split(".")[0] not in PACKAGES:
            continue
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # a package's __init__ runs too
            module_file = _module_file(root, ".".join(parts[:depth]))
            if module_file is not None:
                found.add(module_file)
    return found


def project_imports(root: Path, file: Path) -> set[str]:
    """Every project file that running file loads, as paths relative to root, file itself included."""
    seen, todo = set(), [file]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(direct_imports(root, current) - seen)
    return {p.relative_to(root).as_posix() for p in seen}
