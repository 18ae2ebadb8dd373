"""The connection every Valkey provider holds: clients, retries with back-off, wrapped errors.

Internal: the providers build one :class:`Connection` each in ``open()``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, TypeVar

import stamina
import valkey.asyncio as valkey_asyncio
from valkey import exceptions as valkey_errors

from wfe_core.errors import ProviderError, ProviderUnavailableError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from wfe_valkey.options import Target

__all__ = ["Connection", "provider_error"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Errors worth another attempt: the connection failed or the server is (re)starting.
RETRIED: tuple[type[Exception], ...] = (
    valkey_errors.ConnectionError,
    valkey_errors.TimeoutError,
    valkey_errors.BusyLoadingError,
)


def provider_error(target: Target, operation: str, exc: BaseException) -> ProviderError:
    """A :class:`ProviderError` naming the server and the operation, the driver error as cause
    (:class:`ProviderUnavailableError` when the server could not be reached)."""
    kind = ProviderUnavailableError if isinstance(exc, RETRIED) else ProviderError
    error = kind(f"valkey {operation} on {target.display} failed: {exc}")
    error.__cause__ = exc
    return error


class Connection:
    """Two clients on one server: ``client`` for short commands (a pool shared by the
    provider's tasks), ``blocking`` for commands that wait on the server (``BLPOP``), so a
    waiting consumer never holds up the others' commands."""

    def __init__(self, target: Target) -> None:
        self.target = target
        options = target.options
        common: dict[str, Any] = {
            "socket_connect_timeout": options.socket_timeout,
            "health_check_interval": options.health_check_interval,
            # Retries are ours (run(), with jittered back-off); the client's own would hide a
            # reconnect from the lifecycle subscription.
            "retry_on_error": [],
        }
        self.client: valkey_asyncio.Valkey = valkey_asyncio.Valkey.from_url(
            target.url, socket_timeout=options.socket_timeout, **common
        )
        # No read timeout: a BLPOP's own timeout bounds the wait.
        self.blocking: valkey_asyncio.Valkey = valkey_asyncio.Valkey.from_url(
            target.url, socket_timeout=None, **common
        )

    async def check(self) -> None:
        """Fail with :class:`ProviderError` unless the server answers ``PING`` (with retries)."""
        await self.run("ping", self.client.ping)

    async def run(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()``, again after a failed connection (jittered exponential back-off,
        ``retry_attempts`` in all within ``retry_timeout``), any driver error wrapped."""
        options = self.target.options
        try:
            async for attempt in stamina.retry_context(
                on=RETRIED,
                attempts=options.retry_attempts,
                timeout=options.retry_timeout,
                wait_initial=options.retry_initial_wait,
                wait_max=options.retry_max_wait,
                wait_jitter=options.retry_initial_wait,
            ):
                with attempt:
                    if attempt.num > 1:
                        logger.info(
                            "valkey %s on %s: attempt %d",
                            operation,
                            self.target.display,
                            attempt.num,
                        )
                    return await call()
        except valkey_errors.ValkeyError as exc:
            raise provider_error(self.target, operation, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        for client in (self.client, self.blocking):
            try:
                await client.aclose()
            except valkey_errors.ValkeyError:  # pragma: no cover - closing a dead connection
                logger.debug("closing a valkey client failed", exc_info=True)
