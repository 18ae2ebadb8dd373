"""Reading one YAML workflow mapping: id, version, declared inputs and outputs, the
workflow's ``error_behavior`` and its steps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from wfe_core.spi import MAX_DEFINITION_VERSION
from wfe_yaml import schema
from wfe_yaml._spec import WorkflowSpec
from wfe_yaml.types import ValueType

if TYPE_CHECKING:
    from wfe_yaml._context import ReadContext
    from wfe_yaml._fields import FieldReader
    from wfe_yaml._step_reader import StepReader


class WorkflowReader:
    """Reads a ``workflow:`` mapping into a :class:`~wfe_yaml._spec.WorkflowSpec`."""

    def __init__(self, ctx: ReadContext, fields: FieldReader, steps: StepReader) -> None:
        self.ctx = ctx
        self.fields = fields
        self.steps = steps

    def read(self, node: CommentedMap) -> WorkflowSpec | None:
        """The workflow of ``node`` (``None`` without a usable ``id``)."""
        mark = self.ctx.node_mark(node)
        self.ctx.check_keys(node, schema.WORKFLOW_KEYS, "workflow")
        workflow_id = self.fields.text_field(node, "id", required=True)
        version = self.fields.int_field(
            node, "version", 1, minimum=1, maximum=MAX_DEFINITION_VERSION
        )
        spec = WorkflowSpec(
            id=workflow_id or "",
            version=version or 1,
            mark=mark,
            file=self.ctx.file,
            description=self.fields.text_field(node, "description"),
        )
        spec.inputs = self._declarations(node, "inputs")
        spec.outputs = self._declarations(node, "outputs")
        for name in spec.outputs:
            if name in spec.inputs:
                self.ctx.problem(
                    self.ctx.key_mark(node["outputs"], name),
                    f"output {name!r} has the name of a declared input; an output may not "
                    "overwrite an input (give it another name)",
                )
        if "error_behavior" in node:
            spec.error_behavior = self.fields.error_behavior(node, "error_behavior")
        steps = node.get("steps")
        if not isinstance(steps, CommentedSeq) or len(steps) == 0:
            self.ctx.problem(
                self.ctx.value_mark(node, "steps") if "steps" in node else mark,
                "a workflow needs `steps:`, a non-empty list of steps",
            )
        else:
            spec.steps = self.steps.read_list(steps, spec)
        return spec if workflow_id else None

    def _declarations(self, node: CommentedMap, key: str) -> dict[str, ValueType]:
        if key not in node or node[key] is None:
            return {}
        declared = node[key]
        if not isinstance(declared, CommentedMap):
            self.ctx.problem(
                self.ctx.value_mark(node, key),
                f"`{key}:` must map names to types, e.g. {{branch: string, retries: integer?}}",
            )
            return {}
        found: dict[str, ValueType] = {}
        for name in declared:
            value = declared[name]
            mark = self.ctx.value_mark(declared, name)
            if not isinstance(name, str) or not name:
                self.ctx.problem(self.ctx.key_mark(declared, name), f"{key} names must be strings")
                continue
            if isinstance(value, CommentedMap):
                # The long form {type: integer, description: ...}.
                self.ctx.check_keys(value, schema.DECLARATION_KEYS, f"{key} {name!r}")
                value = value.get("type", "any")
            try:
                found[name] = ValueType.parse(value)
            except ValueError as exc:
                self.ctx.problem(mark, f"{key} {name!r}: {exc}")
        return found
