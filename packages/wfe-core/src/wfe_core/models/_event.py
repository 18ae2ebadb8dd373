"""External events and the subscriptions of waiting steps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from wfe_core.models._instance import new_id, utcnow
from wfe_core.models._trace import TraceContext


@attrs.define
class Event:
    """A published event. ``time`` is its effective time: a subscription sees the event when
    ``time`` is at or after the subscription's ``subscribe_as_of``. ``trace_context`` is the
    trace of whoever published it (see :class:`TraceContext`): its deliveries link to it."""

    name: str
    key: str
    data: Any = None
    id: str = attrs.field(factory=new_id)
    time: datetime = attrs.field(factory=utcnow)
    is_processed: bool = False
    trace_context: TraceContext | None = None


@attrs.define
class EventSubscription:
    """A step waiting for an event of ``event_name`` and ``event_key``."""

    workflow_id: str
    pointer_id: str
    step_id: int
    event_name: str
    event_key: str
    subscribe_as_of: datetime
    id: str = attrs.field(factory=new_id)
    #: When the subscription stops waiting (wait_for with a timeout); ``None``: never.
    expires_at: datetime | None = None
    #: The event that satisfied it, once delivered.
    event_id: str | None = None
    terminated: bool = False
    create_time: datetime = attrs.field(factory=utcnow)
    #: What the waiting step attached for whoever serves it (an activity's parameters, a user
    #: task's prompt); JSON-compatible.
    data: Any = None
    #: The claim of an external worker (activities): its token, its id, and when the claim
    #: lapses (another worker may then claim the subscription). ``None``: not claimed.
    external_token: str | None = None
    external_worker_id: str | None = None
    external_token_expiry: datetime | None = None
