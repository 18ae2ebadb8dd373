"""What every provider shares: it is an async context manager with declared capabilities."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Self

from wfe_core.providers._contract import EnforcedABC
from wfe_core.providers.capabilities import Capability, parse_capabilities

if TYPE_CHECKING:
    from types import TracebackType


class Provider(EnforcedABC):
    """Base of every provider (persistence, lock, queue, search, lifecycle).

    A provider is used as ``async with provider: ...``; :meth:`open` connects (and migrates a
    schema, where it has one) and :meth:`close` releases everything it holds. Both must be safe
    to call on an already open / already closed provider.

    The contracts (:class:`~wfe_core.providers.PersistenceProvider`, ...) are real ABCs:
    creating a class that leaves one of their abstract methods unimplemented raises
    :class:`~wfe_core.errors.AbstractProviderError` (a ``TypeError``) naming each missing
    method, so a provider missing ``renew`` fails when it is built, not mid-run.

    ``capabilities`` names optional behaviours (:class:`~wfe_core.providers.capabilities.
    Capability`) so the host and the conformance suites adapt without ``isinstance`` checks.
    A subclass may declare them as strings; they are converted when the class is defined, and
    an unknown name raises :class:`~wfe_core.errors.ProviderContractError` then.
    """

    capabilities: ClassVar[frozenset[Capability]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = vars(cls).get("capabilities")
        if declared is not None:
            cls.capabilities = parse_capabilities(
                declared, where=f"provider class {cls.__module__}.{cls.__qualname__}"
            )

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
