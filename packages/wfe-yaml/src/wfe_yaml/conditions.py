"""``when:`` conditions: a field compared with a value, or combinations of conditions."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from wfe_yaml.interpolation import CONFIG_NAMESPACE, lookup

#: Comparison operators of a field condition.
OPERATORS = ("equals", "not_equals", "gt", "gte", "lt", "lte", "contains", "is_null", "is_not_null")
#: Combinators of conditions.
COMBINATORS = ("all", "any", "none", "one_of", "not")


@attrs.frozen
class FieldCondition:
    """``{field: inputs.branch, equals: main}``."""

    namespace: str
    path: tuple[str, ...]
    operator: str
    value: Any = None

    def fields(self) -> Iterator[FieldCondition]:
        """This condition."""
        yield self

    def describe(self) -> str:
        """Short text for pictures: ``inputs.branch equals main``."""
        field = ".".join((self.namespace, *self.path))
        if self.operator in ("is_null", "is_not_null"):
            return f"{field} {self.operator.replace('_', ' ')}"
        return f"{field} {self.operator.replace('_', ' ')} {self.value!r}"

    def evaluate(self, data: Any, config: Mapping[str, Any]) -> bool:
        """Whether it holds for ``data`` (and the load-time ``config``)."""
        source = config if self.namespace == CONFIG_NAMESPACE else data
        actual = lookup(source, self.path)
        op = self.operator
        if op == "is_null":
            return (actual is None) == bool(self.value)
        if op == "is_not_null":
            return (actual is not None) == bool(self.value)
        if op == "equals":
            return _equal(actual, self.value)
        if op == "not_equals":
            return not _equal(actual, self.value)
        if op == "contains":
            if isinstance(actual, str):
                return str(self.value) in actual
            if isinstance(actual, list | tuple):
                return any(_equal(item, self.value) for item in actual)
            if isinstance(actual, Mapping):
                return self.value in actual
            return False
        left, right = _number(actual), _number(self.value)
        if left is None or right is None:
            return False
        if op == "gt":
            return left > right
        if op == "gte":
            return left >= right
        if op == "lt":
            return left < right
        return left <= right


@attrs.frozen
class Combination:
    """``all``/``any``/``none``/``one_of`` of a list of conditions, or ``not`` of one."""

    combinator: str
    conditions: tuple[Condition, ...]

    def fields(self) -> Iterator[FieldCondition]:
        """Every field condition inside."""
        for condition in self.conditions:
            yield from condition.fields()

    def describe(self) -> str:
        """Short text for pictures: ``not (...)``, ``all of 3 conditions``."""
        if self.combinator == "not":
            return f"not ({self.conditions[0].describe()})"
        word = {"one_of": "exactly one"}.get(self.combinator, self.combinator)
        return f"{word} of {len(self.conditions)} conditions"

    def evaluate(self, data: Any, config: Mapping[str, Any]) -> bool:
        """Whether it holds for ``data`` (and the load-time ``config``)."""
        results = [c.evaluate(data, config) for c in self.conditions]
        if self.combinator == "all":
            return all(results)
        if self.combinator == "any":
            return any(results)
        if self.combinator == "none":
            return not any(results)
        if self.combinator == "one_of":
            return sum(results) == 1
        return not results[0]


Condition = FieldCondition | Combination


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _equal(actual: Any, expected: Any) -> bool:
    if actual == expected and type(actual) is type(expected):
        return True
    if isinstance(actual, bool) or isinstance(expected, bool):
        # ``true`` in YAML against "true" from the command line.
        return str(actual).lower() == str(expected).lower()
    if isinstance(actual, str) != isinstance(expected, str):
        # Inputs from the command line are strings: "3" equals 3, "1.10" does not equal 1.1.
        return str(actual) == str(expected)
    return bool(actual == expected)
