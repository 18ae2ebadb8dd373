"""The trace context stored with instances and events: a frozen, canonical carrier."""

from __future__ import annotations

import pytest
from cattrs import ClassValidationError, transform_error

from wfe_core.models import Event, TraceContext, WorkflowInstance
from wfe_core.serialization import from_primitive, to_primitive

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_carrier_round_trips_and_its_order_does_not_matter() -> None:
    written = {"tracestate": "a=1", "traceparent": TRACEPARENT}
    context = TraceContext.from_carrier(written)
    assert context is not None
    assert context.carrier() == written
    assert context.traceparent == TRACEPARENT
    assert context == TraceContext.from_carrier(dict(reversed(written.items())))
    assert TraceContext.from_carrier({}) is None  # the propagator wrote nothing
    with pytest.raises(AttributeError):
        context.fields = ()  # type: ignore[misc]


def test_it_is_stored_as_an_object_of_strings() -> None:
    context = TraceContext((("traceparent", TRACEPARENT),))
    instance = WorkflowInstance("flow", 1, trace_context=context)
    stored = to_primitive(instance)
    assert stored["trace_context"] == {"traceparent": TRACEPARENT}
    assert from_primitive(stored, WorkflowInstance).trace_context == context
    assert to_primitive(Event("e", "k"))["trace_context"] is None


def test_a_stored_value_that_is_not_an_object_of_strings_is_refused_saying_where() -> None:
    stored = to_primitive(WorkflowInstance("flow", 1))
    stored["trace_context"] = {"traceparent": 7}
    with pytest.raises(ClassValidationError) as caught:
        from_primitive(stored, WorkflowInstance)
    assert any("@ $.trace_context" in line for line in transform_error(caught.value))
    (inner,) = caught.value.exceptions
    assert "a trace context is an object of strings" in str(inner)
