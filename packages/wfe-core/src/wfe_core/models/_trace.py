"""Where a workflow or an event sits in a distributed trace (OpenTelemetry's context)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from collections.abc import Mapping

#: The W3C Trace Context header naming the trace and the parent span.
TRACEPARENT = "traceparent"


def _fields(value: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    # Sorted: the same carrier is the same value whatever order a store gives its keys back.
    return tuple(sorted((str(k), str(v)) for k, v in value))


@attrs.frozen
class TraceContext:
    """The fields a text-map propagator wrote for a span (W3C ``traceparent`` and
    ``tracestate``, baggage, or whatever propagators ``OTEL_PROPAGATORS`` configures).

    Stored with a workflow instance when it is started and with an event when it is
    published, so the workflow's passes on any host, its child workflows and the deliveries
    of its events join the trace that started it. Frozen: a new context is a new value (the
    stores compare an instance's fields by identity to skip rewriting what did not change).
    It is stored as a JSON object of strings.
    """

    #: ``(name, value)`` pairs, sorted by name.
    fields: tuple[tuple[str, str], ...] = attrs.field(converter=_fields)

    @classmethod
    def from_carrier(cls, carrier: Mapping[str, str]) -> TraceContext | None:
        """The context a propagator wrote into ``carrier``; ``None`` when it wrote nothing
        (no span was current, or no SDK is configured)."""
        if not carrier:
            return None
        return cls(tuple(carrier.items()))

    def carrier(self) -> dict[str, str]:
        """The fields as a new dict, for a propagator's ``extract``."""
        return dict(self.fields)

    @property
    def traceparent(self) -> str | None:
        """The W3C ``traceparent`` field (``00-<trace id>-<span id>-<flags>``), if written."""
        return dict(self.fields).get(TRACEPARENT)
