"""What a step returns: how the workflow goes on after it ran.

Internal module: import ``ExecutionResult`` from :mod:`wfe_core`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterable


@attrs.frozen
class ExecutionResult:
    """The result of one run of a step, built with the class methods below.

    * :meth:`next` / :meth:`outcome` -- the step is done; follow the routes (an outcome value
      selects among routes that name a value, routes without a value are always followed);
    * :meth:`persist` -- keep ``state`` and run the step again (containers re-run when their
      branches finish);
    * :meth:`sleep` -- run the step again after ``duration``;
    * :meth:`branch` -- start the step's child branches once per value, then run the step again
      when they have all finished;
    * :meth:`wait_for_event` -- run the step again when a matching event is published.

    ``output`` is merged into the workflow data (keys are attribute names, or dict keys for
    dict data) when the step is done.
    """

    proceed: bool = False
    outcome_value: Any = None
    persistence_data: Any = None
    sleep_for: timedelta | None = None
    branch_values: tuple[Any, ...] | None = None
    event_name: str | None = None
    event_key: str | None = None
    event_effective_date: datetime | None = None
    event_timeout: timedelta | None = None
    #: Stored with the subscription of :meth:`wait_for_event` (``EventSubscription.data``).
    subscription_data: Any = None
    output: Mapping[str, Any] | None = None
    end_workflow_requested: bool = False

    @classmethod
    def next(cls, output: Mapping[str, Any] | None = None) -> ExecutionResult:
        """The step is done; go on along its routes."""
        return cls(proceed=True, output=output)

    @classmethod
    def outcome(cls, value: Any, output: Mapping[str, Any] | None = None) -> ExecutionResult:
        """The step is done with outcome ``value``, which selects the routes to follow."""
        return cls(proceed=True, outcome_value=value, output=output)

    @classmethod
    def persist(cls, state: Any) -> ExecutionResult:
        """Keep ``state`` (``ctx.persistence_data`` next time) and run the step again."""
        return cls(persistence_data=state)

    @classmethod
    def sleep(cls, duration: timedelta | float, state: Any = None) -> ExecutionResult:
        """Run the step again after ``duration`` (a timedelta or seconds), keeping ``state``."""
        if not isinstance(duration, timedelta):
            duration = timedelta(seconds=duration)
        return cls(sleep_for=duration, persistence_data=state)

    @classmethod
    def branch(cls, values: Iterable[Any], state: Any = None) -> ExecutionResult:
        """Start every child branch of the step once per value (``ctx.item`` in the branch);
        the step runs again, with ``state``, when all of them have finished."""
        return cls(branch_values=tuple(values), persistence_data=state)

    @classmethod
    def wait_for_event(
        cls,
        name: str,
        key: str,
        effective_date: datetime | None = None,
        *,
        timeout: timedelta | None = None,
        data: Any = None,
    ) -> ExecutionResult:
        """Run the step again when an event ``name``/``key`` whose time is at or after
        ``effective_date`` is published (``None``: any stored event, even earlier ones).

        With ``timeout`` the step also runs again when it expires, without event data.
        ``data`` (JSON-compatible) is stored with the subscription for whoever serves it
        (activities and user tasks are built on it).
        """
        return cls(
            event_name=name,
            event_key=str(key),
            event_effective_date=effective_date,
            event_timeout=timeout,
            subscription_data=data,
        )

    @classmethod
    def end_workflow(cls) -> ExecutionResult:
        """Finish the whole workflow now: every other active step is cancelled."""
        return cls(proceed=True, end_workflow_requested=True)
