"""The fluent :class:`WorkflowBuilder`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import attrs

from wfe_core.builder._bodies import body_source
from wfe_core.builder._external import ExternalWorkCalls
from wfe_core.builder._parallel import ParallelBuilder
from wfe_core.engine._data import get_field
from wfe_core.errors import DefinitionError
from wfe_core.models._definition import (
    ErrorBehavior,
    OutcomeRoute,
    StepDefinition,
    WorkflowDefinition,
)
from wfe_core.primitives import (
    Decide,
    Delay,
    EndWorkflow,
    ForEach,
    Fork,
    If,
    Recur,
    Schedule,
    Sequence,
    SubWorkflow,
    WaitFor,
    When,
    While,
)

D = TypeVar("D")

#: Builds a branch: ``lambda b: b.start_with(A).then(B)``.
BranchBuilder = Callable[["WorkflowBuilder[Any]"], Any]


@attrs.define
class _BuildState:
    """What every builder of one definition (the root and its branches) shares."""

    steps: list[StepDefinition] = attrs.field(factory=list)
    problems: list[str] = attrs.field(factory=list)
    default_error_behavior: ErrorBehavior | None = None
    #: ``attach(...)`` calls to resolve at ``build()``: (the step that jumps, the target id).
    attachments: list[tuple[int, str]] = attrs.field(factory=list)
    #: The container ``when(...)`` put around a step, by the step's id.
    switches: dict[int, int] = attrs.field(factory=dict)


@attrs.define
class _Cursor:
    """Where one builder (the root or a branch) stands; its parent reads ``first``."""

    #: The builder's first step (what a container starts as the branch).
    first: int | None = None
    #: The step that ``name``, ``input``, ``on_error``, ... set up.
    current: int | None = None
    #: The step the next step follows: the current one, or the container ``when(...)`` put
    #: around it.
    tail: int | None = None


class WorkflowBuilder(ExternalWorkCalls, Generic[D]):
    """Builds a :class:`~wfe_core.models.WorkflowDefinition` step by step.

    Each step method adds a step after the current one and makes it current; ``name``,
    ``id``, ``input``, ``output``, ``on_error``, ``compensate_with``, ``when`` and
    ``cancel_condition`` set up the current step. Branch arguments are callables that receive
    a fresh builder for the branch. Mistakes (empty branches, duplicate ids, ...) are collected
    and raised by :meth:`build` as one :class:`~wfe_core.errors.DefinitionError`.

    Inline callables (``then_fn``, or a function given to ``then``) may be sync or async; sync
    ones run on the event loop, so do blocking work in an async function with
    ``anyio.to_thread.run_sync``.
    """

    def __init__(
        self,
        data_type: type[D] = dict,  # type: ignore[assignment]
        *,
        _state: _BuildState | None = None,
        _cursor: _Cursor | None = None,
    ) -> None:
        self.data_type: type[D] = data_type
        self._root = _state is None
        self._state = _state if _state is not None else _BuildState()
        self._cursor = _cursor if _cursor is not None else _Cursor()

    # -- plumbing ----------------------------------------------------------------------------
    def _problem(self, message: str) -> None:
        self._state.problems.append(message)

    def _new_step(
        self,
        body: Any,
        *,
        name: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        is_saga: bool = False,
    ) -> StepDefinition:
        """A new step, not yet routed from anything."""
        source = body_source(body)
        step_id = len(self._state.steps)
        if isinstance(source, str):
            self._problem(f"step {step_id}: {source}")
            source = Fork  # a placeholder so building can go on and report every problem
        step = StepDefinition(
            id=step_id, body=source, name=name, inputs=dict(inputs or {}), is_saga=is_saga
        )
        self._state.steps.append(step)
        return step

    def _add(
        self,
        body: Any,
        *,
        name: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        is_saga: bool = False,
    ) -> StepDefinition:
        """A new step after the current one; it becomes current."""
        step = self._new_step(body, name=name, inputs=inputs, is_saga=is_saga)
        cursor = self._cursor
        if cursor.tail is not None:
            self._state.steps[cursor.tail].outcomes.append(OutcomeRoute(step.id))
        if cursor.first is None:
            cursor.first = step.id
        cursor.current = cursor.tail = step.id
        return step

    def _branch(self, build: BranchBuilder, where: str) -> int | None:
        """Build a branch with a new builder sharing this definition; its first step id."""
        cursor = _Cursor()
        build(WorkflowBuilder(self.data_type, _state=self._state, _cursor=cursor))
        if cursor.first is None:
            self._problem(f"empty branch in {where} (a branch needs at least one step)")
        return cursor.first

    def _current_step(self, method: str) -> StepDefinition | None:
        if self._cursor.current is None:
            self._problem(f".{method}() called before any step")
            return None
        return self._state.steps[self._cursor.current]

    # -- steps -------------------------------------------------------------------------------
    def start_with(self, step: Any) -> WorkflowBuilder[D]:
        """The first step: a StepBody subclass, a body factory, or a callable taking ctx."""
        if self._cursor.first is not None:
            self._problem("start_with() called twice on one builder; use then()")
        self._add(step)
        return self

    def then(self, step: Any) -> WorkflowBuilder[D]:
        """The next step: a StepBody subclass, a body factory, or a callable taking ctx."""
        self._add(step)
        return self

    def then_fn(self, fn: Callable[..., Any]) -> WorkflowBuilder[D]:
        """The next step is ``fn(ctx)`` (sync or async), returning an ExecutionResult or None."""
        from wfe_core.primitives._inline import InlineStepFactory

        self._add(InlineStepFactory(fn))
        return self

    # -- setting up the current step ---------------------------------------------------------
    def name(self, name: str) -> WorkflowBuilder[D]:
        """Name the current step (in logs, lifecycle events and pointers)."""
        step = self._current_step("name")
        if step is not None:
            step.name = name
        return self

    def id(self, external_id: str) -> WorkflowBuilder[D]:
        """Give the current step an id, unique in the definition."""
        step = self._current_step("id")
        if step is not None:
            step.external_id = external_id
        return self

    def input(self, **mappings: Any) -> WorkflowBuilder[D]:
        """Set attributes of the current step's body before it runs: each value is
        ``fn(data)`` or ``fn(data, ctx)``, or a constant."""
        step = self._current_step("input")
        if step is not None:
            step.inputs.update(mappings)
        return self

    def output(self, **mappings: Any) -> WorkflowBuilder[D]:
        """Set workflow data fields when the current step is done: each value is
        ``fn(step)`` or ``fn(step, data)`` of the finished body, or a constant."""
        step = self._current_step("output")
        if step is not None:
            step.outputs.update(mappings)
        return self

    def on_error(self, behavior: ErrorBehavior) -> WorkflowBuilder[D]:
        """How failures of the current step are handled; before any step (on the root
        builder), the definition's default."""
        if self._cursor.current is None and self._root:
            self._state.default_error_behavior = behavior
            return self
        step = self._current_step("on_error")
        if step is not None:
            step.error_behavior = behavior
        return self

    def compensate_with(self, step: Any) -> WorkflowBuilder[D]:
        """The step that undoes the current one when its saga compensates."""
        current = self._current_step("compensate_with")
        if current is not None:
            compensation = self._new_step(step)
            compensation.name = f"Compensate {current.display_name}"
            current.compensation_step_id = compensation.id
        return self

    def compensate_with_sequence(self, body: BranchBuilder) -> WorkflowBuilder[D]:
        """The steps (the branch ``body``, in order) that undo the current one when its saga
        compensates: a multi-step ``compensate_with``."""
        current = self._current_step("compensate_with_sequence")
        if current is not None:
            compensation = self._new_step(Sequence, name=f"Compensate {current.display_name}")
            start = self._branch(body, "compensate_with_sequence")
            if start is not None:
                compensation.children.append(start)
            current.compensation_step_id = compensation.id
        return self

    def when(self, value: Any, body: BranchBuilder) -> WorkflowBuilder[D]:
        """Run the branch ``body`` when the current step ends with outcome ``value``
        (``ExecutionResult.outcome(value)``). Several ``when`` calls on one step add one
        branch each (every matching one runs); the step after them runs once the step and
        the branches it chose have finished (at once when none matched)."""
        step = self._current_step("when")
        if step is None:
            return self
        if value is None:
            self._problem(
                f"step {step.id} ({step.display_name}): when(None, ...) would match every "
                "outcome; give the outcome value to branch on"
            )
            return self
        self._switch_around(step)
        start = self._branch(body, f"when {value!r}")
        if start is not None:
            step.outcomes.append(OutcomeRoute(start, value))
        return self

    def _switch_around(self, step: StepDefinition) -> None:
        """Put ``step`` in a container (once) so that what follows its ``when`` branches
        waits for them: routes and the branch start that led to ``step`` lead to it."""
        state = self._state
        if step.id in state.switches:
            return
        switch = self._new_step(Sequence, name=f"When {step.display_name}")
        switch.children.append(step.id)
        state.switches[step.id] = switch.id
        for other in state.steps:
            other.outcomes[:] = [
                OutcomeRoute(switch.id, route.value) if route.next_step == step.id else route
                for route in other.outcomes
            ]
        cursor = self._cursor
        if cursor.first == step.id:
            cursor.first = switch.id
        if cursor.tail == step.id:
            cursor.tail = switch.id

    def attach(self, external_id: str) -> WorkflowBuilder[D]:
        """Go on at the step given ``.id(external_id)`` (anywhere in the definition, before
        or after this call) once the current step is done: a jump, e.g. back to repeat."""
        if self._cursor.tail is None:
            self._problem(f".attach({external_id!r}) called before any step")
        else:
            self._state.attachments.append((self._cursor.tail, external_id))
        return self

    def cancel_condition(
        self, condition: Callable[[Any], Any], *, proceed_after_cancel: bool = False
    ) -> WorkflowBuilder[D]:
        """Cancel the current step (typically a ``wait_for``) once ``condition(data)`` is
        true after any step has run; with ``proceed_after_cancel`` the flow then goes on
        after it, else that path ends there."""
        step = self._current_step("cancel_condition")
        if step is None:
            return self
        given: object = condition  # checked: callers need not be type-checked
        if not callable(given):
            self._problem(
                f"step {step.id} ({step.display_name}): cancel_condition() takes "
                f"fn(data), not {condition!r}"
            )
            return self
        step.cancel_condition = condition
        step.proceed_after_cancel = proceed_after_cancel
        return self

    # -- control flow ------------------------------------------------------------------------
    def parallel(self, build: Callable[[ParallelBuilder], Any]) -> WorkflowBuilder[D]:
        """Run branches concurrently; go on when all have finished."""
        step = self._add(Sequence, name="Parallel")
        branches = ParallelBuilder(self._branch)
        build(branches)
        if not branches.starts:
            self._problem(f"parallel step {step.id} has no branches")
        step.children.extend(branches.starts)
        return self

    def if_do(self, condition: Callable[..., Any], then: BranchBuilder) -> WorkflowBuilder[D]:
        """Run the branch ``then`` once when ``condition(data)`` is true."""
        step = self._add(If, name="If", inputs={"condition": condition})
        self._children(step, then, "if_do")
        return self

    def while_do(self, condition: Callable[..., Any], body: BranchBuilder) -> WorkflowBuilder[D]:
        """Run the branch ``body`` while ``condition(data)`` is true."""
        step = self._add(While, name="While", inputs={"condition": condition})
        self._children(step, body, "while_do")
        return self

    def for_each(
        self, items: Callable[..., Any], body: BranchBuilder, *, parallel: bool = True
    ) -> WorkflowBuilder[D]:
        """Run the branch ``body`` once per item of ``items(data)`` (``ctx.item``), all at
        once or (``parallel=False``) one after the other."""
        step = self._add(
            ForEach, name="ForEach", inputs={"collection": items, "parallel": parallel}
        )
        self._children(step, body, "for_each")
        return self

    def decide(
        self, selector: Callable[..., Any], cases: Mapping[Any, BranchBuilder]
    ) -> WorkflowBuilder[D]:
        """Run the branch of ``cases`` whose key equals ``selector(data)`` (none when no key
        matches), then go on."""
        step = self._add(Decide, name="Decide")
        if not cases:
            self._problem(f"decide step {step.id} has no cases")
        for value, build in cases.items():
            when = self._new_step(When, name=f"When {value!r}", inputs={"value": selector})
            when.inputs["case"] = value
            step.children.append(when.id)
            self._children(when, build, f"decide case {value!r}")
        return self

    def saga(self, body: BranchBuilder) -> WorkflowBuilder[D]:
        """Run ``body`` as a saga: when a step in it fails, the compensations of its completed
        steps run in reverse order, then the workflow goes on after the saga."""
        step = self._add(Sequence, name="Saga", is_saga=True)
        self._children(step, body, "saga")
        return self

    def wait_for(
        self,
        event_name: str,
        key: Any,
        effective_date: Any = None,
        timeout: Any = None,
    ) -> WorkflowBuilder[D]:
        """Wait for event ``event_name`` whose key is ``key(data)`` (or a constant), at or
        after ``effective_date(data)`` (``None``: also events published earlier). With
        ``timeout`` (a timedelta, seconds, or ``fn(data)``) go on without it when it expires.
        The event's data is ``step.event_data`` in ``.output(...)``."""
        self._add(
            WaitFor,
            name=f"WaitFor {event_name}",
            inputs={
                "event_name": event_name,
                "event_key": key,
                "effective_date": effective_date,
                "timeout": timeout,
            },
        )
        return self

    def delay(self, period: Any) -> WorkflowBuilder[D]:
        """Wait ``period(data)`` (a timedelta or seconds; or a constant) then go on."""
        self._add(Delay, name="Delay", inputs={"period": period})
        return self

    def schedule(self, interval: Any, body: BranchBuilder) -> WorkflowBuilder[D]:
        """Run the branch ``body`` once, ``interval(data)`` from now, in the background: the
        workflow goes on at once and finishes only after the branch has run."""
        fork = self._add(Fork, name="Schedule")
        scheduled = self._new_step(Schedule, name="Scheduled", inputs={"interval": interval})
        fork.outcomes.append(OutcomeRoute(scheduled.id))
        self._children(scheduled, body, "schedule")
        return self

    def recur(
        self, interval: Any, until: Callable[..., Any], body: BranchBuilder
    ) -> WorkflowBuilder[D]:
        """Every ``interval(data)`` run the branch ``body`` in the background until
        ``until(data)`` is true; the workflow goes on at once and finishes only after."""
        fork = self._add(Fork, name="Recur")
        recurring = self._new_step(
            Recur, name="Recurring", inputs={"interval": interval, "stop": until}
        )
        fork.outcomes.append(OutcomeRoute(recurring.id))
        self._children(recurring, body, "recur")
        return self

    def sub_workflow(
        self,
        definition_id: str,
        version: int | None = None,
        inputs: Callable[..., Any] | None = None,
        outputs: Mapping[str, str] | None = None,
    ) -> WorkflowBuilder[D]:
        """Run workflow ``definition_id`` as a child with data ``inputs(data)`` and wait for
        it; ``outputs`` maps parent data fields to fields of the child's final data. A failed
        or terminated child fails this step."""
        step = self._add(
            SubWorkflow,
            name=f"SubWorkflow {definition_id}",
            inputs={"definition_id": definition_id, "version": version, "child_data": inputs},
        )
        for parent_field, child_field in (outputs or {}).items():
            step.outputs[parent_field] = _ChildField(child_field)
        return self

    def end_workflow(self) -> WorkflowBuilder[D]:
        """Complete the workflow here (other active steps are cancelled)."""
        self._add(EndWorkflow, name="EndWorkflow")
        return self

    def _children(self, step: StepDefinition, build: BranchBuilder, where: str) -> None:
        start = self._branch(build, where)
        if start is not None:
            step.children.append(start)

    # -- result ------------------------------------------------------------------------------
    def build(
        self,
        definition_id: str,
        version: int = 1,
        *,
        description: str | None = None,
        default_error_behavior: ErrorBehavior | None = None,
    ) -> WorkflowDefinition:
        """The finished definition; :class:`~wfe_core.errors.DefinitionError` lists every
        problem found."""
        problems = list(self._state.problems)
        problems.extend(self._resolve_attachments())
        for step_id, switch_id in self._state.switches.items():
            # Named now: the step may have been named after its when(...) calls.
            self._state.steps[switch_id].name = f"When {self._state.steps[step_id].display_name}"
        problems.extend(_container_error_problems(self._state.steps))
        if not self._root:
            problems.append("build() called on a branch builder")
        if self._cursor.first is None:
            problems.append("the workflow has no steps (start with start_with())")
        if problems:
            raise DefinitionError(
                f"workflow {definition_id!r} v{version} is invalid: " + "; ".join(problems)
            )
        definition = WorkflowDefinition(
            id=definition_id,
            version=version,
            steps=self._state.steps,
            data_type=self.data_type,
            default_error_behavior=default_error_behavior or self._state.default_error_behavior,
            description=description,
            start_step=self._cursor.first or 0,
        )
        definition.validate()
        return definition

    def _resolve_attachments(self) -> list[str]:
        """Route every ``attach(...)`` to its target (once: ``build()`` may run again)."""
        state = self._state
        by_id = {s.external_id: s.id for s in state.steps if s.external_id is not None}
        problems: list[str] = []
        for source, external_id in state.attachments:
            target = by_id.get(external_id)
            if target is None:
                known = ", ".join(repr(i) for i in sorted(by_id)) or "none"
                problems.append(
                    f"step {source} ({state.steps[source].display_name}): attach"
                    f"({external_id!r}) names no step (step ids given with .id(): {known})"
                )
                continue
            # A step with when(...) branches is entered through its container, so that
            # what follows them still waits for them.
            target = state.switches.get(target, target)
            state.steps[source].outcomes.append(OutcomeRoute(target))
        state.attachments.clear()
        return problems


#: What the builder's containers are called in messages, by the name it gives their step.
_CONTAINERS = {
    "Parallel": "parallel",
    "If": "if_do",
    "While": "while_do",
    "ForEach": "for_each",
    "Decide": "decide",
    "Schedule": "schedule",
    "Recur": "recur",
}


def _container_error_problems(steps: list[StepDefinition]) -> list[str]:
    """Containers other than a saga cannot honour an error behaviour: a failure inside them
    is handled by the failing step (or the definition's default), so one set on them would
    only ever see the container's own condition fail, and be silently ignored otherwise."""
    problems = []
    for step in steps:
        container = bool(step.children) or step.body is Fork
        if step.error_behavior is None or step.is_saga or not container:
            continue
        kind = _CONTAINERS.get(step.name or "", "container")
        problems.append(
            f"step {step.id} ({step.display_name}): on_error() on a {kind} step is not "
            "supported (failures inside it are handled by the failing step); set on_error on "
            "the steps inside, or wrap them in a saga, whose on_error applies once it has "
            "compensated"
        )
    return problems


@attrs.frozen
class _ChildField:
    """Output mapping of a sub-workflow: one field of the finished child's data."""

    field: str

    def __call__(self, step: SubWorkflow) -> Any:
        return get_field(step.result, self.field)
