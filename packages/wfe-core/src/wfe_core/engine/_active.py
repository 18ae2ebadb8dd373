"""Internal to the engine: a pass's index of the active pointers of its instance.

All that a pass's searches for runnable pointers look at, so a step costs the same however
many finished pointers the instance holds. Pointers only ever go inactive (dropped lazily, on
the next look) and new ones are appended at the end, so the order stays the instance's.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection, Container

    from wfe_core.engine._transitions import Transition
    from wfe_core.models._instance import ExecutionPointer, WorkflowInstance


class ActivePointers:
    """The active pointers of one instance, kept as pointers are created and end."""

    __slots__ = ("containers", "ended", "inside", "live", "primitive_steps", "timed")

    def __init__(self, instance: WorkflowInstance, primitive_steps: Collection[int]) -> None:
        #: The active pointers by id, in the instance's order.
        self.live: dict[str, ExecutionPointer] = {p.id: p for p in instance.pointers if p.active}
        #: How many active pointers each container has inside it (at any depth): a
        #: container's "busy" costs the same with 10,000 branches as with one.
        self.inside: collections.Counter[str] = collections.Counter(
            container for p in self.live.values() for container in p.scope
        )
        #: The active pointers that may have a time set (``sleep_until``): the only ones the
        #: timer looks at. Dropped when they end.
        self.timed: dict[str, ExecutionPointer] = {
            p.id: p for p in self.live.values() if p.sleep_until is not None
        }
        #: Steps whose pointers are kept in ``containers`` (the engine's container steps).
        self.primitive_steps = primitive_steps
        #: The active pointers of ``primitive_steps``, in order.
        self.containers: dict[str, ExecutionPointer] = {
            p.id: p for p in self.live.values() if p.step_id in primitive_steps
        }
        #: Ids of the pointers ended since they were last dropped.
        self.ended: list[str] = []

    def track(self, transition: Transition) -> None:
        """Take in the pointers ``transition`` created, ended and timed."""
        if transition.created:
            live = self.live
            inside = self.inside
            primitive = self.primitive_steps
            for pointer in transition.created:
                live[pointer.id] = pointer
                # A loop, not ``Counter.update``: its checks of the argument's type cost
                # more than counting the one or two containers a pointer runs in.
                for container in pointer.scope:
                    inside[container] += 1
                if pointer.step_id in primitive:
                    self.containers[pointer.id] = pointer
        if transition.ended:
            self.ended.extend(transition.ended)
        if transition.timed:
            for pointer in transition.timed:
                self.timed[pointer.id] = pointer

    def drop_ended(self) -> None:
        """Forget the pointers ended since the last look."""
        live = self.live
        inside = self.inside
        for pointer_id in self.ended:
            pointer = live.pop(pointer_id, None)
            if pointer is not None:
                for container in pointer.scope:
                    inside[container] -= 1
                self.timed.pop(pointer_id, None)
                self.containers.pop(pointer_id, None)
        self.ended.clear()

    def busy(self) -> set[str]:
        """Ids of the containers with an active pointer inside them (as
        ``pointers.busy_containers``), from counts kept as pointers start and end."""
        if self.ended:
            self.drop_ended()
        return {container for container, count in self.inside.items() if count > 0}

    def listed(self) -> list[ExecutionPointer]:
        """The active pointers, in order (one ended by other means than a tracked transition
        is still listed, which the searches allow: they check ``active``)."""
        if self.ended:
            self.drop_ended()
        return list(self.live.values())

    def timed_waiting(self, running: Container[str]) -> list[ExecutionPointer]:
        """The active pointers with a time set whose step is not ``running``."""
        if self.ended:
            self.drop_ended()
        return [
            p
            for p in self.timed.values()
            if p.active and p.sleep_until is not None and p.id not in running
        ]
