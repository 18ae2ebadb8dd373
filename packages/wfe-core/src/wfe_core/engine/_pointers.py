"""Pure functions over an instance's execution pointers: which can run, when next.

Each comes in two forms: over the whole instance, and (``*_among``) over some of its pointers,
which must include every active one in the instance's order. Only active pointers can run or
keep a container busy, so the executor passes the active ones it keeps track of, and a pass
costs the same at step 10,000 as at step 1 (finished pointers are never looked at again).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfe_core.models._status import PointerStatus

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from datetime import datetime

    from wfe_core.models._instance import ExecutionPointer, WorkflowInstance


def busy_containers(instance: WorkflowInstance) -> set[str]:
    """Ids of container pointers that still have an active pointer inside them."""
    return busy_containers_among(instance.pointers)


def busy_containers_among(pointers: Iterable[ExecutionPointer]) -> set[str]:
    """:func:`busy_containers` over ``pointers`` (all the active ones at least)."""
    return {container for p in pointers if p.active for container in p.scope}


def ready_time(pointer: ExecutionPointer, busy: set[str], now: datetime) -> datetime | None:
    """When ``pointer`` can next run (``now`` when it can run at once), ``None`` when only
    something outside the workflow (an event) or its branches finishing can wake it."""
    if not pointer.active or pointer.id in busy:
        return None
    if pointer.status == PointerStatus.WAITING_FOR_EVENT:
        if pointer.event_published:
            return now
        return pointer.sleep_until
    if pointer.sleep_until is not None and pointer.sleep_until > now:
        return pointer.sleep_until
    return now


def runnable(instance: WorkflowInstance, now: datetime) -> Iterator[ExecutionPointer]:
    """The pointers that can run at ``now``."""
    return runnable_among(instance.pointers, now)


def runnable_among(
    pointers: Sequence[ExecutionPointer], now: datetime, busy: set[str] | None = None
) -> Iterator[ExecutionPointer]:
    """:func:`runnable` over ``pointers`` (all the active ones at least, in order);
    ``busy`` is their :func:`busy_containers_among` when the caller keeps it."""
    if busy is None:
        busy = busy_containers_among(pointers)
    for pointer in pointers:
        at = ready_time(pointer, busy, now)
        if at is not None and at <= now:
            yield pointer


def next_execution(instance: WorkflowInstance, now: datetime) -> datetime | None:
    """The earliest time any pointer can run, ``None`` when none can without outside help."""
    return next_execution_among(instance.pointers, now)


def next_execution_among(
    pointers: Sequence[ExecutionPointer], now: datetime, busy: set[str] | None = None
) -> datetime | None:
    """:func:`next_execution` over ``pointers`` (all the active ones at least)."""
    if busy is None:
        busy = busy_containers_among(pointers)
    times = [t for p in pointers if (t := ready_time(p, busy, now)) is not None]
    return min(times, default=None)


def innermost(instance: WorkflowInstance, pointer: ExecutionPointer) -> ExecutionPointer | None:
    """The container pointer ``pointer`` runs directly inside (``None`` at the top level)."""
    return instance.pointer(pointer.scope[0]) if pointer.scope else None


def in_scope(instance: WorkflowInstance, container_id: str) -> list[ExecutionPointer]:
    """Every pointer started inside the container pointer ``container_id``, at any depth."""
    return [p for p in instance.pointers if container_id in p.scope]
