"""The parsed model: YAML workflows and steps as read from a file, before compiling."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from wfe_core.models import ErrorBehavior
from wfe_core.providers import StepExecutor
from wfe_yaml.conditions import Condition
from wfe_yaml.errors import Mark
from wfe_yaml.types import ValueType

if TYPE_CHECKING:
    from collections.abc import Iterator


@attrs.define
class BranchSpec:
    """Steps a step runs as one of its branches when it selects them (an ``approval``
    step's option when chosen, or its escalation when it fires): ``selection`` is what the
    engine's ``UserTask`` selects (``{"kind": "option", "value": ...}`` or
    ``{"kind": "escalation", "index": ...}``), ``label`` names it in step names."""

    selection: dict[str, Any]
    label: str
    steps: list[StepSpec]


@attrs.define
class StepSpec:
    """A YAML step as read from the file."""

    name: str
    mark: Mark
    type_name: str | None = None
    config: dict[str, Any] = attrs.Factory(dict)
    parallel: list[StepSpec] | None = None
    when: Condition | None = None
    error_behavior: ErrorBehavior | None = None
    on_success: list[StepSpec] = attrs.Factory(list)
    on_failure: list[StepSpec] = attrs.Factory(list)
    ensure: list[StepSpec] = attrs.Factory(list)
    #: Steps run when the step's wait times out (``type: wait`` with ``timeout``).
    on_timeout: list[StepSpec] = attrs.Factory(list)
    #: Steps run when the step selects them (``steps:`` of an approval's options and
    #: escalations).
    branches: list[BranchSpec] = attrs.Factory(list)
    executor: StepExecutor | None = None
    description: str | None = None

    def walk(self) -> Iterator[StepSpec]:
        """This step and every step inside it (children and hooks)."""
        yield self
        hooks = (
            self.on_success,
            self.on_failure,
            self.ensure,
            self.on_timeout,
            *(branch.steps for branch in self.branches),
        )
        for child in [*(self.parallel or ()), *(step for hook in hooks for step in hook)]:
            yield from child.walk()


@attrs.define
class WorkflowSpec:
    """A YAML workflow as read from the file."""

    id: str
    version: int
    mark: Mark
    file: str
    description: str | None = None
    inputs: dict[str, ValueType] = attrs.Factory(dict)
    outputs: dict[str, ValueType] = attrs.Factory(dict)
    error_behavior: ErrorBehavior | None = None
    steps: list[StepSpec] = attrs.Factory(list)
    from_include: bool = False

    def all_steps(self) -> Iterator[StepSpec]:
        """Every step of the workflow, at any depth."""
        for step in self.steps:
            yield from step.walk()
