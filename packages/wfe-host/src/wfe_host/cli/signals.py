"""Stopping a CLI command on SIGINT (Ctrl+C) or SIGTERM (what service managers and CI runners
send), shared by ``wfe run`` and ``wfe worker``."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, TypeVar

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from wfe_host import WorkflowHost

__all__ = ["STOP_SIGNALS", "exit_status", "stopping_line", "until_signalled"]

#: The signals that stop a command.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

T = TypeVar("T")


def exit_status(name: str) -> int:
    """The exit status of a command stopped by signal ``name``: 128 + its number, as shells
    report a process killed by it (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signal.Signals[name])


def stopping_line(host: WorkflowHost) -> str:
    """What a command says on stderr as a stop signal starts a graceful stop of ``host``."""
    running = host.running_workflows
    grace = host.options.shutdown_grace
    if not running:
        return "stopping (send it again to stop at once)"
    return (
        f"stopping: waiting up to {grace:g} s for the running steps of {running} "
        f"workflow{'' if running == 1 else 's'} to finish (send it again to stop at once)"
    )


async def until_signalled(
    body: Callable[[], Awaitable[T]], on_signal: Callable[[str, int], bool]
) -> tuple[T | None, list[str]]:
    """Run ``body`` while watching for the stop signals.

    ``on_signal(name, count)`` is called for each one (``count`` starts at 1); when it returns
    true, ``body`` is cancelled. Returns ``body``'s result (``None`` when it was cancelled)
    and the names of the signals received.
    """
    received: list[str] = []
    result: list[T] = []
    with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                async for signum in signals:
                    received.append(signal.Signals(signum).name)
                    if on_signal(received[-1], len(received)):
                        tg.cancel_scope.cancel()

            async def run() -> None:
                result.append(await body())
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            tg.start_soon(run)
    return (result[0] if result else None), received
