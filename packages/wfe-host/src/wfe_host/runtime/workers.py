"""Starting a host's workers: the queue consumers and the background tasks that run work."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from wfe_core.providers import QueueName
from wfe_host.runtime.consumer import consume
from wfe_host.runtime.events import EVENT_CONCURRENCY

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from wfe_host.runtime.core import HostCore
    from wfe_host.runtime.events import EventDelivery
    from wfe_host.runtime.passes import PassRunner
    from wfe_host.runtime.scheduler import Scheduler

#: Concurrent search-index updates by one host.
INDEX_CONCURRENCY = 4


def start_workers(
    tg: TaskGroup,
    core: HostCore,
    passes: PassRunner,
    events: EventDelivery,
    scheduler: Scheduler,
) -> None:
    """Start, in ``tg``, the consumers of the workflow, event and (with search on) index
    queues, the lease renewer, the scheduler, the recovery of undelivered events and, with
    telemetry, the sampling of the queues' depths."""
    core.task_group = tg
    core.runs_workers = True
    passes.open()
    visibility = max(core.options.lease_seconds * 10, 300.0)
    tg.start_soon(
        lambda: consume(
            core.queue,
            QueueName.WORKFLOW,
            passes.process,
            slots=passes.slots,
            visibility_timeout=visibility,
        )
    )
    tg.start_soon(
        lambda: consume(
            core.queue,
            QueueName.EVENT,
            events.process,
            slots=anyio.Semaphore(EVENT_CONCURRENCY),
            visibility_timeout=visibility,
        )
    )
    if core.search_index is not None:
        tg.start_soon(
            lambda: consume(
                core.queue,
                QueueName.INDEX,
                core.index,
                slots=anyio.Semaphore(INDEX_CONCURRENCY),
                visibility_timeout=visibility,
            )
        )
    tg.start_soon(passes.renew_leases)
    tg.start_soon(scheduler.run)
    tg.start_soon(core.recover_events)
    if core.telemetry is not None:
        queues = [QueueName.WORKFLOW, QueueName.EVENT]
        if core.search_index is not None:
            queues.append(QueueName.INDEX)
        tg.start_soon(core.telemetry.sample_queues, core.queue, queues)
