"""ExecutionResult and ErrorBehavior: what steps and definitions say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from wfe_core import ErrorBehavior, ExecutionResult
from wfe_core.models import ErrorBehaviorKind
from wfe_core.models._definition import MAX_RETRY_DELAY


def test_next_and_outcome_proceed() -> None:
    assert ExecutionResult.next().proceed
    result = ExecutionResult.outcome("yes", output={"a": 1})
    assert (result.proceed, result.outcome_value, result.output) == (True, "yes", {"a": 1})


def test_waiting_results_do_not_proceed() -> None:
    assert not ExecutionResult.persist({"i": 1}).proceed
    sleep = ExecutionResult.sleep(2, state="s")
    assert (sleep.sleep_for, sleep.persistence_data) == (timedelta(seconds=2), "s")
    branch = ExecutionResult.branch([1, 2], state={"x": 1})
    assert branch.branch_values == (1, 2)
    assert not branch.proceed


def test_wait_for_event_keeps_name_key_and_date() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    result = ExecutionResult.wait_for_event("paid", 42, when, timeout=timedelta(seconds=3))  # type: ignore[arg-type]
    assert (result.event_name, result.event_key) == ("paid", "42")
    assert result.event_effective_date == when
    assert result.event_timeout == timedelta(seconds=3)


def test_retry_delay_backs_off_to_the_cap() -> None:
    behavior = ErrorBehavior.retry(interval=1, max_retries=5, backoff=2, max_interval=5)
    assert behavior.kind == ErrorBehaviorKind.RETRY
    delays = [behavior.retry_delay(n).total_seconds() for n in range(1, 6)]
    assert delays == [1, 2, 4, 5, 5]


def test_retry_delay_without_a_cap_stops_at_365_days_instead_of_overflowing() -> None:
    # An hour doubled 40 times overflows a timedelta; 2.0 ** 2000 overflows a float.
    behavior = ErrorBehavior.retry(interval=3600, backoff=2)
    assert behavior.retry_delay(3) == timedelta(hours=4)
    assert behavior.retry_delay(41) == MAX_RETRY_DELAY == timedelta(days=365)
    assert behavior.retry_delay(5000) == MAX_RETRY_DELAY
    capped = ErrorBehavior.retry(interval=3600, backoff=2, max_interval=7200)
    assert capped.retry_delay(5000) == timedelta(hours=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"max_retries": -1}, "max_retries"), ({"backoff": 0.5}, "backoff")],
)
def test_retry_rejects_nonsense(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ErrorBehavior.retry(**kwargs)  # type: ignore[arg-type]


def test_other_behaviors() -> None:
    assert ErrorBehavior.suspend().kind == ErrorBehaviorKind.SUSPEND
    assert ErrorBehavior.terminate().kind == ErrorBehaviorKind.TERMINATE
    assert ErrorBehavior.compensate().kind == ErrorBehaviorKind.COMPENSATE
