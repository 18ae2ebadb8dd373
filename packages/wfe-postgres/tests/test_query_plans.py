"""No query of the persistence scans the stored instances: ``EXPLAIN`` of each statement on a
schema holding 100,000 instances (and as many events and subscriptions) shows index scans.

The one exception is by design: ``list_workflows``' total is a count of the matching rows."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from wfe_postgres import _sql as q
from wfe_postgres.migrations import apply_migrations

pytestmark = pytest.mark.anyio

ROWS = 100_000
_NOW = datetime(2030, 1, 1, tzinfo=UTC)

_FILL = f"""
INSERT INTO workflows (id, definition_id, version, status, reference, next_execution,
    create_time, complete_time, revision, pointer_count, document)
SELECT 'w' || i, 'def-' || (i % 50), 1,
    (ARRAY['runnable', 'complete', 'terminated', 'suspended'])[1 + i % 4],
    'ref-' || i, CASE WHEN i % 4 = 0 THEN timestamptz '2030-01-01' + i * interval '1 s' END,
    timestamptz '2029-01-01' + i * interval '1 s',
    CASE WHEN i % 4 IN (1, 2) THEN timestamptz '2029-06-01' + i * interval '1 s' END,
    1, 1, '{{}}'
FROM generate_series(1, {ROWS}) AS i;
INSERT INTO pointers (workflow_id, position, document)
    SELECT 'w' || i, 0, '{{}}' FROM generate_series(1, {ROWS}) AS i;
INSERT INTO pointer_children (workflow_id, position, idx, child_id)
    SELECT 'w' || i, 0, 0, 'c' || i FROM generate_series(1, {ROWS}) AS i;
INSERT INTO events (id, name, key, time, is_processed, document)
    SELECT 'e' || i, 'ev-' || (i % 100), 'k' || i, timestamptz '2029-01-01' + i * interval '1 s',
        i % 10 <> 0, '{{}}' FROM generate_series(1, {ROWS}) AS i;
INSERT INTO subscriptions (id, workflow_id, event_name, event_key, subscribe_as_of,
    create_time, terminated, document)
    SELECT 's' || i, 'w' || i, 'ev-' || (i % 100), 'k' || i,
        timestamptz '2029-01-01' + i * interval '1 s', timestamptz '2029-01-01', i % 2 = 0, '{{}}'
    FROM generate_series(1, {ROWS}) AS i;
INSERT INTO errors (workflow_id, time, document)
    SELECT 'w' || i, timestamptz '2029-01-01', '{{}}' FROM generate_series(1, {ROWS}) AS i;
ANALYZE;
"""

_LIST_WHERES = [
    q.list_filter(None, None, None),
    q.list_filter("complete", None, None),
    q.list_filter(None, "def-7", None),
    q.list_filter(None, None, "ref-77"),
]


def _plans(postgres_url: str, schema: str) -> dict[str, str]:
    statements: dict[str, tuple[str, object]] = {
        "get_runnable_instances": (q.DUE_WORKFLOWS, (_NOW,)),
        "next_execution_time": (q.NEXT_EXECUTION, ()),
        "get_workflow": (q.LOAD_WORKFLOWS, {"ids": ["w77"]}),
        "get_pointers": (q.POINTER_PAGE, {"id": "w77", "skip": 0, "take": 100}),
        "purge_workflows": (
            "SELECT id FROM workflows WHERE status = ANY(%s::text[])"
            " AND complete_time IS NOT NULL AND complete_time < %s",
            (["complete"], datetime(2029, 6, 1, 0, 10, tzinfo=UTC)),
        ),
        "get_runnable_events": (q.DUE_EVENTS, (datetime(2029, 1, 1, 0, 5, tzinfo=UTC),)),
        "get_events": (q.MATCHING_EVENTS, ("ev-7", "k7", datetime(2029, 1, 1, tzinfo=UTC))),
        "get_subscriptions": (q.OPEN_SUBSCRIPTIONS, ("ev-7", "k7", _NOW)),
        "get_errors": (q.WORKFLOW_ERRORS, ("w77",)),
        "get_event": (q.GET_EVENT, ("e77",)),
        "get_open_subscriptions": (q.NAMED_OPEN_SUBSCRIPTIONS, ("ev-7", 0, 100)),
        "claim_subscription": (
            q.CLAIMABLE_SUBSCRIPTION,
            {"name": "ev-7", "as_of": _NOW, "token": "t"},
        ),
    }
    for where, params in _LIST_WHERES:
        statements[f"list_workflows{where}"] = (q.list_page(where), (*params, 20, 0))
    plans: dict[str, str] = {}
    with psycopg.connect(postgres_url, options=f"-c search_path={schema}") as conn:
        conn.execute(_FILL)
        for name, (sql, params) in statements.items():
            rows = conn.execute(f"EXPLAIN {sql}", params).fetchall()  # type: ignore[call-overload]
            plans[name] = "\n".join(r[0] for r in rows)
    return plans


async def test_no_query_scans_the_stored_instances(
    db_url: str, postgres_url: str, schema: str
) -> None:
    await apply_migrations(db_url)
    plans = _plans(postgres_url, schema)
    scanning = {name: plan for name, plan in plans.items() if "Seq Scan" in plan}
    assert not scanning, "\n\n".join(f"{n}:\n{p}" for n, p in scanning.items())
    for name, plan in plans.items():
        assert "Index" in plan, f"{name}:\n{plan}"
