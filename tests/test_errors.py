"""The exception tree drawn in errors.py is the one the code has, and it is closed."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from tether import errors

SRC = Path(errors.__file__).parent


def _drawn() -> dict[str, str]:
    """Class -> parent, read from the tree in the module docstring."""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^\s*((?:│   |    )*)(?:├── |└── )?(\w+Error|\w+Generation)\b", line)
        if not match or not match.group(2)[0].isupper():
            continue
        depth = len(match.group(1)) // 4 + (1 if ("├" in line or "└" in line) else 0)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[match.group(2)] = stack[-1][1]
        stack.append((depth, match.group(2)))
    return parents


def test_the_drawing_matches_the_classes() -> None:
    classes = {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.TetherError) and cls is not errors.TetherError
    }
    drawn = _drawn()
    assert set(drawn) == set(classes)
    for name, cls in classes.items():
        assert cls.__bases__[0].__name__ == drawn[name], name


def test_no_exception_class_lives_outside_errors_py() -> None:
    outside = []
    for path in SRC.rglob("*.py"):
        if path.name == "errors.py" and path.parent == SRC:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(base, ast.Name) and base.id.endswith(("Error", "Exception"))
                for base in node.bases
            ):
                outside.append(f"{path.relative_to(SRC)}:{node.name}")
    assert outside == []


def test_library_packages_never_build_the_plugin_manager() -> None:
    top_level = {"plugins.py", "cli", "server"}  # who may build and hand one down
    offenders = []
    for path in SRC.rglob("*.py"):
        first = path.relative_to(SRC).parts[0]
        if first in top_level:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "tether.plugins":
                offenders.append(str(path.relative_to(SRC)))
            if isinstance(node, ast.Import) and any(a.name == "tether.plugins" for a in node.names):
                offenders.append(str(path.relative_to(SRC)))
    assert offenders == []
