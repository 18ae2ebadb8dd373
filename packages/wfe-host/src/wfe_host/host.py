"""The :class:`WorkflowHost`: a :class:`~wfe_host.WorkflowClient` that also runs workflows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wfe_core import StepBody
from wfe_core.clock import SYSTEM_CLOCK
from wfe_core.primitives import InlineStepFactory
from wfe_host.client import WorkflowClient
from wfe_host.runtime.scheduler import Scheduler
from wfe_host.runtime.workers import start_workers

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from anyio.abc import TaskGroup

    from wfe_core import StepContext, StepMiddleware, WorkflowMiddleware
    from wfe_core.clock import Clock
    from wfe_core.providers import (
        LifecyclePublisher,
        LockProvider,
        PersistenceProvider,
        QueueProvider,
        SearchIndex,
    )
    from wfe_host.options import HostOptions
    from wfe_host.registry import PluginRegistry
    from wfe_host.runtime.workers import Workers
    from wfe_host.telemetry import Telemetry


class WorkflowHost(WorkflowClient):
    """Runs workflows: ``async with WorkflowHost(...) as host: ...``.

    Everything a :class:`~wfe_host.WorkflowClient` does, plus the workers: entering the host
    opens the providers and starts the background consumers (workflow passes, event
    delivery, search indexing, the due-time scheduler); leaving stops them and closes the
    providers. Leaving stops gracefully: the host takes no more work, lets the running steps
    finish for up to ``options.shutdown_grace`` seconds (their results are stored), cancels
    what still runs after that, and releases every lease, so another process takes the
    unfinished work over at once. A cancelled exit (a second Ctrl+C) skips the wait. With
    ``options.run_workers`` false it starts none and is a client (prefer
    :class:`~wfe_host.WorkflowClient` for that).
    """

    def __init__(
        self,
        persistence: PersistenceProvider | None = None,
        lock: LockProvider | None = None,
        queue: QueueProvider | None = None,
        search: SearchIndex | None = None,
        lifecycle: LifecyclePublisher | None = None,
        options: HostOptions | None = None,
        registry: PluginRegistry | None = None,
        *,
        step_middleware: Iterable[StepMiddleware] = (),
        workflow_middleware: Iterable[WorkflowMiddleware] = (),
        clock: Clock = SYSTEM_CLOCK,
        telemetry: Telemetry | None = None,
    ) -> None:
        super().__init__(
            persistence,
            lock,
            queue,
            search,
            lifecycle,
            options,
            registry,
            workflow_middleware=workflow_middleware,
            clock=clock,
            telemetry=telemetry,
        )
        self._core.step_middleware.extend(step_middleware)
        #: Queues instances when their sleeping work falls due (a service of the runtime).
        self.scheduler = Scheduler(self._core, self.passes.running)
        self._workers: Workers | None = None

    @property
    def step_middleware(self) -> list[StepMiddleware]:
        """The step middleware, wrapping every step run."""
        return self._core.step_middleware

    @property
    def step_factories(self) -> dict[type, Callable[[], StepBody]]:
        """The factories :meth:`register_step` registered, by step class."""
        return self._core.step_factories

    def _runs_workers(self) -> bool:
        return self._core.options.run_workers

    def _start_workers(self, tg: TaskGroup) -> None:
        self._workers = start_workers(tg, self._core, self.passes, self.events, self.scheduler)

    async def _stop_workers(self) -> None:
        workers, self._workers = self._workers, None
        if workers is not None:
            await workers.stop(self._core.options.shutdown_grace)

    @property
    def running_workflows(self) -> int:
        """How many workflow passes this host runs now (each may run several steps)."""
        return len(self.passes.running)

    # -- steps -------------------------------------------------------------------------------
    def register_step(
        self, step_type: type[StepBody], factory: Callable[[], StepBody] | None = None
    ) -> None:
        """Build bodies of ``step_type`` with ``factory`` (dependency injection), wherever a
        definition names the class."""
        self._core.step_factories[step_type] = factory or step_type

    def substitute_step(
        self, name: str, replacement: type[StepBody] | Callable[[StepContext], Any]
    ) -> None:
        """Run ``replacement`` instead of every step named ``name`` (its ``.name(...)``, else
        its ``.id(...)``, else its body's name; a YAML step's ``name``), in every definition:
        a stand-in for a step that reaches the outside world, in tests.

        ``replacement`` is a :class:`~wfe_core.StepBody` subclass (made anew for each run;
        it gets the step's ``.input(...)`` values and ``.output(...)`` reads it, so give it
        the attributes those name) or a function ``fn(ctx)``, sync or async, returning an
        :class:`~wfe_core.ExecutionResult` or ``None`` (go on), as ``.then_fn`` takes."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"substitute_step: name must be a non-empty string, got {name!r}")
        if isinstance(replacement, type) and issubclass(replacement, StepBody):
            self._core.step_substitutes[name] = replacement
        elif callable(replacement):
            self._core.step_substitutes[name] = InlineStepFactory(replacement)
        else:
            raise TypeError(
                f"substitute_step({name!r}): expected a StepBody subclass or a function of "
                f"the step context, got {type(replacement).__name__}"
            )

    def add_step_middleware(self, middleware: StepMiddleware) -> None:
        """Wrap every step run from now on in ``middleware`` (outermost last added)."""
        self._core.step_middleware.append(middleware)
