"""Encapsulation across modules: no code reads or sets another object's underscored members
(``x._name`` where ``x`` is not ``self`` or ``cls``). What a module needs from another object
is in that object's public interface; tests observe through supported APIs.

Allowed: ``self``/``cls``/``super()`` members (the class's own, in its own hierarchy),
dunders (``__name__``), enum's sunder names (``_value_``) and namedtuple's methods
(``_replace``, ``_asdict``, ``_fields``, ``_make``): the documented APIs of those types.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("packages/*/src/**/*.py", "packages/*/tests/**/*.py", "examples/**/*.py")

_SUNDER = re.compile(r"^_[a-z][a-z0-9_]*[a-z0-9]_$")


#: namedtuple's public API (``urlsplit(...)._replace``), underscored to avoid field names.
_NAMEDTUPLE_API = frozenset({"_replace", "_asdict", "_fields", "_make", "_field_defaults"})


def _is_private(name: str) -> bool:
    if not name.startswith("_") or name in _NAMEDTUPLE_API:
        return False
    dunder = name.startswith("__") and name.endswith("__")
    return not dunder and not _SUNDER.match(name)


def _is_own(value: ast.expr) -> bool:
    if isinstance(value, ast.Name):
        return value.id in {"self", "cls"}
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id == "super"
    )


def violations(source: str, where: str) -> list[str]:
    """``where:line:column: expression`` for every access to another object's underscored
    member in ``source`` (the text of the file ``where``)."""
    tree = ast.parse(source, filename=where)
    found = [
        (node.lineno, node.col_offset, ast.unparse(node))
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and _is_private(node.attr) and not _is_own(node.value)
    ]
    return [f"{where}:{line}:{column + 1}: {text}" for line, column, text in sorted(found)]


def _file_violations(path: Path) -> list[str]:
    return violations(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())


def _scanned_files() -> list[Path]:
    return sorted({path for pattern in SCANNED for path in ROOT.glob(pattern)})


def test_no_module_touches_another_objects_private_members() -> None:
    found = [line for path in _scanned_files() for line in _file_violations(path)]
    assert not found, "underscored members used from outside their object:\n" + "\n".join(found)


def test_the_check_sees_what_it_must() -> None:
    source = (
        "class A:\n"
        "    def f(self, other):\n"
        "        self._mine = other._theirs\n"
        "        super()._parent()\n"
        "        return other.__class__, other._value_, cls._x, host.passes._release\n"
    )
    assert violations(source, "sample.py") == [
        "sample.py:3:22: other._theirs",
        "sample.py:5:56: host.passes._release",
    ]
