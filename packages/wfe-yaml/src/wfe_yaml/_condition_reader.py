"""Reading ``when:`` conditions (field comparisons and ``all``/``any``/``not``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from wfe_yaml import interpolation as ip
from wfe_yaml import schema
from wfe_yaml.conditions import COMBINATORS, OPERATORS, Combination, Condition, FieldCondition

if TYPE_CHECKING:
    from wfe_yaml._context import ReadContext
    from wfe_yaml._fields import FieldReader
    from wfe_yaml._spec import WorkflowSpec
    from wfe_yaml.errors import Mark


class ConditionReader:
    """Reads a YAML condition into a :class:`~wfe_yaml.conditions.Condition`."""

    def __init__(self, ctx: ReadContext, fields: FieldReader) -> None:
        self.ctx = ctx
        self.fields = fields

    def read(self, node: Any, mark: Mark, workflow: WorkflowSpec) -> Condition | None:
        """The condition of ``node`` (at ``mark``), ``None`` after recording a problem."""
        if not isinstance(node, CommentedMap):
            self.ctx.problem(
                mark, "a condition must be a mapping, e.g. {field: inputs.branch, equals: main}"
            )
            return None
        mark = self.ctx.node_mark(node, mark)
        keys = [k for k in node if not (isinstance(k, str) and k.startswith("_"))]
        self.ctx.check_keys(node, schema.CONDITION_KEYS, "condition")
        combinators = [k for k in keys if k in COMBINATORS]
        if combinators:
            if len(keys) != 1:
                self.ctx.problem(
                    mark,
                    f"a `{combinators[0]}` condition takes no other keys "
                    f"(found {', '.join(map(str, keys))})",
                )
                return None
            combinator = combinators[0]
            value = node[combinator]
            value_mark = self.ctx.value_mark(node, combinator)
            if combinator == "not":
                inner = self.read(value, value_mark, workflow)
                return Combination("not", (inner,)) if inner is not None else None
            if not isinstance(value, CommentedSeq) or len(value) == 0:
                self.ctx.problem(value_mark, f"`{combinator}` takes a non-empty list of conditions")
                return None
            parts = [
                self.read(item, self.ctx.item_mark(value, i), workflow)
                for i, item in enumerate(value)
            ]
            if any(p is None for p in parts):
                return None
            return Combination(combinator, tuple(p for p in parts if p is not None))
        if "field" not in node:
            self.ctx.problem(
                mark,
                "a condition needs `field:` and an operator "
                f"({', '.join(OPERATORS)}), or one of {', '.join(COMBINATORS)}",
            )
            return None
        field_text = self.fields.text_field(node, "field", required=True) or ""
        field_mark = self.ctx.value_mark(node, "field")
        try:
            namespace, path = ip.parse_path(field_text)
        except ip.InterpolationError as exc:
            self.ctx.problem(field_mark, str(exc))
            return None
        self.fields.check_input(namespace, path, workflow, field_mark)
        if namespace == ip.CONFIG_NAMESPACE and path[0] not in self.ctx.values:
            self.ctx.problem(
                field_mark, f"load-time value {path[0]!r} is not set (pass --set {path[0]}=...)"
            )
        operators = [k for k in keys if k in OPERATORS]
        if len(operators) != 1:
            self.ctx.problem(
                mark, f"a field condition needs exactly one operator of {', '.join(OPERATORS)}"
            )
            return None
        operator = operators[0]
        value = self.fields.plain(node[operator], self.ctx.value_mark(node, operator))
        if isinstance(value, str):
            value = self.fields.interpolate(
                value, self.ctx.value_mark(node, operator), runtime=None
            )
        if operator in ("is_null", "is_not_null") and not isinstance(value, bool):
            self.ctx.problem(
                self.ctx.value_mark(node, operator), f"`{operator}` takes true or false"
            )
            return None
        if operator in ("gt", "gte", "lt", "lte") and (
            isinstance(value, bool) or not isinstance(value, int | float)
        ):
            self.ctx.problem(
                self.ctx.value_mark(node, operator), f"`{operator}` compares with a number"
            )
            return None
        return FieldCondition(namespace, path, operator, value)
