"""What every provider shares: it is an async context manager with declared capabilities."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Self

if TYPE_CHECKING:
    from types import TracebackType


class Provider:
    """Base of every provider (persistence, lock, queue, search, lifecycle).

    A provider is used as ``async with provider: ...``; :meth:`open` connects (and migrates a
    schema, where it has one) and :meth:`close` releases everything it holds. Both must be safe
    to call on an already open / already closed provider.

    ``capabilities`` names optional behaviours (see :mod:`wfe_core.providers.capabilities`) so
    the host and the conformance suites adapt without ``isinstance`` checks.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset()

    async def open(self) -> None:
        """Connect to the backend. The default does nothing."""

    async def close(self) -> None:
        """Release every resource. The default does nothing."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
