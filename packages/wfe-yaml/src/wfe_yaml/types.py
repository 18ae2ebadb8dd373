"""Declared types of workflow inputs and outputs (``{branch: string, retries: integer?}``)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import attrs

from wfe_core.errors import InvalidInputError

#: The type names a declaration may use (``?`` after one makes the value optional).
TYPE_NAMES = ("string", "integer", "number", "boolean", "object", "list", "any")
_ALIASES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "array": "list",
    "map": "object",
    "dict": "object",
}


@attrs.frozen
class ValueType:
    """A declared type: ``name`` (one of :data:`TYPE_NAMES`) and whether it may be absent."""

    name: str
    optional: bool = False

    @classmethod
    def parse(cls, text: object) -> ValueType:
        """``"integer?"`` → ``ValueType("integer", optional=True)``; ``ValueError`` otherwise."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"type must be one of {', '.join(TYPE_NAMES)} (with ? if optional)")
        raw = text.strip()
        optional = raw.endswith("?")
        name = raw.rstrip("?").strip().lower()
        name = _ALIASES.get(name, name)
        if name not in TYPE_NAMES:
            raise ValueError(
                f"unknown type {raw!r}; use one of {', '.join(TYPE_NAMES)} (with ? if optional)"
            )
        return cls(name, optional)

    def __str__(self) -> str:
        return self.name + ("?" if self.optional else "")

    def coerce(self, value: Any) -> Any:
        """``value`` as this type. Strings (from the command line or from step outputs) are
        parsed; values already of the type pass unchanged. ``ValueError`` when it does not fit."""
        name = self.name
        if name == "any" or value is None:
            return value
        if name == "string":
            if isinstance(value, str):
                return value
            if isinstance(value, bool | int | float):
                return json.dumps(value) if isinstance(value, bool) else str(value)
            raise ValueError(f"expected a string, got {_kind(value)}")
        if name == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            raise ValueError(f"expected a boolean (true/false), got {value!r}")
        if name == "integer":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str):
                try:
                    return int(value.strip(), 10)
                except ValueError:
                    pass
            raise ValueError(f"expected an integer, got {value!r}")
        if name == "number":
            if isinstance(value, int | float) and not isinstance(value, bool):
                return value
            if isinstance(value, str):
                try:
                    number = float(value.strip())
                except ValueError:
                    pass
                else:
                    if math.isfinite(number):
                        return int(number) if number.is_integer() and "." not in value else number
            raise ValueError(f"expected a number, got {value!r}")
        if name in ("object", "list"):
            wanted: type = Mapping if name == "object" else list
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    raise ValueError(f"expected {name} (as JSON), got {value!r}") from None
            if isinstance(value, wanted):
                return dict(value) if isinstance(value, Mapping) else value
            raise ValueError(
                f"expected {'an object' if name == 'object' else 'a list'}, got {_kind(value)}"
            )
        raise AssertionError(name)  # pragma: no cover - parse() allows only known names


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def check_values(
    declared: Mapping[str, ValueType], values: Mapping[str, Any], what: str, *, partial: bool
) -> tuple[dict[str, Any], list[str]]:
    """Coerce the declared keys of ``values``; returns the coerced values and problems
    (a required key missing is a problem unless ``partial``)."""
    coerced: dict[str, Any] = {}
    problems: list[str] = []
    for key, value_type in declared.items():
        if key not in values or values[key] is None:
            if not partial and not value_type.optional:
                problems.append(f"{what} {key!r} ({value_type}) is missing")
            continue
        try:
            coerced[key] = value_type.coerce(values[key])
        except ValueError as exc:
            problems.append(f"{what} {key!r}: {exc}")
    return coerced, problems


@attrs.frozen
class PrepareInputs:
    """A definition's ``prepare_input``: converts declared inputs to their types
    (``--input retries=3`` arrives as the string ``"3"``) when the workflow is started, and
    refuses a missing or wrong one with :class:`~wfe_core.errors.InvalidInputError`, so
    nothing is stored for a run that could not work."""

    workflow_id: str
    declared: Mapping[str, ValueType]

    def __call__(self, data: Any) -> Any:
        values = data if isinstance(data, Mapping) else {}
        coerced, problems = check_values(self.declared, values, "input", partial=False)
        if problems:
            raise InvalidInputError(self.workflow_id, problems)
        return {**values, **coerced}
