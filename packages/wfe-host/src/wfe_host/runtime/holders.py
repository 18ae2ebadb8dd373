"""Saying what a worker waits for when it finds an instance leased by someone else."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from wfe_core.providers import holder_is_gone

if TYPE_CHECKING:
    from datetime import datetime

    from wfe_core.providers import LeaseHolder, LockProvider

__all__ = ["BusyNotices", "describe_holder"]

logger = logging.getLogger("wfe_host.passes")

#: Instances remembered as announced, so each is announced once (bounded memory).
MAX_NOTICES = 1024


def describe_holder(holder: LeaseHolder, now: datetime) -> str:
    """``holder`` and what becomes of its lease, for one log or stderr line."""
    where = ""
    if holder.pid is not None:
        where = f" (process {holder.pid}" + (f" on {holder.host})" if holder.host else ")")
    if holder_is_gone(holder.host, holder.pid):
        return f"leased by {holder.owner}{where}, which no longer runs: taking it over"
    left = max((holder.expires_at - now).total_seconds(), 0.0)
    return (
        f"leased by {holder.owner}{where} until {holder.expires_at:%H:%M:%S} UTC: waiting "
        f"up to {left:.0f} s for that worker to release the lease or for it to lapse"
    )


class BusyNotices:
    """Logs once per instance that another worker's lease keeps it from running here."""

    def __init__(self, lock: LockProvider) -> None:
        self.lock = lock
        self.noticed: set[str] = set()

    async def busy(self, workflow_id: str, now: datetime) -> None:
        """``workflow_id`` could not be leased: say by whom, the first time."""
        if workflow_id in self.noticed:
            return
        try:
            holder = await self.lock.holder(workflow_id)
        except Exception:
            # Only a message: a lock that fails here fails the next acquire too, loudly.
            return
        if holder is None:
            return
        if len(self.noticed) >= MAX_NOTICES:
            self.noticed.clear()
        self.noticed.add(workflow_id)
        logger.info(
            "workflow %s is %s",
            workflow_id,
            describe_holder(holder, now),
            extra={"workflow_id": workflow_id},
        )

    def ran(self, workflow_id: str) -> None:
        """``workflow_id`` was leased here: announce it again should it be busy later."""
        self.noticed.discard(workflow_id)
