"""Steps that wait for work done outside the engine: activities (external workers, in any
language) and user tasks (people).

Both are built on event subscriptions, as workflow-core's are: the step waits for an event
whose name says what kind of work it is, with a key of its own, and attaches what the worker
or person needs (``EventSubscription.data``). The host lists and claims those subscriptions
(``get_pending_activity``, ``get_open_user_actions``) and publishes the result as the event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from wfe_core._results import ExecutionResult
from wfe_core._step import StepBody
from wfe_core.engine._data import call_flexible
from wfe_core.errors import ActivityFailedError, ActivityTimeoutError
from wfe_core.models._instance import new_id
from wfe_core.serialization import to_primitive

if TYPE_CHECKING:
    from collections.abc import Sequence

    from wfe_core._step import StepContext

__all__ = [
    "ACTIVITY_EVENT_PREFIX",
    "ACTIVITY_RESULT",
    "USER_TASK",
    "USER_TASK_EVENT",
    "Activity",
    "Escalations",
    "UserTask",
    "UserTaskChoice",
    "activity_event",
]

#: Activities wait for the event ``ACTIVITY_EVENT_PREFIX + name`` with a key of their own.
ACTIVITY_EVENT_PREFIX = "wfe.activity:"
#: The key of an activity result event's data saying ``"success"`` or ``"failure"``.
ACTIVITY_RESULT = "wfe.activity"
#: User tasks wait for this event, keyed ``"<workflow id>.<pointer id>"``.
USER_TASK_EVENT = "wfe.user-task"
#: ``ExecutionPointer.extensions`` key of a user task's state.
USER_TASK = "wfe.user_task"


def activity_event(name: str) -> str:
    """The event name the activity ``name`` waits for."""
    return ACTIVITY_EVENT_PREFIX + name


def _seconds(value: timedelta | float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


class Activity(StepBody):
    """Waits until an external worker takes the activity ``activity_name`` (with
    ``parameters``) and submits a result; then ``result`` holds it (map it with
    ``.output(x=lambda step: step.result)``).

    A failure the worker submits raises :class:`~wfe_core.errors.ActivityFailedError` here,
    and no result within ``timeout`` raises :class:`~wfe_core.errors.ActivityTimeoutError`:
    the step's error behaviour applies to both (a retry offers the activity afresh).
    """

    activity_name: str = ""
    parameters: Any = None
    timeout: timedelta | float | None = None

    def __init__(self) -> None:
        self.result: Any = None

    async def run(self, ctx: StepContext) -> ExecutionResult:
        pointer = ctx.pointer
        if pointer.event_published:
            outcome = pointer.event_data
            if isinstance(outcome, Mapping) and ACTIVITY_RESULT in outcome:
                if outcome[ACTIVITY_RESULT] == "failure":
                    raise ActivityFailedError(self.activity_name, outcome.get("error"))
                self.result = outcome.get("result")
            else:  # an event published by hand, not through the activity API
                self.result = outcome
            return ExecutionResult.next()
        timeout = _seconds(self.timeout)
        if pointer.event_name is not None:
            # Run again without the event: the timeout expired.
            raise ActivityTimeoutError(
                f"activity {self.activity_name!r} was not completed within {timeout:g} s"
            )
        if not self.activity_name:
            raise ValueError("an activity needs a name")
        # A key of its own per wait: a retry must not see the event that failed it.
        return ExecutionResult.wait_for_event(
            activity_event(self.activity_name),
            new_id(),
            None,
            timeout=None if timeout is None else timedelta(seconds=timeout),
            data=to_primitive(self.parameters),
        )


class Escalations:
    """The ``escalations`` input of a :class:`UserTask`: each ``(after, assign_to)`` pair
    evaluated on the workflow data (``fn(data)`` or ``fn(data, ctx)``, or constants)."""

    def __init__(self) -> None:
        self.entries: list[tuple[Any, Any]] = []

    def __call__(self, data: Any, ctx: Any) -> list[dict[str, Any]]:
        evaluated = []
        for index, (after, assign_to) in enumerate(self.entries):
            seconds = _seconds(call_flexible(after, data, ctx))
            if seconds is None or seconds < 0:
                raise ValueError(f"escalation {index}: 'after' must be a duration >= 0")
            who = call_flexible(assign_to, data, ctx)
            evaluated.append({"after": seconds, "assign_to": None if who is None else str(who)})
        return evaluated


class UserTask(StepBody):
    """Waits for a person's answer to ``prompt``, assigned to ``assigned_to``, among
    ``options`` (``[{"value": ..., "label": ...}]``); then runs the branch of the chosen
    option (its :class:`UserTaskChoice` child) and ends with the value as its outcome.

    ``escalations`` (``[{"after": seconds, "assign_to": name}]``): when the task is still
    open ``after`` seconds after it started (after the previous escalation, for the ones
    after the first), it is assigned to ``assign_to`` and the escalation's action branch
    runs; the task stays open. ``branches`` lists the selections that have a branch.

    Its state lives in ``pointer.extensions[USER_TASK]``: ``phase`` (``waiting``,
    ``escalating``, ``answered``), the prompt, the assignee, the options, how many
    escalations ran, the answer and who gave it.
    """

    prompt: str = ""
    assigned_to: Any = None
    options: Sequence[Mapping[str, Any]] = ()
    escalations: Sequence[Mapping[str, Any]] = ()
    branches: Sequence[Mapping[str, Any]] = ()

    async def run(self, ctx: StepContext) -> ExecutionResult:
        pointer = ctx.pointer
        task = pointer.extensions.get(USER_TASK)
        if task is None:
            task = {
                "key": f"{ctx.workflow.id}.{pointer.id}",
                "prompt": str(self.prompt),
                "assigned_to": None if self.assigned_to is None else str(self.assigned_to),
                "options": [dict(option) for option in self.options],
                "escalated": 0,
                "phase": "waiting",
            }
            pointer.extensions[USER_TASK] = task
            return self._wait(task)
        phase = task["phase"]
        if phase == "answered":  # the chosen option's branch finished
            return ExecutionResult.outcome(task["answer"])
        if phase == "escalating":  # the escalation's action finished; still open
            task["phase"] = "waiting"
            task.pop("selected", None)
            return self._wait(task)
        if pointer.event_published:
            action = pointer.event_data if isinstance(pointer.event_data, Mapping) else {}
            task["phase"] = "answered"
            task["answer"] = action.get("value")
            task["answered_by"] = action.get("user")
            selection = {"kind": "option", "value": task["answer"]}
            if selection in self.branches:
                task["selected"] = selection
                return ExecutionResult.branch([ctx.item])
            return ExecutionResult.outcome(task["answer"])
        # Run again without the event: the next escalation is due.
        index = int(task["escalated"])
        escalation = self.escalations[index]
        task["escalated"] = index + 1
        if escalation.get("assign_to") is not None:
            task["assigned_to"] = escalation["assign_to"]
        selection = {"kind": "escalation", "index": index}
        if selection in self.branches:
            task["phase"] = "escalating"
            task["selected"] = selection
            return ExecutionResult.branch([ctx.item])
        return self._wait(task)

    def _wait(self, task: dict[str, Any]) -> ExecutionResult:
        index = int(task["escalated"])
        timeout = None
        if index < len(self.escalations):
            timeout = timedelta(seconds=float(self.escalations[index]["after"]))
        subscription_data = {
            "prompt": task["prompt"],
            "assigned_to": task["assigned_to"],
            "options": task["options"],
        }
        # No effective date: an answer given while an escalation's action ran is stored,
        # and the renewed wait receives it.
        return ExecutionResult.wait_for_event(
            USER_TASK_EVENT, task["key"], None, timeout=timeout, data=subscription_data
        )


class UserTaskChoice(StepBody):
    """A child of a :class:`UserTask`: runs its branch when the task selected it (an
    option's value once answered, an escalation's action when it escalated)."""

    selection: Any = None

    async def run(self, ctx: StepContext) -> ExecutionResult:
        if ctx.persistence_data is None and ctx.pointer.scope:
            parent = ctx.workflow.pointer(ctx.pointer.scope[0])
            selected = parent.extensions.get(USER_TASK, {}).get("selected")
            if selected is not None and selected == self.selection:
                return ExecutionResult.branch([ctx.item], {"started": True})
        return ExecutionResult.next()
