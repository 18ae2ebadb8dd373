"""The SQL statements of the PostgreSQL persistence (internal).

Unqualified names: every connection's ``search_path`` is the provider's schema. Rows of a
write travel as arrays (``unnest``), so a write is one statement whatever it holds; a
statement is atomic on its own, so the executor's per-step write needs no ``BEGIN``/``COMMIT``
round trips.
"""

from __future__ import annotations

import functools
from typing import Any

# The head's columns of an update, checked against the stored revision and fence in the
# same statement. A fence only ever moves up (GREATEST ignores NULL).
_UPDATE_HEAD = """
    w AS (
        UPDATE workflows SET status = %(status)s, reference = %(reference)s,
            next_execution = %(next_execution)s, complete_time = %(complete_time)s,
            revision = %(revision)s, pointer_count = %(pointer_count)s,
            document = %(document)s, fence = GREATEST(fence, %(fence)s::bigint)
        WHERE id = %(id)s AND revision = %(expected)s
            AND (fence IS NULL OR %(fence)s::bigint IS NULL OR fence <= %(fence)s::bigint)
        RETURNING id
    )"""

# A write giving its lease back (leased writes): the lease, locked for the statement (a
# taker of the key waits for it, then finds it gone), must be the key's current one for the
# head to be written; the statement frees it once the head is written.
_HELD_LEASE = """
    held AS (
        SELECT FROM wfe_locks
        WHERE key = %(id)s AND owner = %(lease_owner)s AND token = %(fence)s
            AND expires_at > now()
        FOR UPDATE
    )"""
_UPDATE_LEASED_HEAD = _UPDATE_HEAD.replace(
    "RETURNING id", "AND EXISTS (SELECT FROM held)\n        RETURNING id"
)
_FREED_LEASE = """
    freed AS (
        DELETE FROM wfe_locks WHERE key = %(id)s AND token = %(fence)s AND EXISTS (SELECT FROM w)
        RETURNING key
    )"""

_POINTER_ROWS = """
    p AS (
        INSERT INTO pointers (workflow_id, position, document)
        SELECT w.id, t.position, t.document
        FROM w, unnest(%(positions)s::integer[], %(texts)s::text[]) AS t(position, document)
        ON CONFLICT (workflow_id, position) DO UPDATE SET document = EXCLUDED.document
    ),
    c AS (
        INSERT INTO pointer_children (workflow_id, position, idx, child_id)
        SELECT w.id, t.position, t.idx, t.child_id
        FROM w, unnest(%(child_positions)s::integer[], %(child_indices)s::integer[],
                       %(child_ids)s::text[]) AS t(position, idx, child_id)
        ON CONFLICT (workflow_id, position, idx) DO UPDATE SET child_id = EXCLUDED.child_id
    )"""

# Subscriptions are replaced by id (keeping their place among equal times: seq stays);
# an event id already stored fails the statement (unique violation), so nothing is stored.
_SUBSCRIPTION_ROWS = """
    s AS (
        INSERT INTO subscriptions (id, workflow_id, event_name, event_key, subscribe_as_of,
                                   create_time, terminated, document)
        SELECT t.* FROM w, unnest(%(s_id)s::text[], %(s_workflow)s::text[], %(s_name)s::text[],
            %(s_key)s::text[], %(s_as_of)s::timestamptz[], %(s_created)s::timestamptz[],
            %(s_terminated)s::boolean[], %(s_document)s::text[]) AS t
        ON CONFLICT (id) DO UPDATE SET workflow_id = EXCLUDED.workflow_id,
            event_name = EXCLUDED.event_name, event_key = EXCLUDED.event_key,
            subscribe_as_of = EXCLUDED.subscribe_as_of, create_time = EXCLUDED.create_time,
            terminated = EXCLUDED.terminated, document = EXCLUDED.document
    )"""
# An open subscription written makes the earliest stored event it matches (the one it
# gets) unprocessed again in the same statement, so the recovery sweep delivers an event
# published before it even when the writer dies before queueing it (events_by_name_key
# serves it, one index row). Only that one: a new wait's write costs the same however many
# events its key had (reopening them all made a reused key's waits slower run after run).
# Whether that event is processed is not asked: a delivery may be marking it processed
# right now, having found no subscription, and this statement's snapshot would still see it
# unprocessed and leave it, the mark winning once both commit. Updated either way, the row
# is locked: the statement waits for a mark under way and reopens after it, or the mark
# waits for this write, and the delivery's look for subscriptions after its mark finds it.
_REOPENED_EVENTS = """
    r AS (
        UPDATE events SET is_processed = false
        FROM w, unnest(%(s_name)s::text[], %(s_key)s::text[], %(s_as_of)s::timestamptz[],
                       %(s_terminated)s::boolean[]) AS t(name, key, as_of, terminated),
            LATERAL (SELECT f.id, f.time FROM events f
                     WHERE f.name = t.name AND f.key = t.key AND f.time >= t.as_of
                     ORDER BY f.time, f.seq LIMIT 1) AS first
        WHERE NOT t.terminated AND events.id = first.id{}
    )"""
# The events the same write stores are not seen by the statement's other parts: one of them
# earlier than the earliest stored one is the subscription's (and is unprocessed).
_NOT_BEFORE_NEW = """
            AND NOT EXISTS (
                SELECT FROM unnest(%(v_name)s::text[], %(v_key)s::text[],
                                   %(v_time)s::timestamptz[]) AS n(name, key, time)
                WHERE n.name = t.name AND n.key = t.key AND n.time >= t.as_of
                    AND n.time < first.time)"""
_ERROR_ROWS = """
    e AS (
        INSERT INTO errors (workflow_id, time, document)
        SELECT t.* FROM w, unnest(%(e_workflow)s::text[], %(e_time)s::timestamptz[],
            %(e_document)s::text[]) AS t
    )"""
_EVENT_ROWS = """
    v AS (
        INSERT INTO events (id, name, key, time, is_processed, document)
        SELECT t.* FROM w, unnest(%(v_id)s::text[], %(v_name)s::text[], %(v_key)s::text[],
            %(v_time)s::timestamptz[], %(v_processed)s::boolean[], %(v_document)s::text[]) AS t
    )"""

# What the statement found: whether it wrote, and the stored revision and fence before it
# (the sub-selects read the statement's snapshot), for the error of a refused write; and of
# a write giving its lease back, whether the lease was current (waking the key's waiters
# once freed, as the lock's release does).
_RESULT = """
    SELECT (SELECT count(*) FROM w), (SELECT revision FROM workflows WHERE id = %(id)s),
           (SELECT fence FROM workflows WHERE id = %(id)s)"""
_RELEASED_RESULT = """,
           (SELECT count(*) FROM held), (SELECT pg_notify(%(channel)s, %(topic)s) FROM freed)"""


@functools.cache
def persist(
    pointers: bool,
    subscriptions: bool,
    errors: bool,
    events: bool,
    reopen: bool = False,
    release: bool = False,
) -> str:
    """The statement of a write holding the parts given: the head always; the changed and
    new pointer rows (the executor's write; a whole-instance write stores them after); the
    subscriptions, errors and events passed with it, and (``reopen``: some subscription is
    open) the marking of the stored events they match unprocessed; with ``release``, the
    lease the write gives back (its result has two more columns). Only the parts a write
    needs: most steps pass none of the last five, and every part costs the server work even
    when empty. (At most 48 texts, each prepared by the driver once it is used often.)"""
    parts = [_HELD_LEASE, _UPDATE_LEASED_HEAD, _FREED_LEASE] if release else [_UPDATE_HEAD]
    for wanted, part in (
        (pointers, _POINTER_ROWS),
        (subscriptions, _SUBSCRIPTION_ROWS),
        (subscriptions and reopen, _REOPENED_EVENTS.format(_NOT_BEFORE_NEW if events else "")),
        (errors, _ERROR_ROWS),
        (events, _EVENT_ROWS),
    ):
        if wanted:
            parts.append(part)
    result = _RESULT + _RELEASED_RESULT if release else _RESULT
    return f"WITH {', '.join(parts)} {result}"


#: The pointer and child rows of merged writes: those of the row ``ord`` of ``t`` go with
#: the instance ``w`` wrote for it (a refused write stores none of its rows).
_MERGED_ROWS = """p AS (
        INSERT INTO pointers (workflow_id, position, document)
        SELECT w.id, r.position, r.document
        FROM w JOIN unnest(%(p_ords)s::bigint[], %(positions)s::integer[], %(texts)s::text[])
            AS r(ord, position, document) ON r.ord = w.ord
        ON CONFLICT (workflow_id, position) DO UPDATE SET document = EXCLUDED.document
    ),
    c AS (
        INSERT INTO pointer_children (workflow_id, position, idx, child_id)
        SELECT w.id, r.position, r.idx, r.child_id
        FROM w JOIN unnest(%(c_ords)s::bigint[], %(child_positions)s::integer[],
                           %(child_indices)s::integer[], %(child_ids)s::text[])
            AS r(ord, position, idx, child_id) ON r.ord = w.ord
        ON CONFLICT (workflow_id, position, idx) DO UPDATE SET child_id = EXCLUDED.child_id
    )"""

#: The plain writes of many instances (heads, pointer and child rows only) as one statement:
#: what ``persist(True, False, False, False)`` does for each, row ``ord`` of the head arrays
#: with the pointer and child rows of the same ``ord``. One result row per write, in order,
#: as that statement's (the sub-selects read the statement's snapshot: the stored revision
#: and fence before it). The ids are distinct (see ``_batch.Merge.key``).
PERSIST_MANY = f"""
    WITH t AS (
        SELECT * FROM unnest(%(ids)s::text[], %(statuses)s::text[], %(references)s::text[],
            %(next_executions)s::timestamptz[], %(complete_times)s::timestamptz[],
            %(revisions)s::bigint[], %(pointer_counts)s::integer[], %(documents)s::text[],
            %(expected)s::bigint[], %(fences)s::bigint[])
            WITH ORDINALITY AS t(id, status, reference, next_execution, complete_time,
                revision, pointer_count, document, expected, fence, ord)
    ),
    w AS (
        UPDATE workflows AS f SET status = t.status, reference = t.reference,
            next_execution = t.next_execution, complete_time = t.complete_time,
            revision = t.revision, pointer_count = t.pointer_count, document = t.document,
            fence = GREATEST(f.fence, t.fence)
        FROM t
        WHERE f.id = t.id AND f.revision = t.expected
            AND (f.fence IS NULL OR t.fence IS NULL OR f.fence <= t.fence)
        RETURNING f.id, t.ord
    ),
    {_MERGED_ROWS}
    SELECT w.ord IS NOT NULL, s.revision, s.fence
    FROM t LEFT JOIN w ON w.ord = t.ord LEFT JOIN workflows s ON s.id = t.id
    ORDER BY t.ord"""

#: The writes giving their leases back (``persist(True, False, False, False, release=True)``
#: for each) as one statement: a write is made only while its own lease is the key's
#: current one (locked for the statement, as the single write locks it), and frees it once
#: its head is written, waking the key's waiters. One result row per write, in order, as
#: that statement's: whether it wrote, the stored revision and fence before it, whether its
#: lease was current. The ids are distinct (see ``_batch.Merge.key``).
PERSIST_RELEASED_MANY = f"""
    WITH t AS (
        SELECT * FROM unnest(%(ids)s::text[], %(statuses)s::text[], %(references)s::text[],
            %(next_executions)s::timestamptz[], %(complete_times)s::timestamptz[],
            %(revisions)s::bigint[], %(pointer_counts)s::integer[], %(documents)s::text[],
            %(expected)s::bigint[], %(fences)s::bigint[], %(lease_owners)s::text[],
            %(channels)s::text[], %(topics)s::text[])
            WITH ORDINALITY AS t(id, status, reference, next_execution, complete_time,
                revision, pointer_count, document, expected, fence, lease_owner, channel,
                topic, ord)
    ),
    held AS (
        SELECT l.key FROM wfe_locks l JOIN t ON l.key = t.id
        WHERE l.owner = t.lease_owner AND l.token = t.fence AND l.expires_at > now()
        ORDER BY t.ord
        FOR UPDATE OF l
    ),
    w AS (
        UPDATE workflows AS f SET status = t.status, reference = t.reference,
            next_execution = t.next_execution, complete_time = t.complete_time,
            revision = t.revision, pointer_count = t.pointer_count, document = t.document,
            fence = GREATEST(f.fence, t.fence)
        FROM t JOIN held ON held.key = t.id
        WHERE f.id = t.id AND f.revision = t.expected
            AND (f.fence IS NULL OR t.fence IS NULL OR f.fence <= t.fence)
        RETURNING f.id, t.ord
    ),
    freed AS (
        DELETE FROM wfe_locks AS l USING w JOIN t ON t.ord = w.ord
        WHERE l.key = w.id AND l.token = t.fence
        RETURNING l.key
    ),
    {_MERGED_ROWS}
    SELECT w.ord IS NOT NULL, s.revision, s.fence, h.key IS NOT NULL,
           (SELECT pg_notify(t.channel, t.topic) FROM freed WHERE freed.key = t.id)
    FROM t LEFT JOIN w ON w.ord = t.ord LEFT JOIN held h ON h.key = t.id
        LEFT JOIN workflows s ON s.id = t.id
    ORDER BY t.ord"""

#: A whole-instance write: drop the child rows and the pointers past the new count.
REPLACE_POINTERS = """
    WITH gone AS (DELETE FROM pointers WHERE workflow_id = %(id)s AND position >= %(pointer_count)s)
    DELETE FROM pointer_children WHERE workflow_id = %(id)s"""
#: A whole-instance write: every pointer and child row.
INSERT_POINTERS = f"""
    WITH w AS (SELECT %(id)s::text AS id), {_POINTER_ROWS}
    SELECT 1"""

CREATE_WORKFLOW = f"""
    WITH w AS (
        INSERT INTO workflows (id, definition_id, version, create_time, status, reference,
            next_execution, complete_time, revision, pointer_count, document)
        VALUES (%(id)s, %(definition_id)s, %(version)s, %(create_time)s, %(status)s,
            %(reference)s, %(next_execution)s, %(complete_time)s, %(revision)s,
            %(pointer_count)s, %(document)s)
        ON CONFLICT (id) DO NOTHING
        RETURNING id
    ), {_POINTER_ROWS}
    SELECT count(*) FROM w"""

#: A new instance created with its lease (leased writes), as the lock's acquire takes it but
#: only when the id is not stored (a refused create takes no lease), its token stored as the
#: instance's fence. Found: whether it was created, the lease's token and expiry (NULL: the
#: key is held, or the id stored), and whether the id was stored before.
CREATE_LEASED_WORKFLOW = f"""
    WITH taken AS (
        INSERT INTO wfe_locks AS l (key, owner, token, expires_at, holder_host, holder_pid)
        SELECT %(id)s, %(lease_owner)s, nextval('wfe_lock_tokens'::regclass),
            now() + make_interval(secs => %(ttl)s), %(host)s, %(pid)s
        WHERE NOT EXISTS (SELECT FROM workflows WHERE id = %(id)s)
        ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, token = excluded.token,
            expires_at = excluded.expires_at, holder_host = excluded.holder_host,
            holder_pid = excluded.holder_pid
        WHERE l.expires_at <= now()
        RETURNING token, expires_at
    ), w AS (
        INSERT INTO workflows (id, definition_id, version, create_time, status, reference,
            next_execution, complete_time, revision, pointer_count, document, fence)
        SELECT %(id)s, %(definition_id)s, %(version)s, %(create_time)s, %(status)s,
            %(reference)s, %(next_execution)s, %(complete_time)s, %(revision)s,
            %(pointer_count)s, %(document)s, taken.token
        FROM taken
        ON CONFLICT (id) DO NOTHING
        RETURNING id
    ), {_POINTER_ROWS}
    SELECT (SELECT count(*) FROM w), (SELECT token FROM taken), (SELECT expires_at FROM taken),
           EXISTS (SELECT FROM workflows WHERE id = %(id)s)"""
#: Frees the lease a leased create took when the instance was stored meanwhile by another.
DROP_LEASE = "DELETE FROM wfe_locks WHERE key = %(id)s AND token = %(token)s"
#: The creates of many instances as one statement: what ``CREATE_WORKFLOW`` does for each
#: (the ids are distinct), one result row per create, in order.
CREATE_MANY = f"""
    WITH t AS (
        SELECT * FROM unnest(%(ids)s::text[], %(definition_ids)s::text[],
            %(versions)s::integer[], %(create_times)s::timestamptz[], %(statuses)s::text[],
            %(references)s::text[], %(next_executions)s::timestamptz[],
            %(complete_times)s::timestamptz[], %(revisions)s::bigint[],
            %(pointer_counts)s::integer[], %(documents)s::text[])
            WITH ORDINALITY AS t(id, definition_id, version, create_time, status, reference,
                next_execution, complete_time, revision, pointer_count, document, ord)
    ),
    n AS (
        INSERT INTO workflows (id, definition_id, version, create_time, status, reference,
            next_execution, complete_time, revision, pointer_count, document)
        SELECT id, definition_id, version, create_time, status, reference, next_execution,
            complete_time, revision, pointer_count, document
        FROM t ORDER BY ord
        ON CONFLICT (id) DO NOTHING
        RETURNING id
    ),
    w AS (SELECT n.id, t.ord FROM n JOIN t ON t.id = n.id),
    {_MERGED_ROWS}
    SELECT (w.ord IS NOT NULL)::integer FROM t LEFT JOIN w ON w.ord = t.ord ORDER BY t.ord"""

#: The leased creates of many instances as one statement: what ``CREATE_LEASED_WORKFLOW``
#: does for each (the ids are distinct), one result row per create, in order, as that
#: statement's: whether it was created, its lease's token and expiry, whether the id was
#: stored before.
CREATE_LEASED_MANY = f"""
    WITH t AS (
        SELECT * FROM unnest(%(ids)s::text[], %(definition_ids)s::text[],
            %(versions)s::integer[], %(create_times)s::timestamptz[], %(statuses)s::text[],
            %(references)s::text[], %(next_executions)s::timestamptz[],
            %(complete_times)s::timestamptz[], %(revisions)s::bigint[],
            %(pointer_counts)s::integer[], %(documents)s::text[], %(lease_owners)s::text[],
            %(ttls)s::float8[], %(hosts)s::text[], %(pids)s::integer[])
            WITH ORDINALITY AS t(id, definition_id, version, create_time, status, reference,
                next_execution, complete_time, revision, pointer_count, document,
                lease_owner, ttl, host, pid, ord)
    ),
    taken AS (
        INSERT INTO wfe_locks AS l (key, owner, token, expires_at, holder_host, holder_pid)
        SELECT t.id, t.lease_owner, nextval('wfe_lock_tokens'::regclass),
            now() + make_interval(secs => t.ttl), t.host, t.pid
        FROM t WHERE NOT EXISTS (SELECT FROM workflows WHERE id = t.id)
        ORDER BY t.ord
        ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, token = excluded.token,
            expires_at = excluded.expires_at, holder_host = excluded.holder_host,
            holder_pid = excluded.holder_pid
        WHERE l.expires_at <= now()
        RETURNING key, token, expires_at
    ),
    n AS (
        INSERT INTO workflows (id, definition_id, version, create_time, status, reference,
            next_execution, complete_time, revision, pointer_count, document, fence)
        SELECT t.id, t.definition_id, t.version, t.create_time, t.status, t.reference,
            t.next_execution, t.complete_time, t.revision, t.pointer_count, t.document,
            taken.token
        FROM t JOIN taken ON taken.key = t.id ORDER BY t.ord
        ON CONFLICT (id) DO NOTHING
        RETURNING id
    ),
    w AS (SELECT n.id, t.ord FROM n JOIN t ON t.id = n.id),
    {_MERGED_ROWS}
    SELECT (w.ord IS NOT NULL)::integer, k.token, k.expires_at,
           EXISTS (SELECT FROM workflows s WHERE s.id = t.id)
    FROM t LEFT JOIN w ON w.ord = t.ord LEFT JOIN taken k ON k.key = t.id
    ORDER BY t.ord"""

#: Heads and pointers (with their child ids) of the instances ``ids``, in one snapshot:
#: each head, then its pointers in order.
LOAD_WORKFLOWS = """
    SELECT id, NULL::integer, document, NULL::text[] FROM workflows WHERE id = ANY(%(ids)s)
    UNION ALL
    SELECT p.workflow_id, p.position, p.document,
           ARRAY(SELECT c.child_id FROM pointer_children c
                 WHERE c.workflow_id = p.workflow_id AND c.position = p.position
                 ORDER BY c.idx)
    FROM pointers p WHERE p.workflow_id = ANY(%(ids)s)
    ORDER BY 1, 2 NULLS FIRST"""

#: The head (with its revision and pointer count) and the pointers at ``positions`` (with
#: their child ids) of one instance, in one snapshot: a live part (one row with NULLs when
#: none is found, none when the instance is unknown).
LOAD_LIVE = """
    SELECT w.revision, w.pointer_count, w.document, p.position, p.document,
           ARRAY(SELECT c.child_id FROM pointer_children c
                 WHERE c.workflow_id = p.workflow_id AND c.position = p.position
                   AND c.idx >= p.child_start
                 ORDER BY c.idx)
    FROM workflows w
    LEFT JOIN LATERAL (
        SELECT p.*, s.child_start
        FROM unnest(%(positions)s::integer[], %(starts)s::integer[]) AS s(position, child_start)
        JOIN pointers p ON p.workflow_id = w.id AND p.position = s.position
    ) p ON true
    WHERE w.id = %(id)s
    ORDER BY p.position"""

#: A page of pointers with the instance's pointer count (one row with NULLs when the page is
#: empty, none when the instance is unknown).
POINTER_PAGE = """
    SELECT w.pointer_count, p.position, p.document,
           ARRAY(SELECT c.child_id FROM pointer_children c
                 WHERE c.workflow_id = p.workflow_id AND c.position = p.position
                 ORDER BY c.idx)
    FROM workflows w
    LEFT JOIN LATERAL (
        SELECT * FROM pointers p WHERE p.workflow_id = w.id AND p.position >= %(skip)s
        ORDER BY p.position LIMIT %(take)s
    ) p ON true
    WHERE w.id = %(id)s
    ORDER BY p.position"""

DUE_WORKFLOWS = """
    SELECT id FROM workflows
    WHERE status = 'runnable' AND next_execution IS NOT NULL AND next_execution <= %s
    ORDER BY next_execution, seq"""
NEXT_EXECUTION = """
    SELECT min(next_execution) FROM workflows
    WHERE status = 'runnable' AND next_execution IS NOT NULL"""

PURGE = """
    WITH doomed AS (
        DELETE FROM workflows
        WHERE status = ANY(%s::text[]) AND complete_time IS NOT NULL AND complete_time < %s
        RETURNING id
    ),
    p AS (DELETE FROM pointers WHERE workflow_id IN (SELECT id FROM doomed)),
    c AS (DELETE FROM pointer_children WHERE workflow_id IN (SELECT id FROM doomed)),
    s AS (DELETE FROM subscriptions WHERE workflow_id IN (SELECT id FROM doomed)),
    e AS (DELETE FROM errors WHERE workflow_id IN (SELECT id FROM doomed))
    SELECT count(*) FROM doomed"""

INSERT_EVENTS = """
    INSERT INTO events (id, name, key, time, is_processed, document)
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[],
                         %s::boolean[], %s::text[])
    ON CONFLICT (id) DO NOTHING
    RETURNING id"""
GET_EVENT = "SELECT document, is_processed FROM events WHERE id = %s"
DUE_EVENTS = """
    SELECT id FROM events WHERE NOT is_processed AND time <= %s ORDER BY time, seq"""
MATCHING_EVENTS = """
    SELECT id FROM events WHERE name = %s AND key = %s AND time >= %s ORDER BY time, seq"""
SET_PROCESSED = "UPDATE events SET is_processed = %s WHERE id = %s RETURNING id"

INSERT_SUBSCRIPTION = """
    INSERT INTO subscriptions (id, workflow_id, event_name, event_key, subscribe_as_of,
                               create_time, terminated, document)
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[],
                         %s::timestamptz[], %s::boolean[], %s::text[])
    ON CONFLICT (id) DO NOTHING"""
GET_SUBSCRIPTION = "SELECT document, terminated FROM subscriptions WHERE id = %s"
OPEN_SUBSCRIPTIONS = """
    SELECT document, terminated FROM subscriptions
    WHERE event_name = %s AND event_key = %s AND subscribe_as_of <= %s AND NOT terminated
    ORDER BY subscribe_as_of, create_time, seq"""
TERMINATE_SUBSCRIPTION = """
    WITH u AS (UPDATE subscriptions SET terminated = true WHERE id = %(id)s AND NOT terminated)
    SELECT id FROM subscriptions WHERE id = %(id)s"""

# External work. The claim state lives in the document (TEXT): these statements are the only
# ones that read inside it, on the few open subscriptions of one event name.
NAMED_OPEN_SUBSCRIPTIONS = """
    SELECT document, terminated FROM subscriptions
    WHERE event_name = %s AND NOT terminated
    ORDER BY subscribe_as_of, create_time, seq OFFSET %s LIMIT %s"""
# SKIP LOCKED: concurrent claimers pass over each other's row; a row claimed and committed
# meanwhile is checked again against the condition (READ COMMITTED), so none is taken twice.
# A row already holding this token comes first: a retry after a commit whose reply was lost
# gets the same subscription back instead of claiming a second one.
CLAIMABLE_SUBSCRIPTION = """
    SELECT id, document, terminated FROM subscriptions
    WHERE event_name = %(name)s AND NOT terminated AND subscribe_as_of <= %(as_of)s
      AND ((document::jsonb ->> 'external_token') IS NULL
           OR (document::jsonb ->> 'external_token') = %(token)s
           OR (document::jsonb ->> 'external_token_expiry')::timestamptz <= %(as_of)s)
    ORDER BY (document::jsonb ->> 'external_token') IS DISTINCT FROM %(token)s,
             subscribe_as_of, create_time, seq
    LIMIT 1 FOR UPDATE SKIP LOCKED"""
LOCK_SUBSCRIPTION = "SELECT document, terminated FROM subscriptions WHERE id = %s FOR UPDATE"
SET_SUBSCRIPTION_DOCUMENT = "UPDATE subscriptions SET document = %s WHERE id = %s"

WORKFLOW_ERRORS = "SELECT document FROM errors WHERE workflow_id = %s ORDER BY time, seq"


def list_filter(
    status: str | None, definition_id: str | None, reference: str | None
) -> tuple[str, tuple[Any, ...]]:
    """The ``WHERE`` clause (from fixed pieces only) and its parameters of a list."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("status", status),
        ("definition_id", definition_id),
        ("reference", reference),
    ):
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def list_count(where: str) -> str:
    return f"SELECT count(*) FROM workflows{where}"


def list_page(where: str) -> str:
    return f"SELECT id FROM workflows{where} ORDER BY create_time DESC, seq DESC LIMIT %s OFFSET %s"
