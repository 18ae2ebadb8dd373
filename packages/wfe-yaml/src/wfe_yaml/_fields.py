"""Reading scalars and typed fields of a YAML mapping: plain values, load-time references
filled in (runtime ones checked), text, integers, durations and ``error_behavior``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ruamel.yaml.comments import CommentedMap

from wfe_core.models import ErrorBehavior, ErrorBehaviorKind
from wfe_yaml import interpolation as ip
from wfe_yaml import schema
from wfe_yaml._context import did_you_mean
from wfe_yaml.durations import parse_duration

if TYPE_CHECKING:
    from wfe_yaml._context import ReadContext
    from wfe_yaml._spec import WorkflowSpec
    from wfe_yaml.errors import Mark

#: The largest integer a field takes (``max_retries``): what a 64-bit store column holds.
MAX_INT = 2**63 - 1
#: The largest retry ``backoff`` factor (.inf or 1e308 would overflow the next delay).
_MAX_BACKOFF = 1000


class FieldReader:
    """Reads the fields of YAML mappings, recording bad ones as problems in ``ctx``."""

    def __init__(self, ctx: ReadContext) -> None:
        self.ctx = ctx

    # -- scalars -------------------------------------------------------------------------------
    def plain(self, node: Any, mark: Mark) -> Any:
        """``node`` as plain Python values (dicts, lists, str, int, float, bool, None)."""
        if isinstance(node, Mapping):
            out: dict[str, Any] = {}
            for key in node:
                if not isinstance(key, str | int | float | bool) or key is None:
                    self.ctx.problem(
                        self.ctx.key_mark(node, key), f"keys must be strings, got {key!r}"
                    )
                    continue
                out[str(key)] = self.plain(node[key], self.ctx.value_mark(node, key))
            return out
        if isinstance(node, list):
            return [self.plain(item, self.ctx.item_mark(node, i)) for i, item in enumerate(node)]
        if node is None or isinstance(node, bool):
            return node
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            return float(node)
        if isinstance(node, str):
            return str(node)
        if isinstance(node, dt.datetime | dt.date):
            return node.isoformat()
        self.ctx.problem(mark, f"unsupported YAML value {node!r} ({type(node).__name__})")
        return None

    def substitute_static(self, text: str, mark: Mark) -> str:
        """``text`` with load-time references filled in; runtime ones are a problem here."""
        value = self.interpolate(text, mark, runtime=None)
        return value if isinstance(value, str) else ip.to_text(value)

    def interpolate(
        self,
        value: Any,
        mark: Mark,
        *,
        runtime: WorkflowSpec | None,
        what: str = "here",
    ) -> Any:
        """Fill in load-time references of ``value`` (strings inside lists and mappings too).

        Runtime references are kept when ``runtime`` (the workflow) is given, after checking
        that an ``inputs.x`` names a declared input; else they are a problem.
        """
        if isinstance(value, Mapping):
            return {
                k: self.interpolate(v, mark, runtime=runtime, what=what) for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.interpolate(v, mark, runtime=runtime, what=what) for v in value]
        if not isinstance(value, str):
            return value
        refs = self.references(value, mark)
        if refs is None:
            return value
        for ref in refs:
            if ref.is_runtime:
                if runtime is None:
                    self.ctx.problem(
                        mark,
                        f"{ref.raw.strip()} is not allowed {what}: only load-time "
                        "values (${{ config.x }} or ((x))) are known here",
                    )
                else:
                    self.check_input(ref.namespace, ref.path, runtime, mark)
            else:
                self.check_value(ref, mark)
        return ip.render(
            value,
            lambda ref: ip.resolve(ref, None, self.ctx.values),
            only=lambda ref: not ref.is_runtime,
        )

    def references(self, text: str, mark: Mark) -> list[ip.Reference] | None:
        """The references in ``text`` (``None`` after recording a problem)."""
        try:
            return ip.references(text)
        except ip.InterpolationError as exc:
            self.ctx.problem(mark, str(exc))
            return None

    def check_value(self, ref: ip.Reference, mark: Mark) -> None:
        """A load-time reference must name a given value."""
        name = ref.path[0]
        if name not in self.ctx.values:
            given = ", ".join(sorted(self.ctx.values)) or "none"
            self.ctx.problem(
                mark,
                f"load-time value {name!r} is not set (pass --set {name}=...; given: {given})",
            )

    def check_input(
        self, namespace: str, path: tuple[str, ...], workflow: WorkflowSpec, mark: Mark
    ) -> None:
        """``inputs.x`` must name a declared input of ``workflow``."""
        if namespace == "inputs" and path[0] not in workflow.inputs:
            declared = ", ".join(sorted(workflow.inputs)) or "none"
            self.ctx.problem(
                mark,
                f"undeclared input {path[0]!r}{did_you_mean(path[0], list(workflow.inputs))} "
                f"(declared inputs: {declared})",
            )

    def text_field(self, node: CommentedMap, key: str, *, required: bool = False) -> str | None:
        """A string field, load-time references filled in."""
        if key not in node or node[key] is None:
            if required:
                self.ctx.problem(self.ctx.node_mark(node), f"missing `{key}`")
            return None
        value = node[key]
        mark = self.ctx.value_mark(node, key)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.ctx.problem(mark, f"`{key}` must be a string")
            return None
        text = self.substitute_static(str(value), mark)
        if required and not text.strip():
            self.ctx.problem(mark, f"`{key}` must not be empty")
        return text

    def int_field(
        self,
        node: CommentedMap,
        key: str,
        default: int | None,
        minimum: int = 0,
        maximum: int = MAX_INT,
    ) -> int | None:
        """An integer field (a load-time reference to one is fine)."""
        if key not in node or node[key] is None:
            return default
        value = node[key]
        mark = self.ctx.value_mark(node, key)
        if isinstance(value, str):
            value = self.substitute_static(value, mark)
            try:
                value = int(value)
            except ValueError:
                self.ctx.problem(mark, f"`{key}` must be an integer, got {value!r}")
                return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.ctx.problem(mark, f"`{key}` must be an integer, got {value!r}")
            return default
        if value < minimum:
            self.ctx.problem(mark, f"`{key}` must be at least {minimum}")
            return default
        if value > maximum:
            self.ctx.problem(mark, f"`{key}` must be at most {maximum}")
            return default
        return int(value)

    def duration_field(self, node: CommentedMap, key: str) -> dt.timedelta | None:
        """A duration field (``5s``); a bad one is a problem."""
        if key not in node or node[key] is None:
            return None
        mark = self.ctx.value_mark(node, key)
        value = node[key]
        if isinstance(value, str):
            value = self.substitute_static(value, mark)
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.ctx.problem(mark, f"`{key}`: {exc}")
            return None

    def error_behavior(self, node: CommentedMap, key: str) -> ErrorBehavior | None:
        value = node[key]
        mark = self.ctx.value_mark(node, key)
        kinds = [k.value for k in ErrorBehaviorKind]
        if isinstance(value, str):
            value = CommentedMap({"type": value})
        if not isinstance(value, CommentedMap):
            self.ctx.problem(
                mark,
                "`error_behavior:` must be a mapping like {type: retry, "
                "interval: 5s, max_retries: 3}",
            )
            return None
        self.ctx.check_keys(value, schema.ERROR_BEHAVIOR_KEYS, "error_behavior")
        kind = value.get("type")
        if kind not in kinds:
            self.ctx.problem(
                self.ctx.value_mark(value, "type") if "type" in value else mark,
                f"error_behavior `type` must be one of {', '.join(kinds)}"
                f"{did_you_mean(str(kind), kinds) if kind else ''}",
            )
            return None
        if kind != ErrorBehaviorKind.RETRY:
            extra = [k for k in value if k != "type" and not str(k).startswith("_")]
            if extra:
                self.ctx.problem(
                    self.ctx.key_mark(value, extra[0]),
                    f"`{extra[0]}` only applies to error_behavior type retry",
                )
            return ErrorBehavior(ErrorBehaviorKind(kind))
        interval = self.duration_field(value, "interval") or dt.timedelta(seconds=60)
        max_retries = self.int_field(value, "max_retries", None, minimum=0)
        max_interval = self.duration_field(value, "max_interval")
        backoff: Any = value.get("backoff", 1.0)
        if (
            isinstance(backoff, bool)
            or not isinstance(backoff, int | float)
            or not 1 <= backoff <= _MAX_BACKOFF
        ):
            self.ctx.problem(
                self.ctx.value_mark(value, "backoff"),
                f"`backoff` must be a number >= 1 and at most {_MAX_BACKOFF}",
            )
            backoff = 1.0
        return ErrorBehavior.retry(interval, max_retries, float(backoff), max_interval)
