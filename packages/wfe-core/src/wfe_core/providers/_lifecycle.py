"""The lifecycle publisher contract: where lifecycle events go beyond this process."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

from wfe_core.providers._base import Provider

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from wfe_core.models import LifecycleEvent


class LifecyclePublisher(Provider):
    """Fans lifecycle events out to subscribers (in process, or across hosts).

    Delivery is best effort and at most once: a subscriber that joins late misses earlier
    events, and a slow subscriber loses events instead of slowing the engine down.
    """

    @abstractmethod
    async def publish(self, event: LifecycleEvent) -> None:
        """Send ``event`` to every current subscriber."""

    @property
    def has_subscribers(self) -> bool:
        """Whether an event published now may reach anyone. ``False`` lets the engine skip
        building events nobody would receive; the default, ``True``, is always safe."""
        return True

    @abstractmethod
    def subscribe(self) -> AsyncIterator[LifecycleEvent]:
        """Events published from now on, until the consumer stops iterating."""
