"""Work done outside the engine: activities taken by external workers, user tasks answered
by people. Both are subscriptions of waiting steps (see :mod:`wfe_core.primitives`);
this service claims and lists them, and publishes results as the events they wait for.

A token handed to a worker is ``"<subscription id>.<nonce>"``; the store keeps the nonce as
the subscription's ``external_token``, so a token whose claim lapsed and was taken again
(a new nonce) is refused on submit.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio

from wfe_core.errors import (
    ActivityTokenError,
    SubscriptionNotFoundError,
    UnsupportedOperationError,
    UserActionError,
)
from wfe_core.models import Event, OpenUserAction, PendingActivity, UserActionOption, new_id
from wfe_core.primitives import (
    ACTIVITY_EVENT_PREFIX,
    ACTIVITY_RESULT,
    USER_TASK_EVENT,
    activity_event,
)
from wfe_core.providers import capabilities as cap
from wfe_core.serialization import to_primitive

if TYPE_CHECKING:
    from collections.abc import Sequence

    from wfe_core.models import EventSubscription
    from wfe_host.runtime.core import HostCore
    from wfe_host.runtime.events import EventDelivery

logger = logging.getLogger("wfe_host.external")

#: How long a worker holds an activity it took, unless it says otherwise.
DEFAULT_ACTIVITY_LEASE = timedelta(minutes=5)
#: Seconds between claims while ``get_pending_activity`` waits for an activity to appear:
#: the first pause, growing by half each time up to the longest.
ACTIVITY_POLL_INTERVAL = 0.1
ACTIVITY_POLL_LONGEST = 1.0
#: Open subscriptions read per page while listing user tasks.
_PAGE = 500

_TOKEN = re.compile(r"^([0-9a-f]{32})\.([0-9a-f]{32})$")


def _parse_token(token: str) -> tuple[str, str]:
    match = _TOKEN.match(token.strip()) if isinstance(token, str) else None
    if match is None:
        raise ActivityTokenError(
            f"malformed activity token {token!r} (expected what get_pending_activity "
            "returned: '<subscription id>.<nonce>', 65 characters)"
        )
    return match.group(1), match.group(2)


class ExternalWork:
    """Activities and user tasks over the core's persistence; results go out through
    event delivery, as any published event."""

    def __init__(self, core: HostCore, events: EventDelivery) -> None:
        self.core = core
        self.events = events

    def _require(self, operation: str) -> None:
        persistence = self.core.persistence
        if cap.EXTERNAL_WORK not in type(persistence).capabilities:
            raise UnsupportedOperationError(
                f"{operation} needs a persistence provider with the 'external-work' "
                f"capability; {type(persistence).__qualname__} does not declare it "
                "(memory, sqlite and postgres have it)"
            )

    # -- activities --------------------------------------------------------------------------
    async def get_pending_activity(
        self,
        activity_name: str,
        worker_id: str,
        timeout: float | timedelta | None = None,
        *,
        lease: float | timedelta = DEFAULT_ACTIVITY_LEASE,
    ) -> PendingActivity | None:
        """Claim the oldest activity ``activity_name`` waiting for a worker, for
        ``lease``; wait up to ``timeout`` for one to appear. ``None`` when none did."""
        self._require("get_pending_activity")
        if not activity_name:
            raise ValueError("activity_name must not be empty")
        if not worker_id:
            raise ValueError("worker_id must not be empty")
        wait = _seconds(timeout, "timeout") or 0.0
        held = timedelta(seconds=_seconds(lease, "lease") or 0.0)
        if held <= timedelta(0):
            raise ValueError(f"lease must be positive, got {lease!r}")
        deadline = anyio.current_time() + wait
        name = activity_event(activity_name)
        pause = ACTIVITY_POLL_INTERVAL
        while True:
            nonce = new_id()
            now = self.core.clock.now()
            claimed = await self.core.persistence.claim_subscription(
                name, token=nonce, worker_id=worker_id, expires_at=now + held, as_of=now
            )
            if claimed is not None:
                logger.info(
                    "activity %s taken by %s",
                    activity_name,
                    worker_id,
                    extra={"workflow_id": claimed.workflow_id},
                )
                return PendingActivity(
                    token=f"{claimed.id}.{nonce}",
                    activity_name=activity_name,
                    parameters=claimed.data,
                    workflow_id=claimed.workflow_id,
                    token_expiry=now + held,
                )
            left = deadline - anyio.current_time()
            if left <= 0:
                return None
            # Polling: an activity stored by another process announces itself nowhere this
            # process listens (the lifecycle publisher may be process-local).
            await anyio.sleep(min(pause, left))
            pause = min(pause * 1.5, ACTIVITY_POLL_LONGEST)

    async def _claimed(self, token: str) -> EventSubscription:
        subscription_id, nonce = _parse_token(token)
        try:
            subscription = await self.core.persistence.get_subscription(subscription_id)
        except SubscriptionNotFoundError:
            raise ActivityTokenError(
                f"no activity has the token {token!r} (its workflow may have been purged)"
            ) from None
        if not subscription.event_name.startswith(ACTIVITY_EVENT_PREFIX):
            raise ActivityTokenError(f"the token {token!r} is not an activity's")
        activity = subscription.event_name.removeprefix(ACTIVITY_EVENT_PREFIX)
        if subscription.terminated:
            raise ActivityTokenError(
                f"activity {activity!r} of workflow {subscription.workflow_id} is no longer "
                "waiting (completed, timed out, or its workflow ended)"
            )
        if subscription.external_token != nonce:
            raise ActivityTokenError(
                f"the token of activity {activity!r} (workflow {subscription.workflow_id}) is "
                "stale: its lease lapsed and another worker took it, or it was released"
            )
        return subscription

    async def submit(self, token: str, outcome: dict[str, Any]) -> None:
        """Publish the outcome of the activity claimed with ``token``."""
        self._require("submitting an activity result")
        subscription = await self._claimed(token)
        outcome["token"] = token
        await self.events.publish(
            Event(
                name=subscription.event_name,
                key=subscription.event_key,
                data=outcome,
                time=self.core.clock.now(),
            )
        )

    async def submit_success(self, token: str, result: Any) -> None:
        await self.submit(token, {ACTIVITY_RESULT: "success", "result": to_primitive(result)})

    async def submit_failure(self, token: str, error: Any) -> None:
        await self.submit(token, {ACTIVITY_RESULT: "failure", "error": to_primitive(error)})

    async def release(self, token: str) -> bool:
        """Hand the activity back; ``False`` when ``token`` was no longer its claim."""
        self._require("release_activity")
        subscription_id, nonce = _parse_token(token)
        try:
            return await self.core.persistence.release_subscription_claim(subscription_id, nonce)
        except SubscriptionNotFoundError:
            raise ActivityTokenError(f"no activity has the token {token!r}") from None

    # -- user tasks --------------------------------------------------------------------------
    async def _open_tasks(self) -> list[EventSubscription]:
        found: list[EventSubscription] = []
        skip = 0
        while True:
            page: Sequence[EventSubscription] = await self.core.persistence.get_open_subscriptions(
                USER_TASK_EVENT, skip=skip, take=_PAGE
            )
            found.extend(page)
            if len(page) < _PAGE:
                return found
            skip += _PAGE

    async def open_user_actions(
        self, workflow_id: str | None = None, assigned_to: str | None = None
    ) -> list[OpenUserAction]:
        """The user tasks waiting for an answer, oldest first."""
        self._require("get_open_user_actions")
        actions = []
        for subscription in await self._open_tasks():
            if workflow_id is not None and subscription.workflow_id != workflow_id:
                continue
            action = _user_action(subscription)
            if assigned_to is not None and action.assigned_to != assigned_to:
                continue
            actions.append(action)
        return actions

    async def publish_user_action(self, key: str, user: str, value: Any) -> str:
        """Answer the open user task ``key`` with ``value`` (one of its options) as
        ``user``; returns the event id."""
        self._require("publish_user_action")
        now = self.core.clock.now()
        open_tasks = await self.core.persistence.get_subscriptions(USER_TASK_EVENT, key, now)
        if not open_tasks:
            raise UserActionError(
                f"no open user task has the key {key!r} (answered already, its workflow "
                "ended, or it is running an escalation: try again in a moment)"
            )
        action = _user_action(open_tasks[0])
        stored = to_primitive(value)
        values = [option.value for option in action.options]
        if action.options and stored not in values:
            raise UserActionError(
                f"{value!r} is not an option of user task {key!r}; its options: "
                + ", ".join(repr(v) for v in values)
            )
        return await self.events.publish(
            Event(name=USER_TASK_EVENT, key=key, data={"user": user, "value": stored}, time=now)
        )


def _user_action(subscription: EventSubscription) -> OpenUserAction:
    data = subscription.data if isinstance(subscription.data, dict) else {}
    options = tuple(
        UserActionOption(value=option.get("value"), label=str(option.get("label", "")))
        for option in data.get("options", ())
        if isinstance(option, dict)
    )
    assigned = data.get("assigned_to")
    return OpenUserAction(
        key=subscription.event_key,
        prompt=str(data.get("prompt", "")),
        assigned_to=None if assigned is None else str(assigned),
        options=options,
        workflow_id=subscription.workflow_id,
        created=subscription.create_time,
    )


def _seconds(value: float | timedelta | None, what: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"{what} must be >= 0, got {value!r}")
    return seconds
