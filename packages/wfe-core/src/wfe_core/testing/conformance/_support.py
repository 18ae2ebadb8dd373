"""Helpers shared by the conformance suites."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.from_thread
import attrs
import pytest
from hypothesis import HealthCheck, settings

from wfe_core.serialization import from_primitive, to_primitive

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from wfe_core.models import ExecutionPointer
    from wfe_core.providers import Provider

T = TypeVar("T")

#: Settings of the model-based (state machine) tests: few, short runs, no deadline (the
#: machine is shared and noisy), and no health checks that trip on fixtures or slow backends.
MACHINE_SETTINGS = settings(
    max_examples=15,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def require(provider: Provider, capability: str) -> None:
    """Skip the running test, naming ``capability``, when ``provider`` does not declare it."""
    if capability not in type(provider).capabilities:
        pytest.skip(f"{type(provider).__name__} lacks the {str(capability)!r} capability")


def now_ms() -> datetime:
    """Now (aware UTC) truncated to milliseconds, the least precision providers must keep."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def as_stored(value: T) -> T:
    """``value`` as a provider gives it back: through the converter and JSON, so ``Any`` fields
    (workflow data, outcomes, ...) come back unstructured and datetimes aware."""
    primitive: Any = json.loads(json.dumps(to_primitive(value)))
    return from_primitive(primitive, type(value))


def as_held(pointer: ExecutionPointer, children_start: int) -> ExecutionPointer:
    """``pointer`` as a live part holds it when it left out its first ``children_start``
    child ids (``LivePart.children_start``)."""
    if not children_start:
        return pointer
    return attrs.evolve(pointer, children=pointer.children[children_start:])


def call(func: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T:
    """Run ``func(*args, **kwargs)`` on the event loop from one of its worker threads.

    State machines run in a worker thread (``anyio.to_thread.run_sync``) so that the provider
    stays on the loop that owns it (connections are often bound to one loop).
    """
    return anyio.from_thread.run(functools.partial(func, *args, **kwargs))
