"""Waking instances whose sleeping work is due, without polling."""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio

from wfe_core.models.instance import utcnow
from wfe_core.providers import capabilities as cap

if TYPE_CHECKING:
    from wfe_host.host import WorkflowHost

logger = logging.getLogger("wfe_host.scheduler")

#: Slack added to a due time so a wake-up is never a hair early.
_SLACK = timedelta(milliseconds=5)


class Scheduler:
    """Sleeps until the earliest ``next_execution`` of any runnable instance (or until woken
    because that may have changed), then queues the instances that are due.

    Instances stay due until their pass has run; after queueing them the scheduler waits to
    be woken (a pass ended or stored a new due time) rather than look again at once, with a
    ``recovery_seconds`` fallback for work whose pass could not run (no definition here,
    another worker's lease).
    """

    def __init__(self, host: WorkflowHost, *, recovery_seconds: float = 30.0) -> None:
        self.host = host
        self.recovery_seconds = recovery_seconds
        self._wake = anyio.Event()

    @property
    def longest_sleep(self) -> float:
        """How long the scheduler may sleep without looking: for ever on a store private to
        this process (every change wakes it); ``recovery_seconds`` on a durable store other
        processes share, whose new due times this host is not told about."""
        durable = cap.DURABLE in type(self.host.persistence).capabilities
        return self.recovery_seconds if durable else math.inf

    def wake(self) -> None:
        """Make the scheduler look at the earliest due time again."""
        self._wake.set()

    async def run(self) -> None:
        """Run until cancelled."""
        host = self.host
        while True:
            # Replaced before reading, so a wake-up that races the read is never missed.
            self._wake = wake = anyio.Event()
            try:
                due = await host.persistence.next_execution_time()
                now = utcnow()
                if due is None:
                    with anyio.move_on_after(self.longest_sleep):
                        await wake.wait()
                    continue
                if due > now:
                    wait = min((due - now + _SLACK).total_seconds(), self.longest_sleep)
                    with anyio.move_on_after(wait):
                        await wake.wait()
                    continue
                # Instances this host is running are queued too: their pass then runs once
                # more when it ends, in case the work fell due after it last looked.
                for workflow_id in await host.persistence.get_runnable_instances(now):
                    await host._enqueue_workflow(workflow_id)
            except Exception:
                # Keep scheduling whatever a provider raised; the next look may succeed.
                logger.exception("scheduling failed; trying again shortly")
                await anyio.sleep(1.0)
            with anyio.move_on_after(self.recovery_seconds):
                await wake.wait()
