"""Checks across the workflows of one load: duplicate workflows and step names, and what
``type: workflow`` steps ask of the workflows they start (inputs, outputs, no cycles)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from wfe_yaml import interpolation as ip
from wfe_yaml._context import did_you_mean

if TYPE_CHECKING:
    from wfe_yaml._context import ReadContext
    from wfe_yaml._spec import StepSpec, WorkflowSpec
    from wfe_yaml.errors import Mark


class WorkflowSetChecker:
    """Checks the workflows read by one load, recording problems in ``ctx``."""

    def __init__(self, ctx: ReadContext) -> None:
        self.ctx = ctx

    def check(self, specs: list[WorkflowSpec]) -> None:
        """Duplicates first (a later copy is skipped), then children and copied outputs."""
        by_id: dict[tuple[str, int], WorkflowSpec] = {}
        for spec in specs:
            key = (spec.id, spec.version)
            if key in by_id:
                first = by_id[key]
                if not spec.from_include or not first.from_include or first.file != spec.file:
                    self.ctx.problem(
                        spec.mark,
                        f"duplicate workflow {spec.id!r} v{spec.version} (first at {first.mark})",
                    )
                continue
            by_id[key] = spec
            names: dict[str, Mark] = {}
            for step in spec.all_steps():
                if step.name in names:
                    self.ctx.problem(
                        step.mark,
                        f"duplicate step name {step.name!r} in workflow "
                        f"{spec.id!r} (first at {names[step.name]})",
                    )
                else:
                    names[step.name] = step.mark
        latest: dict[str, WorkflowSpec] = {}
        for spec in by_id.values():
            if spec.id not in latest or spec.version > latest[spec.id].version:
                latest[spec.id] = spec
        self._check_children(by_id, latest)
        for spec in by_id.values():
            self._check_copied_outputs(spec)

    def _check_copied_outputs(self, spec: WorkflowSpec) -> None:
        """A ``type: workflow`` step may not copy an output named like one of ``spec``'s
        declared inputs into its data (it would overwrite the input), nor a step store what
        it received (``output:`` of wait, approval, activity) under such a name."""
        for step in spec.all_steps():
            output_key: str | None = getattr(step.executor, "output_key", None)
            stored = step.config.get(output_key) if output_key is not None else None
            if isinstance(stored, str) and stored in spec.inputs:
                self.ctx.problem(
                    step.mark,
                    f"step {step.name!r} stores its result as {stored!r}, the name of a "
                    f"declared input of workflow {spec.id!r}; an output may not overwrite an "
                    "input",
                )
            copied = step.config.get("outputs") if step.type_name == "workflow" else None
            if not isinstance(copied, list):
                continue
            for name in copied:
                if name in spec.inputs:
                    self.ctx.problem(
                        step.mark,
                        f"step {step.name!r} copies output {name!r}, the name of a declared "
                        f"input of workflow {spec.id!r}; an output may not overwrite an input",
                    )

    def _child_of(
        self,
        step: StepSpec,
        by_id: Mapping[tuple[str, int], WorkflowSpec],
        latest: Mapping[str, WorkflowSpec],
    ) -> WorkflowSpec | None:
        if step.type_name != "workflow":
            return None
        child_id = step.config.get("workflow")
        if not isinstance(child_id, str) or _has_references(child_id):
            return None
        version = step.config.get("version")
        if isinstance(version, int) and not isinstance(version, bool):
            return by_id.get((child_id, version))
        return latest.get(child_id)

    def _check_children(
        self,
        by_id: Mapping[tuple[str, int], WorkflowSpec],
        latest: Mapping[str, WorkflowSpec],
    ) -> None:
        edges: dict[tuple[str, int], list[tuple[StepSpec, WorkflowSpec]]] = {}
        for key, spec in by_id.items():
            for step in spec.all_steps():
                child = self._child_of(step, by_id, latest)
                if child is None:
                    continue
                edges.setdefault(key, []).append((step, child))
                self._check_child_io(step, child)
        # Depth-first search for cycles; each cycle is reported once, at the step that
        # closes it.
        state: dict[tuple[str, int], int] = {}
        path: list[tuple[str, int]] = []

        def visit(key: tuple[str, int]) -> None:
            state[key] = 1
            path.append(key)
            for step, child in edges.get(key, []):
                child_key = (child.id, child.version)
                if state.get(child_key) == 1:
                    cycle = [*path[path.index(child_key) :], child_key]
                    self.ctx.problem(
                        step.mark,
                        "circular sub-workflow reference: "
                        + " -> ".join(f"{c[0]} v{c[1]}" for c in cycle),
                    )
                elif child_key not in state:
                    visit(child_key)
            path.pop()
            state[key] = 2

        for key in by_id:
            if key not in state:
                visit(key)

    def _check_child_io(self, step: StepSpec, child: WorkflowSpec) -> None:
        inputs = step.config.get("inputs") or {}
        if isinstance(inputs, Mapping):
            for name in inputs:
                if child.inputs and name not in child.inputs:
                    self.ctx.problem(
                        step.mark,
                        f"step {step.name!r}: workflow {child.id!r} has no "
                        f"input {name!r}{did_you_mean(name, list(child.inputs))}",
                    )
            for name, value_type in child.inputs.items():
                if not value_type.optional and name not in inputs:
                    self.ctx.problem(
                        step.mark,
                        f"step {step.name!r}: workflow {child.id!r} needs "
                        f"input {name!r} ({value_type})",
                    )
        if "outputs" not in step.config and child.outputs:
            step.config["outputs"] = list(child.outputs)


def _has_references(text: str) -> bool:
    """Whether ``text`` holds references; a malformed one counts (reading the step's config
    reported it already)."""
    try:
        return bool(ip.references(text))
    except ip.InterpolationError:
        return True
