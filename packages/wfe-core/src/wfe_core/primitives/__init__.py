"""The built-in steps the builder's control methods are made of. Each is an ordinary
:class:`~wfe_core.StepBody` built on :class:`~wfe_core.ExecutionResult`."""

from __future__ import annotations

from wfe_core.primitives._containers import Decide, ForEach, If, Sequence, When, While
from wfe_core.primitives._end import EndWorkflow
from wfe_core.primitives._events import TIMEOUT_OUTCOME, WaitFor
from wfe_core.primitives._external import (
    ACTIVITY_EVENT_PREFIX,
    ACTIVITY_RESULT,
    USER_TASK,
    USER_TASK_EVENT,
    Activity,
    Escalations,
    UserTask,
    UserTaskChoice,
    activity_event,
)
from wfe_core.primitives._inline import InlineStep, InlineStepFactory
from wfe_core.primitives._subworkflow import (
    BEGINNING_OF_TIME,
    CHILD_FINISHED_EVENT,
    TERMINATE_CHILD_EVENT,
    ChildWorkflowError,
    SubWorkflow,
    child_workflow_candidates,
)
from wfe_core.primitives._timers import Delay, Fork, Recur, Schedule

__all__ = [
    "ACTIVITY_EVENT_PREFIX",
    "ACTIVITY_RESULT",
    "BEGINNING_OF_TIME",
    "CHILD_FINISHED_EVENT",
    "TERMINATE_CHILD_EVENT",
    "TIMEOUT_OUTCOME",
    "USER_TASK",
    "USER_TASK_EVENT",
    "Activity",
    "ChildWorkflowError",
    "Decide",
    "Delay",
    "EndWorkflow",
    "Escalations",
    "ForEach",
    "Fork",
    "If",
    "InlineStep",
    "InlineStepFactory",
    "Recur",
    "Schedule",
    "Sequence",
    "SubWorkflow",
    "UserTask",
    "UserTaskChoice",
    "WaitFor",
    "When",
    "While",
    "activity_event",
    "child_workflow_candidates",
]
