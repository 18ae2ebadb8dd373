"""Hypothesis strategies for the WFE models.

The values stay inside what every backend stores faithfully, so a round trip through any
conforming provider gives them back unchanged:

* text has no NUL character and no lone surrogate (PostgreSQL rejects both);
* integers fit in 53 bits (exact in JSON everywhere, JavaScript included);
* floats are finite, within ±1e9 and rounded to 6 decimals (no exponent forms a database
  might rewrite as integers, no ``-0.0``);
* datetimes are aware UTC with millisecond precision (the least the contract requires).
"""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st

from wfe_core.models import (
    Event,
    EventSubscription,
    ExecutionError,
    ExecutionPointer,
    PointerStatus,
    TraceContext,
    WorkflowInstance,
    WorkflowStatus,
)

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "aware_datetimes",
    "event_subscriptions",
    "events",
    "execution_errors",
    "execution_pointers",
    "ids",
    "json_values",
    "names",
    "texts",
    "trace_contexts",
    "workflow_instances",
]

_MIN_TIME = datetime(2000, 1, 1)
_MAX_TIME = datetime(2100, 1, 1)


def texts(*, min_size: int = 0, max_size: int = 20) -> SearchStrategy[str]:
    """Unicode text every backend stores as is (no NUL, no lone surrogates)."""
    return st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
        min_size=min_size,
        max_size=max_size,
    )


def names() -> SearchStrategy[str]:
    """Short identifier-like names (definition ids, event names and keys)."""
    return st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=16)


def ids() -> SearchStrategy[str]:
    """Ids shaped like :func:`wfe_core.models.new_id` (UUID4 hex)."""
    return st.uuids(version=4).map(lambda value: value.hex)


def aware_datetimes() -> SearchStrategy[datetime]:
    """Timezone-aware UTC datetimes with millisecond precision, years 2000 to 2100."""
    return st.datetimes(min_value=_MIN_TIME, max_value=_MAX_TIME, timezones=st.just(UTC)).map(
        lambda value: value.replace(microsecond=value.microsecond // 1000 * 1000, fold=0)
    )


def _floats() -> SearchStrategy[float]:
    # ``+ 0.0`` turns -0.0 into 0.0.
    return st.floats(min_value=-1e9, max_value=1e9, allow_nan=False).map(
        lambda value: round(value, 6) + 0.0
    )


def json_values(*, max_leaves: int = 12) -> SearchStrategy[Any]:
    """JSON-like values: ``None``, bools, ints, floats, text, and lists and string-keyed
    dicts of them, nested."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
        | _floats()
        | texts()
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(texts(max_size=8), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def trace_contexts() -> SearchStrategy[TraceContext]:
    """Trace contexts: a W3C ``traceparent`` and sometimes other propagator fields."""
    hex_digits = "0123456789abcdef"
    traceparent = st.tuples(
        st.text(hex_digits, min_size=32, max_size=32),
        st.text(hex_digits, min_size=16, max_size=16),
        st.sampled_from(["00", "01"]),
    ).map(lambda parts: f"00-{parts[0]}-{parts[1]}-{parts[2]}")
    others = st.dictionaries(names(), texts(max_size=30), max_size=2)
    return st.tuples(traceparent, others).map(
        lambda parts: TraceContext(tuple({**parts[1], "traceparent": parts[0]}.items()))
    )


def _json_objects() -> SearchStrategy[dict[str, Any]]:
    return st.dictionaries(texts(max_size=8), json_values(max_leaves=6), max_size=4)


def execution_pointers(
    *, step_id: SearchStrategy[int] | None = None
) -> SearchStrategy[ExecutionPointer]:
    """Execution pointers with every field filled with plausible values."""
    optional_time = st.none() | aware_datetimes()
    return st.builds(
        ExecutionPointer,
        step_id=step_id if step_id is not None else st.integers(min_value=0, max_value=1000),
        id=ids(),
        step_name=st.none() | texts(),
        status=st.sampled_from(PointerStatus),
        active=st.booleans(),
        start_time=optional_time,
        end_time=optional_time,
        sleep_until=optional_time,
        persistence_data=json_values(max_leaves=6),
        event_name=st.none() | names(),
        event_key=st.none() | names(),
        event_effective_date=optional_time,
        event_published=st.booleans(),
        event_data=json_values(max_leaves=6),
        outcome=json_values(max_leaves=4),
        attempt=st.integers(min_value=0, max_value=100),
        predecessor_id=st.none() | ids(),
        context_item=json_values(max_leaves=4),
        children=st.lists(ids(), max_size=3),
        scope=st.lists(ids(), max_size=3),
        error=st.none() | texts(max_size=40),
        extensions=_json_objects(),
    )


def workflow_instances(
    *,
    status: SearchStrategy[WorkflowStatus] | None = None,
    data: SearchStrategy[Any] | None = None,
    max_pointers: int = 4,
) -> SearchStrategy[WorkflowInstance]:
    """Workflow instances (revision 0, as before :meth:`create_workflow`) with JSON-like data
    and up to ``max_pointers`` pointers."""
    optional_time = st.none() | aware_datetimes()
    return st.builds(
        WorkflowInstance,
        definition_id=names(),
        version=st.integers(min_value=1, max_value=1000),
        id=ids(),
        status=status if status is not None else st.sampled_from(WorkflowStatus),
        data=data if data is not None else (st.none() | _json_objects() | json_values()),
        reference=st.none() | texts(max_size=30),
        description=st.none() | texts(max_size=60),
        pointers=st.lists(execution_pointers(), max_size=max_pointers),
        next_execution=optional_time,
        create_time=aware_datetimes(),
        complete_time=optional_time,
        revision=st.just(0),
        parent_workflow_id=st.none() | ids(),
        parent_pointer_id=st.none() | ids(),
        trace_context=st.none() | trace_contexts(),
    )


def events(
    *, name: SearchStrategy[str] | None = None, key: SearchStrategy[str] | None = None
) -> SearchStrategy[Event]:
    """Published events with JSON-like data."""
    return st.builds(
        Event,
        name=name if name is not None else names(),
        key=key if key is not None else names(),
        data=json_values(),
        id=ids(),
        time=aware_datetimes(),
        is_processed=st.booleans(),
        trace_context=st.none() | trace_contexts(),
    )


def event_subscriptions(
    *, workflow_id: SearchStrategy[str] | None = None
) -> SearchStrategy[EventSubscription]:
    """Subscriptions of waiting steps (``workflow_id`` defaults to random ids)."""
    optional_time = st.none() | aware_datetimes()
    return st.builds(
        EventSubscription,
        workflow_id=workflow_id if workflow_id is not None else ids(),
        pointer_id=ids(),
        step_id=st.integers(min_value=0, max_value=1000),
        event_name=names(),
        event_key=names(),
        subscribe_as_of=aware_datetimes(),
        id=ids(),
        expires_at=optional_time,
        event_id=st.none() | ids(),
        terminated=st.booleans(),
        create_time=aware_datetimes(),
    )


def execution_errors(
    *, workflow_id: SearchStrategy[str] | None = None
) -> SearchStrategy[ExecutionError]:
    """Recorded step failures (``workflow_id`` defaults to random ids)."""
    return st.builds(
        ExecutionError,
        workflow_id=workflow_id if workflow_id is not None else ids(),
        pointer_id=ids(),
        message=texts(max_size=60),
        step_id=st.none() | st.integers(min_value=0, max_value=1000),
        step_name=st.none() | texts(),
        error_type=st.none() | names(),
        traceback=st.none() | texts(max_size=200),
        time=aware_datetimes(),
    )
