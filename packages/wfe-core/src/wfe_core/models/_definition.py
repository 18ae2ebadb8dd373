"""Workflow definitions: a graph of steps, their routes, branches and error behaviours.

Definitions live in code (built with :class:`~wfe_core.builder.WorkflowBuilder` or loaded from
YAML); they are never persisted, only their id and version are.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import attrs

from wfe_core.errors import DefinitionError
from wfe_core.serialization import STORABLE, storage_problems

if TYPE_CHECKING:
    from wfe_core._step import StepBody

#: A step body: a :class:`~wfe_core.StepBody` subclass, or a zero-argument factory that
#: returns a new ``StepBody`` instance for every run.
StepBodySource = type["StepBody"] | Callable[[], "StepBody"]


class ErrorBehaviorKind(StrEnum):
    """What happens when a step raises."""

    RETRY = "retry"
    SUSPEND = "suspend"
    TERMINATE = "terminate"
    COMPENSATE = "compensate"
    FAIL = "fail"


@attrs.frozen
class ErrorBehavior:
    """How a failing step is handled.

    Without one (on the step or the definition) the workflow fails, except inside a saga,
    where the saga compensates. When ``retry`` runs out of retries, that same default applies.
    """

    kind: ErrorBehaviorKind
    #: Wait before the first retry.
    interval: timedelta = timedelta(seconds=60)
    #: Retries after the first failure; ``None``: retry for ever.
    max_retries: int | None = None
    #: Each retry waits ``backoff`` times longer than the one before.
    backoff: float = 1.0
    #: Upper bound of the wait between retries.
    max_interval: timedelta | None = None

    @classmethod
    def retry(
        cls,
        interval: timedelta | float = timedelta(seconds=60),
        max_retries: int | None = None,
        backoff: float = 1.0,
        max_interval: timedelta | float | None = None,
    ) -> ErrorBehavior:
        """Run the step again after ``interval`` (times ``backoff`` per retry, capped at
        ``max_interval``), at most ``max_retries`` times."""
        if max_retries is not None and max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if backoff < 1.0:
            raise ValueError("backoff must be >= 1")
        return cls(
            ErrorBehaviorKind.RETRY,
            interval=_delta(interval),
            max_retries=max_retries,
            backoff=backoff,
            max_interval=None if max_interval is None else _delta(max_interval),
        )

    @classmethod
    def suspend(cls) -> ErrorBehavior:
        """Suspend the workflow; resuming it runs the failed step again."""
        return cls(ErrorBehaviorKind.SUSPEND)

    @classmethod
    def terminate(cls) -> ErrorBehavior:
        """Terminate the workflow."""
        return cls(ErrorBehaviorKind.TERMINATE)

    @classmethod
    def compensate(cls) -> ErrorBehavior:
        """Undo the enclosing saga (or, outside one, the whole workflow) by running the
        compensation steps of the completed steps in reverse order."""
        return cls(ErrorBehaviorKind.COMPENSATE)

    @classmethod
    def fail(cls) -> ErrorBehavior:
        """Fail the workflow (the default)."""
        return cls(ErrorBehaviorKind.FAIL)

    def retry_delay(self, failures: int) -> timedelta:
        """The wait before the retry that follows failure number ``failures`` (1-based)."""
        cap = self.max_interval if self.max_interval is not None else MAX_RETRY_DELAY
        try:
            factor = float(self.backoff) ** max(failures - 1, 0)
        except OverflowError:
            return cap
        # Compared as float seconds first: interval * 2**50 overflows a timedelta (an
        # OverflowError in the middle of a run) long before it would be capped.
        if self.interval.total_seconds() * factor >= cap.total_seconds():
            return cap
        return self.interval * factor


def _delta(value: timedelta | float) -> timedelta:
    return value if isinstance(value, timedelta) else timedelta(seconds=value)


#: Sentinel value of a route followed whatever the step's outcome.
ANY_OUTCOME: Any = None


@attrs.frozen
class OutcomeRoute:
    """A route from a step to ``next_step``, followed when the step's outcome equals
    ``value`` (a route whose value is ``None`` is always followed)."""

    next_step: int
    value: Any = ANY_OUTCOME

    def matches(self, outcome: Any) -> bool:
        """Whether a step that ended with ``outcome`` follows this route."""
        return self.value is None or self.value == outcome


#: Computes an input of a step: ``fn(data)`` or ``fn(data, ctx)``; non-callables are constants.
InputMapping = Any
#: Computes a data field from the finished step body: ``fn(step)``; non-callables are constants.
OutputMapping = Any


@attrs.define
class StepDefinition:
    """One step of a definition.

    ``id`` is the step's index in :attr:`WorkflowDefinition.steps`. ``children`` are the first
    steps of the step's child branches (containers). ``compensation_step_id`` names the step
    that undoes this one in a saga. ``inputs`` set attributes of the body before it runs;
    ``outputs`` set fields of the workflow data after it is done. ``cancel_condition``, when
    set, is ``fn(data)``: once it is true after any step, the step's active pointers are
    cancelled (and the flow goes on after them when ``proceed_after_cancel``).
    """

    id: int
    body: StepBodySource
    name: str | None = None
    external_id: str | None = None
    inputs: dict[str, InputMapping] = attrs.field(factory=dict)
    outputs: dict[str, OutputMapping] = attrs.field(factory=dict)
    outcomes: list[OutcomeRoute] = attrs.field(factory=list)
    children: list[int] = attrs.field(factory=list)
    error_behavior: ErrorBehavior | None = None
    compensation_step_id: int | None = None
    #: A saga: failures inside compensate the saga by default.
    is_saga: bool = False
    #: ``fn(data)``: cancel the step's pointers once it is true (see the class docstring).
    cancel_condition: Callable[[Any], Any] | None = None
    #: Whether a cancelled pointer of this step goes on to the step's successors.
    proceed_after_cancel: bool = False
    #: Extra, format-specific facts (the YAML loader keeps the step's source location here).
    metadata: dict[str, Any] = attrs.field(factory=dict)

    @property
    def display_name(self) -> str:
        """The name, else the external id, else the body's name."""
        if self.name:
            return self.name
        if self.external_id:
            return self.external_id
        return getattr(self.body, "__name__", type(self.body).__name__)

    def create_body(self) -> StepBody:
        """A new body instance for one run."""
        body = self.body()
        if not isinstance(body, _step_body()):
            raise DefinitionError(
                f"step {self.id} ({self.display_name}): body factory returned "
                f"{type(body).__name__}, not a StepBody"
            )
        return body


@functools.cache
def _step_body() -> type[StepBody]:
    # Imported once, on first use (``wfe_core._step`` imports this module); an import
    # statement in create_body cost several µs on every step.
    from wfe_core._step import StepBody

    return StepBody


#: The longest wait before a retry when the error behavior sets no ``max_interval``: 365 days.
MAX_RETRY_DELAY = timedelta(days=365)

#: The largest definition version: 2**31 - 1, so that every store can keep it in an integer
#: column (SQLite's are 64-bit, a PostgreSQL ``integer`` is 32-bit) and JSON keeps it exact.
MAX_DEFINITION_VERSION = 2**31 - 1


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.define
class WorkflowDefinition:
    """A workflow definition: ``steps`` (indexed by id), starting at ``start_step``.

    ``data_type`` is the type of the workflow data (an attrs class, a dataclass or ``dict``);
    the host restores stored data to it. ``prepare_input``, when set, is called by
    ``start_workflow`` with the initial data before anything is stored: it returns the data to
    store (inputs converted to their declared types) or raises
    :class:`~wfe_core.errors.InvalidInputError` listing every problem.

    ``inputs`` and ``outputs`` name the data fields the definition declares as its inputs and
    outputs (both empty: nothing declared). Tools read them: ``wfe run`` refuses an
    ``--input`` that is not a declared input (when any is declared) and prints the outputs'
    values when the workflow ends.
    """

    id: str
    version: int
    steps: list[StepDefinition]
    data_type: type = dict
    default_error_behavior: ErrorBehavior | None = None
    description: str | None = None
    start_step: int = 0
    prepare_input: Callable[[Any], Any] | None = None
    inputs: tuple[str, ...] = attrs.field(default=(), converter=_names)
    outputs: tuple[str, ...] = attrs.field(default=(), converter=_names)

    def step(self, step_id: int) -> StepDefinition:
        """The step with ``step_id`` (``DefinitionError`` when there is none)."""
        if 0 <= step_id < len(self.steps):
            return self.steps[step_id]
        raise DefinitionError(f"workflow {self.id!r} v{self.version} has no step {step_id}")

    def step_by_external_id(self, external_id: str) -> StepDefinition:
        """The step whose ``external_id`` is ``external_id``."""
        for step in self.steps:
            if step.external_id == external_id:
                return step
        raise DefinitionError(f"workflow {self.id!r} v{self.version} has no step {external_id!r}")

    def validate(self) -> None:
        """Raise :class:`DefinitionError` listing every problem of the definition."""
        problems = list(_problems(self))
        if problems:
            raise DefinitionError(
                f"workflow {self.id!r} v{self.version} is invalid: " + "; ".join(problems)
            )


def _problems(definition: WorkflowDefinition) -> list[str]:
    problems: list[str] = []
    if not definition.id:
        problems.append("the definition id is empty")
    if definition.version > MAX_DEFINITION_VERSION:
        problems.append(f"the version is larger than {MAX_DEFINITION_VERSION}")
    if not definition.steps:
        problems.append("it has no steps")
        return problems
    if definition.data_type is not dict:
        unstorable = storage_problems(definition.data_type)
        if unstorable:
            problems.append(
                f"its data type cannot be stored: {', '.join(unstorable)} (storable: {STORABLE})"
            )
    count = len(definition.steps)
    if not 0 <= definition.start_step < count:
        problems.append(f"start step {definition.start_step} does not exist")
    seen_external: dict[str, int] = {}
    for index, step in enumerate(definition.steps):
        label = f"step {index} ({step.display_name})"
        if step.id != index:
            problems.append(f"{label} has id {step.id}; ids must equal list positions")
        if step.external_id is not None:
            if step.external_id in seen_external:
                problems.append(
                    f"duplicate step id {step.external_id!r} "
                    f"(steps {seen_external[step.external_id]} and {index})"
                )
            seen_external[step.external_id] = index
        for route in step.outcomes:
            if not 0 <= route.next_step < count:
                problems.append(f"{label} routes to unknown step {route.next_step}")
        for child in step.children:
            if not 0 <= child < count:
                problems.append(f"{label} branches to unknown step {child}")
        comp = step.compensation_step_id
        if comp is not None and not 0 <= comp < count:
            problems.append(f"{label} is compensated by unknown step {comp}")
        condition: object = step.cancel_condition
        if condition is not None and not callable(condition):
            problems.append(f"{label} cancel condition {condition!r} is not callable")
        if not _is_body_source(step.body):
            problems.append(f"{label} body {step.body!r} is not a StepBody class or factory")
        refused = _refused_error_behavior(step)
        if refused is not None and step.error_behavior is not None:
            problems.append(
                f"{label} sets an error behaviour ({step.error_behavior.kind.value}), which a "
                f"{refused} step cannot honour: failures inside it are handled by the failing "
                "step; set it on the steps inside, or wrap them in a saga, whose error "
                "behaviour applies once it has compensated"
            )
    return problems


def _refused_error_behavior(step: StepDefinition) -> str | None:
    """The kind of container ``step`` is when it sets an error behaviour it cannot honour
    (:attr:`~wfe_core._step.StepBody.refuses_error_behavior`), else ``None``. Read from the
    body (a class, or a factory that says so) so hand-built and loaded definitions are held
    to what the builder refuses; a saga honours one."""
    if step.error_behavior is None or step.is_saga:
        return None
    kind = getattr(step.body, "refuses_error_behavior", None)
    return kind if isinstance(kind, str) else None


def _is_body_source(body: object) -> bool:
    from wfe_core._step import StepBody

    if inspect.isclass(body):
        return issubclass(body, StepBody)
    return callable(body)
