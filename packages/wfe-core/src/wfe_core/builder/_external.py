"""The builder calls of work done outside the engine: ``activity`` and ``user_task`` with
``with_option`` and ``with_escalation`` (a mixin of :class:`~wfe_core.builder.WorkflowBuilder`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from wfe_core.primitives._external import Activity, Escalations, UserTask, UserTaskChoice
from wfe_core.serialization import to_primitive

if TYPE_CHECKING:
    from collections.abc import Callable

    from wfe_core.models._definition import StepDefinition


class ExternalWorkCalls:
    """``activity`` and ``user_task``; mixed into ``WorkflowBuilder``, whose plumbing
    (``_add``, ``_new_step``, ``_branch``, ``_current_step``, ``_problem``) it uses."""

    if TYPE_CHECKING:

        def _add(
            self, body: Any, *, name: str | None = ..., inputs: Any = ...
        ) -> StepDefinition: ...
        def _new_step(
            self, body: Any, *, name: str | None = ..., inputs: Any = ...
        ) -> StepDefinition: ...
        def _branch(self, build: Callable[[Any], Any], where: str) -> int | None: ...
        def _current_step(self, method: str) -> StepDefinition | None: ...
        def _problem(self, message: str) -> None: ...

    def activity(
        self,
        name: str | Callable[..., str],
        parameters: Any = None,
        timeout: Any = None,
    ) -> Self:
        """Wait until an external worker takes the activity ``name`` (text, or ``fn(data)``
        / ``fn(data, ctx)`` for a name per workflow) and submits a result
        (``get_pending_activity`` / ``submit_activity_success`` on the host or client, or
        ``wfe activities``). ``parameters(data)`` (or a constant; JSON-compatible) is what
        the worker gets; the result is ``step.result`` in ``.output(...)``. A failure the
        worker submits, or no result within ``timeout`` (a timedelta, seconds, or
        ``fn(data)``), fails the step: its error behaviour applies."""
        if not callable(name) and (not isinstance(name, str) or not name):
            self._problem(f"activity name must be a non-empty string or fn(data), got {name!r}")
        self._add(
            Activity,
            name=f"Activity {name}" if isinstance(name, str) else "Activity",
            inputs={"activity_name": name, "parameters": parameters, "timeout": timeout},
        )
        return self

    def user_task(self, prompt: Any, assign_to: Any = None) -> Self:
        """Wait for a person's answer to ``prompt`` (text, or ``fn(data)``), assigned to
        ``assign_to(data)`` (or a constant). Add the answers with :meth:`with_option` and
        escalations with :meth:`with_escalation`; the chosen option's branch runs, then the
        workflow goes on after the task, whose outcome is the chosen value."""
        self._add(
            UserTask,
            name="UserTask",
            inputs={
                "prompt": prompt,
                "assigned_to": assign_to,
                "options": [],
                "escalations": Escalations(),
                "branches": [],
            },
        )
        return self

    def _user_task_step(self, method: str) -> StepDefinition | None:
        step = self._current_step(method)
        if step is not None and step.body is not UserTask:
            self._problem(f".{method}() must follow .user_task() (step {step.id} is not one)")
            return None
        return step

    def with_option(
        self, value: Any, label: str | None = None, body: Callable[[Any], Any] | None = None
    ) -> Self:
        """An answer of the current user task: ``value`` (JSON-compatible) is what a person
        publishes, ``label`` what they are shown (default: the value); ``body`` builds the
        branch that runs when it is chosen."""
        step = self._user_task_step("with_option")
        if step is None:
            return self
        stored = to_primitive(value)
        options: list[dict[str, Any]] = step.inputs["options"]
        if any(option["value"] == stored for option in options):
            self._problem(f"user task step {step.id} has the option {value!r} twice")
        options.append({"value": stored, "label": str(value) if label is None else str(label)})
        if body is not None:
            self._choice(step, {"kind": "option", "value": stored}, body, f"option {value!r}")
        return self

    def with_escalation(
        self,
        after: Any,
        assign_to: Any = None,
        action: Callable[[Any], Any] | None = None,
    ) -> Self:
        """Escalate the current user task when it is still open ``after(data)`` (a
        timedelta or seconds, or a constant) after it started, or after the previous
        escalation: it is assigned to ``assign_to(data)`` (when given) and ``action``'s
        branch runs; the task stays open."""
        step = self._user_task_step("with_escalation")
        if step is None:
            return self
        escalations: Escalations = step.inputs["escalations"]
        index = len(escalations.entries)
        escalations.entries.append((after, assign_to))
        if action is not None:
            self._choice(step, {"kind": "escalation", "index": index}, action, "escalation")
        return self

    def _choice(
        self,
        step: StepDefinition,
        selection: dict[str, Any],
        build: Callable[[Any], Any],
        where: str,
    ) -> None:
        choice = self._new_step(
            UserTaskChoice, name=f"UserTask {where}", inputs={"selection": selection}
        )
        choice.metadata["hidden"] = True
        step.children.append(choice.id)
        step.inputs["branches"].append(selection)
        start = self._branch(build, f"user task {where}")
        if start is not None:
            choice.children.append(start)
