"""Step bodies and the context a step runs with.

Internal module: import ``StepBody`` and ``StepContext`` from :mod:`wfe_core`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import attrs

from wfe_core._runtime import HostContext
from wfe_core.models._definition import StepDefinition, WorkflowDefinition
from wfe_core.models._instance import ExecutionPointer, WorkflowInstance

if TYPE_CHECKING:
    from wfe_core._results import ExecutionResult


class StepBody(ABC):
    """Base of every step: subclass it and implement :meth:`run`.

    A new instance is made for every run, so attributes are per run. Attributes declared on
    the class (``amount: int = 0``) can be set from the workflow data with
    ``.input(amount=lambda data: data.total)`` and read into it with
    ``.output(receipt=lambda step: step.receipt)``.

    Steps run at least once: a crash between running a step and saving its result runs it
    again, so use ``ctx.idempotency_key`` when calling outside systems.
    """

    #: Set by a container that cannot honour an error behaviour (the builder call it comes
    #: from: ``"parallel"``, ``"if_do"``, ...): a failure inside it is handled by the failing
    #: step, so one set on the container would only see its own condition fail. Definition
    #: validation refuses an error behaviour on such a step (a saga excepted).
    refuses_error_behavior: ClassVar[str | None] = None
    #: Set by a step that reads finished pointers of its workflow (``ctx.workflow.pointers``
    #: other than the active ones, the finished children of ``ctx.pointer``): a pass reads
    #: only the active pointers of the instance, and reads the rest before running such a
    #: step.
    reads_history: ClassVar[bool] = False

    @abstractmethod
    async def run(self, ctx: StepContext) -> ExecutionResult:
        """Do the step's work and say how the workflow goes on."""


@attrs.define(eq=False)
class StepContext:
    """What a running step sees.

    ``data`` is the workflow data (change it in place; the change is saved with the step's
    result). ``item`` is the current ``for_each`` item (or branch value). ``attempt`` counts
    runs of this step visit, 1 for the first (it grows with retries and after crashes).
    ``idempotency_key`` stays the same across those runs. ``host`` starts workflows and
    publishes events; ``cancellation`` is the scope the step runs in (cancelled when the
    workflow is terminated or the step is abandoned).

    ``workflow.pointers`` other than ``pointer`` are for reading: the engine writes only the
    pointers it changed, so a step's change to another step's pointer may not be saved. They
    hold the active pointers (and those the pass made); the finished ones too only for a
    step whose body sets :attr:`StepBody.reads_history`.
    """

    workflow: WorkflowInstance
    definition: WorkflowDefinition
    step: StepDefinition
    pointer: ExecutionPointer
    host: HostContext
    cancellation: anyio.CancelScope
    attempt: int = 1

    @property
    def data(self) -> Any:
        """The workflow data (the definition's data type)."""
        return self.workflow.data

    @property
    def item(self) -> Any:
        """The ``for_each`` item or branch value this step runs for (``None`` outside one)."""
        return self.pointer.context_item

    @property
    def persistence_data(self) -> Any:
        """What the step kept with ``persist``/``sleep``/``branch`` on its previous run."""
        return self.pointer.persistence_data

    @property
    def idempotency_key(self) -> str:
        """``"<workflow id>:<pointer id>"``: stable across retries and re-runs of this visit."""
        return f"{self.workflow.id}:{self.pointer.id}"

    @property
    def workflow_id(self) -> str:
        """The id of the running workflow instance."""
        return self.workflow.id
