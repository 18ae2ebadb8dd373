"""The step bodies YAML workflows compile to.

A plain YAML step is one :class:`ExecutorStep`; ``parallel:`` is a :class:`Parallel`
container. A step with ``on_failure`` or ``ensure`` hooks becomes a :class:`Guard` that runs
phases one after the other (the step and its ``on_success``, then ``on_failure`` if that
failed, then ``ensure``), each inside a :class:`Phase`. A phase is a saga to the engine, so a
failure inside it is caught there (nothing in YAML has compensations) instead of failing the
workflow; the guard then fails with the first error once its hooks have run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from wfe_core import ExecutionResult, StepBody
from wfe_core.models import PointerStatus
from wfe_core.providers import StepExecutor
from wfe_yaml import interpolation as ip
from wfe_yaml.conditions import Condition
from wfe_yaml.errors import StepFailedError
from wfe_yaml.types import ValueType, check_values

if TYPE_CHECKING:
    from wfe_core import StepContext

logger = logging.getLogger("wfe_yaml")

#: ``pointer.extensions`` key where a YAML step records its result (exit code, output tails).
RESULT_KEY = "result"
#: The outcome (and recorded result) of a step whose ``when`` condition did not hold.
SKIPPED: dict[str, Any] = {"skipped": True}
_WHEN_KEY = "wfe_yaml.when"


def record_result(ctx: StepContext, result: Mapping[str, Any]) -> None:
    """Keep ``result`` on the step's execution pointer (saved with the step's completion)."""
    ctx.pointer.extensions[RESULT_KEY] = dict(result)


def _condition_holds(ctx: StepContext, when: Condition | None, config: Mapping[str, Any]) -> bool:
    """Evaluate ``when`` once per step visit (a step that waits runs again later, and then
    must not change its mind)."""
    if when is None:
        return True
    decided = ctx.pointer.extensions.get(_WHEN_KEY)
    if decided is None:
        decided = when.evaluate(ctx.data, config)
        ctx.pointer.extensions[_WHEN_KEY] = decided
    return bool(decided)


def _skip(ctx: StepContext, name: str) -> ExecutionResult:
    logger.info(
        "step %s skipped: its condition does not hold",
        name,
        extra={"workflow_id": ctx.workflow_id, "step_name": name},
    )
    record_result(ctx, SKIPPED)
    return ExecutionResult.outcome(dict(SKIPPED))


@attrs.frozen
class LeafPlan:
    """Everything one run of a YAML step of a ``type:`` needs."""

    name: str
    type_name: str
    executor: StepExecutor
    config: Mapping[str, Any]
    when: Condition | None = None
    #: The load-time values (``--set``), for conditions that read ``config.x``.
    values: Mapping[str, Any] = attrs.Factory(dict)
    #: Declared types of the workflow's outputs: step outputs of these keys are converted.
    output_types: Mapping[str, ValueType] = attrs.Factory(dict)
    #: The workflow's declared inputs: no step output may carry one of these names.
    input_names: frozenset[str] = frozenset()


class ExecutorStep(StepBody):
    """Runs a step of a ``type:`` through its :class:`~wfe_core.providers.StepExecutor`."""

    def __init__(self, plan: LeafPlan) -> None:
        self.plan = plan

    async def run(self, ctx: StepContext) -> ExecutionResult:
        plan = self.plan
        if not _condition_holds(ctx, plan.when, plan.values):
            return _skip(ctx, plan.name)
        config = plan.config
        if not getattr(plan.executor, "interpolates_itself", False):
            data = ctx.data
            config = ip.render(
                dict(config),
                lambda ref: ip.resolve(ref, data, plan.values),
                only=lambda ref: ref.is_runtime,
            )
        result = await plan.executor.execute(config, ctx)
        if isinstance(result.output, Mapping) and plan.input_names:
            # Outputs are merged into the workflow data, where the inputs are: an output of
            # an input's name would overwrite what the workflow was started with.
            clash = sorted(plan.input_names.intersection(result.output))
            if clash:
                raise StepFailedError(
                    f"step {plan.name} set output {clash[0]!r}, the name of a declared input; "
                    "an output may not overwrite an input (give the output another name)"
                )
        if result.output and plan.output_types:
            declared = {k: t for k, t in plan.output_types.items() if k in result.output}
            coerced, problems = check_values(declared, result.output, "output", partial=True)
            if problems:
                raise StepFailedError(f"step {plan.name}: " + "; ".join(problems))
            result = attrs.evolve(result, output={**result.output, **coerced})
        return result


class _FactoryBase:
    """A zero-argument body factory named after the YAML step (shown by ``display_name``)."""

    __name__: str

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__name__})"


class ExecutorStepFactory(_FactoryBase):
    """Builds a fresh :class:`ExecutorStep` for every run."""

    def __init__(self, plan: LeafPlan) -> None:
        self.plan = plan
        self.__name__ = plan.name

    def __call__(self) -> ExecutorStep:
        return ExecutorStep(self.plan)


class Parallel(StepBody):
    """Runs every child branch once, concurrently (``parallel:``), unless ``when`` says no."""

    refuses_error_behavior = "parallel"

    def __init__(self, name: str, when: Condition | None, values: Mapping[str, Any]) -> None:
        self.name = name
        self.when = when
        self.values = values

    async def run(self, ctx: StepContext) -> ExecutionResult:
        if ctx.persistence_data is None:
            if not _condition_holds(ctx, self.when, self.values):
                return _skip(ctx, self.name)
            return ExecutionResult.branch([ctx.item], {"started": True})
        return ExecutionResult.next()


class ParallelFactory(_FactoryBase):
    """Builds :class:`Parallel` bodies."""

    #: What :attr:`Parallel.refuses_error_behavior` says, readable without building one.
    refuses_error_behavior: ClassVar[str] = "parallel"

    def __init__(self, name: str, when: Condition | None, values: Mapping[str, Any]) -> None:
        self.args = (name, when, values)
        self.__name__ = name

    def __call__(self) -> Parallel:
        return Parallel(*self.args)


#: The phases of a guarded step, in the order they run.
PHASES = ("main", "failure", "ensure")


class Phase(StepBody):
    """One phase of a :class:`Guard`: runs its branch when the guard is in this phase.

    Its step definition is a saga, so a failure inside is caught here (and its branch's
    active steps are cancelled) rather than failing the workflow.
    """

    phase: str = ""

    async def run(self, ctx: StepContext) -> ExecutionResult:
        if ctx.persistence_data is None and ctx.item == self.phase:
            return ExecutionResult.branch([ctx.item], {"started": True})
        return ExecutionResult.next()


class Guard(StepBody):
    """A step with hooks: runs its phases in order and fails, after ``ensure``, with the
    first error of any phase."""

    #: It reads its finished phases' pointers (see ``_phase_error``).
    reads_history = True

    def __init__(
        self,
        name: str,
        phases: Mapping[str, int],
        when: Condition | None,
        values: Mapping[str, Any],
    ) -> None:
        self.name = name
        #: Phase name → step id of its :class:`Phase` child.
        self.phases = phases
        self.when = when
        self.values = values

    async def run(self, ctx: StepContext) -> ExecutionResult:
        state = ctx.persistence_data
        if state is None:
            if not _condition_holds(ctx, self.when, self.values):
                return _skip(ctx, self.name)
            return ExecutionResult.branch(["main"], {"phase": "main", "errors": []})
        phase = str(state["phase"])
        errors = [str(e) for e in state.get("errors", [])]
        error = _phase_error(ctx, self.phases[phase], phase)
        if error is not None:
            errors.append(error)
        following = None
        if phase == "main" and errors and "failure" in self.phases:
            following = "failure"
        elif phase in ("main", "failure") and "ensure" in self.phases:
            following = "ensure"
        if following is not None:
            return ExecutionResult.branch([following], {"phase": following, "errors": errors})
        if errors:
            more = f" (and {len(errors) - 1} more error(s) in its hooks)" if len(errors) > 1 else ""
            raise StepFailedError(errors[0] + more)
        return ExecutionResult.next()


def _phase_error(ctx: StepContext, phase_step: int, phase: str) -> str | None:
    """The first error inside the last run of phase ``phase``, if it failed."""
    instance = ctx.workflow
    runs = [
        instance.pointer(child)
        for child in ctx.pointer.children
        if instance.pointer(child).step_id == phase_step
        and instance.pointer(child).context_item == phase
    ]
    # A phase is a saga with no compensation of its own: one that caught a failure ends
    # failed (compensated, were its own compensation to run).
    if not runs or runs[-1].status not in (PointerStatus.FAILED, PointerStatus.COMPENSATED):
        return None
    run = runs[-1]
    for pointer in instance.pointers:
        if (
            run.id in pointer.scope
            and pointer.error
            and pointer.status
            in (
                PointerStatus.FAILED,
                PointerStatus.COMPENSATED,
            )
        ):
            return f"step {pointer.step_name} failed: {pointer.error}"
    return f"phase {phase} of step {ctx.step.display_name} failed"


class GuardFactory(_FactoryBase):
    """Builds :class:`Guard` bodies."""

    #: What :attr:`Guard.reads_history` says, readable without building one.
    reads_history: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        phases: Mapping[str, int],
        when: Condition | None,
        values: Mapping[str, Any],
    ) -> None:
        self.args = (name, phases, when, values)
        self.__name__ = name

    def __call__(self) -> Guard:
        return Guard(*self.args)


class CheckOutputs(StepBody):
    """The last step of a YAML workflow with declared outputs: converts them to their types
    and fails when a required one was never set."""

    def __init__(self, declared: Mapping[str, ValueType]) -> None:
        self.declared = declared

    async def run(self, ctx: StepContext) -> ExecutionResult:
        data = ctx.data if isinstance(ctx.data, Mapping) else {}
        coerced, problems = check_values(self.declared, data, "output", partial=False)
        if problems:
            raise StepFailedError("bad workflow outputs: " + "; ".join(problems))
        return ExecutionResult.next(output=coerced or None)


class CheckOutputsFactory(_FactoryBase):
    """Builds :class:`CheckOutputs` bodies."""

    def __init__(self, declared: Mapping[str, ValueType]) -> None:
        self.declared = declared
        self.__name__ = "Check outputs"

    def __call__(self) -> CheckOutputs:
        return CheckOutputs(self.declared)
