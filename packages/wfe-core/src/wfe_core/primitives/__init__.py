"""The built-in steps the builder's control methods are made of. Each is an ordinary
:class:`~wfe_core.step.StepBody` built on :class:`~wfe_core.results.ExecutionResult`."""

from __future__ import annotations

from wfe_core.primitives.containers import Decide, ForEach, If, Sequence, When, While
from wfe_core.primitives.end import EndWorkflow
from wfe_core.primitives.events import TIMEOUT_OUTCOME, WaitFor
from wfe_core.primitives.external import Activity, UserTask, UserTaskChoice
from wfe_core.primitives.inline import InlineStep, InlineStepFactory
from wfe_core.primitives.subworkflow import (
    BEGINNING_OF_TIME,
    CHILD_FINISHED_EVENT,
    TERMINATE_CHILD_EVENT,
    ChildWorkflowError,
    SubWorkflow,
    child_workflow_candidates,
)
from wfe_core.primitives.timers import Delay, Fork, Recur, Schedule

__all__ = [
    "BEGINNING_OF_TIME",
    "CHILD_FINISHED_EVENT",
    "TERMINATE_CHILD_EVENT",
    "TIMEOUT_OUTCOME",
    "Activity",
    "ChildWorkflowError",
    "Decide",
    "Delay",
    "EndWorkflow",
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
    "child_workflow_candidates",
]
