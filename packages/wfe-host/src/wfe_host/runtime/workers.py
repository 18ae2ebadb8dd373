"""Starting a host's workers (the queue consumers and the background tasks that run work),
and stopping them gracefully."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from wfe_core.providers import QueueName
from wfe_host.runtime.consumer import consume
from wfe_host.runtime.events import EVENT_CONCURRENCY

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine
    from typing import Any

    from anyio.abc import TaskGroup

    from wfe_host.runtime.core import HostCore
    from wfe_host.runtime.events import EventDelivery
    from wfe_host.runtime.passes import PassRunner
    from wfe_host.runtime.scheduler import Scheduler

__all__ = ["INDEX_CONCURRENCY", "Workers", "start_workers"]

logger = logging.getLogger("wfe_host")

#: Concurrent search-index updates by one host.
INDEX_CONCURRENCY = 4


class Workers:
    """The workers of a running host: what :meth:`stop` stops taking, and what it waits for."""

    def __init__(self, passes: PassRunner) -> None:
        self.passes = passes
        #: One per queue consumer: cancelled, it takes no more items (see ``consume``).
        self.intakes: list[anyio.CancelScope] = []
        #: The scheduler and the event recovery: they only queue work.
        self.feeders = anyio.CancelScope()
        #: Consumers still handling what they took.
        self.consuming = 0
        self.consumed = anyio.Event()

    def consumer(
        self, run: Callable[[anyio.CancelScope], Awaitable[None]]
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        """A task running the consumer ``run(intake)``, counted until it returns."""
        intake = anyio.CancelScope()
        self.intakes.append(intake)
        self.consuming += 1

        async def task() -> None:
            try:
                await run(intake)
            finally:
                self.consuming -= 1
                if not self.consuming:
                    self.consumed.set()

        return task

    async def stop(self, grace: float) -> None:
        """Stop taking work, and wait up to ``grace`` seconds for the running steps to finish
        (the passes store what they did and end: no new step starts). Whatever still runs
        after that is cancelled when the host's task group is (releasing its lease)."""
        for intake in self.intakes:
            intake.cancel()
        self.feeders.cancel()
        passes = self.passes
        running = passes.stop_all()
        if not running and not self.consuming:
            return
        if running:
            logger.info(
                "stopping: waiting up to %g s for the running steps of %d workflow%s to finish",
                grace,
                running,
                "" if running == 1 else "s",
            )
        with anyio.move_on_after(grace) as waited:
            if self.consuming:
                await self.consumed.wait()
            await passes.idle()
        if waited.cancelled_caught and passes.running:
            left = len(passes.running)
            logger.warning(
                "stopping: %d workflow%s still running after %g s; cancelling their steps "
                "(they run again from their last stored state, here or on another worker)",
                left,
                "" if left == 1 else "s",
                grace,
            )


def start_workers(
    tg: TaskGroup,
    core: HostCore,
    passes: PassRunner,
    events: EventDelivery,
    scheduler: Scheduler,
) -> Workers:
    """Start, in ``tg``, the consumers of the workflow, event and (with search on) index
    queues, the lease renewer, the scheduler, the recovery of undelivered events and, with
    telemetry, the sampling of the queues' depths."""
    core.task_group = tg
    core.runs_workers = True
    passes.open()
    core.timers.use_clock(passes.clock)
    workers = Workers(passes)
    visibility = max(core.options.lease_seconds * 10, 300.0)
    tg.start_soon(
        workers.consumer(
            lambda intake: consume(
                core.queue,
                QueueName.WORKFLOW,
                passes.process,
                slots=passes.slots,
                visibility_timeout=visibility,
                intake=intake,
            )
        )
    )
    tg.start_soon(
        workers.consumer(
            lambda intake: consume(
                core.queue,
                QueueName.EVENT,
                events.process,
                slots=anyio.Semaphore(EVENT_CONCURRENCY),
                visibility_timeout=visibility,
                intake=intake,
            )
        )
    )
    if core.search_index is not None:
        tg.start_soon(
            workers.consumer(
                lambda intake: consume(
                    core.queue,
                    QueueName.INDEX,
                    core.index,
                    slots=anyio.Semaphore(INDEX_CONCURRENCY),
                    visibility_timeout=visibility,
                    intake=intake,
                )
            )
        )
    # The renewer keeps running while the host stops: the passes that finish their steps
    # meanwhile still hold leases.
    tg.start_soon(passes.renew_leases)
    feeders: list[Callable[[], Coroutine[Any, Any, None]]] = [scheduler.run, core.recover_events]
    if core.telemetry is not None:
        queues = [QueueName.WORKFLOW, QueueName.EVENT]
        if core.search_index is not None:
            queues.append(QueueName.INDEX)
        telemetry, queue = core.telemetry, core.queue
        feeders.append(lambda: telemetry.sample_queues(queue, queues))
    tg.start_soon(_feeding, workers.feeders, *feeders)
    return workers


async def _feeding(
    scope: anyio.CancelScope, *tasks: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    with scope:
        async with anyio.create_task_group() as tg:
            for task in tasks:
                tg.start_soon(task)
