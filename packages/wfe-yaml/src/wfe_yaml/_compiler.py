"""Compiling a checked :class:`~wfe_yaml._spec.WorkflowSpec` into the engine's
:class:`~wfe_core.models.WorkflowDefinition`: one engine step per YAML step, guards and
phases around steps with hooks, an output check at the end."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from wfe_core.models import (
    ErrorBehavior,
    ErrorBehaviorKind,
    OutcomeRoute,
    StepDefinition,
    WorkflowDefinition,
)
from wfe_core.primitives import UserTaskChoice
from wfe_yaml.steps import (
    CheckOutputsFactory,
    ExecutorStepFactory,
    GuardFactory,
    LeafPlan,
    ParallelFactory,
    Phase,
)
from wfe_yaml.types import PrepareInputs

if TYPE_CHECKING:
    from collections.abc import Mapping

    from wfe_yaml._spec import StepSpec, WorkflowSpec
    from wfe_yaml.errors import Mark


class Compiler:
    """Turns one checked :class:`WorkflowSpec` into a :class:`WorkflowDefinition`."""

    def __init__(self, spec: WorkflowSpec, values: Mapping[str, Any]) -> None:
        self.spec = spec
        self.values = dict(values)
        self.steps: list[StepDefinition] = []

    def compile(self) -> WorkflowDefinition:
        spec = self.spec
        chain: list[int] = []
        chain.extend(self._step(step, spec.error_behavior) for step in spec.steps)
        if spec.outputs:
            chain.append(self._internal(CheckOutputsFactory(spec.outputs), spec.mark))
        self._route(chain)
        definition = WorkflowDefinition(
            id=spec.id,
            version=spec.version,
            steps=self.steps,
            data_type=dict,
            description=spec.description,
            start_step=chain[0],
            prepare_input=PrepareInputs(spec.id, spec.inputs) if spec.inputs else None,
            inputs=tuple(spec.inputs),
            outputs=tuple(spec.outputs),
        )
        definition.validate()
        return definition

    def _new(
        self,
        body: Any,
        name: str,
        mark: Mark,
        *,
        hidden: bool,
        kind: str,
        **fields: Any,
    ) -> StepDefinition:
        step = StepDefinition(
            id=len(self.steps),
            body=body,
            name=name,
            metadata={
                "source": str(mark),
                "file": mark.file,
                "line": mark.line,
                "hidden": hidden,
                "kind": kind,
            },
            **fields,
        )
        self.steps.append(step)
        return step

    def _internal(self, body: Any, mark: Mark) -> int:
        return self._new(body, body.__name__, mark, hidden=True, kind="check").id

    def _route(self, chain: list[int]) -> None:
        for before, after in itertools.pairwise(chain):
            self.steps[before].outcomes.append(OutcomeRoute(after))

    def _chain(self, specs: list[StepSpec], inherited: ErrorBehavior | None) -> int:
        ids = [self._step(s, inherited) for s in specs]
        self._route(ids)
        return ids[0]

    def _step(self, spec: StepSpec, inherited: ErrorBehavior | None) -> int:
        """Compile one YAML step; returns the id of its outermost engine step."""
        guarded = bool(spec.on_success or spec.on_failure or spec.ensure)
        when = None if guarded else spec.when
        condition = {} if spec.when is None else {"when": spec.when.describe()}
        # With hooks the guard around the step holds the condition (and is what is drawn).
        core_condition = {} if guarded else condition
        behavior = spec.error_behavior or inherited
        if spec.parallel is not None:
            core = self._new(
                ParallelFactory(spec.name, when, self.values),
                spec.name,
                spec.mark,
                hidden=False,
                kind="parallel",
                external_id=spec.name,
            )
            core.metadata.update(core_condition)
            core.children.extend(self._step(child, behavior) for child in spec.parallel)
        else:
            assert spec.executor is not None
            assert spec.type_name is not None
            config = spec.config
            branches_key = getattr(spec.executor, "branches_key", None)
            if spec.branches and branches_key is not None:
                # The step's body learns which selections have a branch (it branches only
                # into those), under a key its type names.
                config = {**config, branches_key: [b.selection for b in spec.branches]}
            plan = LeafPlan(
                name=spec.name,
                type_name=spec.type_name,
                executor=spec.executor,
                config=config,
                when=when,
                values=self.values,
                output_types=self.spec.outputs,
                input_names=frozenset(self.spec.inputs),
            )
            # A plain "fail" is what happens anyway; leaving it unset lets a guard's phase
            # catch the failure so on_failure and ensure run.
            if behavior is not None and behavior.kind == ErrorBehaviorKind.FAIL:
                behavior = None
            core = self._new(
                ExecutorStepFactory(plan),
                spec.name,
                spec.mark,
                hidden=False,
                kind=spec.type_name,
                external_id=spec.name,
                error_behavior=behavior,
            )
            core.metadata.update(core_condition)
            if spec.on_timeout:
                # The waiting step runs them as its child branch when its timeout fires,
                # and goes on along its own route once they are done.
                core.children.append(self._chain(spec.on_timeout, self.spec.error_behavior))
            for branch in spec.branches:
                # As the builder's with_option / with_escalation: a choice child per branch,
                # which runs its steps when the step selected it.
                choice = self._new(
                    UserTaskChoice,
                    f"{spec.name} ({branch.label})",
                    spec.mark,
                    hidden=True,
                    kind="choice",
                    inputs={"selection": branch.selection},
                )
                choice.children.append(self._chain(branch.steps, self.spec.error_behavior))
                core.children.append(choice.id)
        if not guarded:
            return core.id
        phases: dict[str, int] = {}
        hooks = {"main": None, "failure": spec.on_failure, "ensure": spec.ensure}
        default = self.spec.error_behavior
        for phase, members in hooks.items():
            if phase != "main" and not members:
                continue
            step = self._new(
                Phase,
                f"{spec.name} ({phase})",
                spec.mark,
                hidden=True,
                kind="phase",
                inputs={"phase": phase},
                is_saga=True,
            )
            phases[phase] = step.id
            if phase == "main":
                first = core.id
                if spec.on_success:
                    success = self._chain(spec.on_success, default)
                    core.outcomes.append(OutcomeRoute(success))
            else:
                assert members is not None
                first = self._chain(members, default)
            step.children.append(first)
        guard = self._new(
            GuardFactory(spec.name, phases, spec.when, self.values),
            spec.name,
            spec.mark,
            hidden=True,
            kind="guard",
        )
        guard.children.extend(phases.values())
        guard.metadata.update(condition)
        return guard.id
