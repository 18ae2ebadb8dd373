"""The instance writes of many workflows merged into one statement (internal; see
:class:`wfe_postgres._batch.Merge`).

A burst of workflows makes, at once, one plain write per running step (the head, the
changed pointer rows, the new child ids) and one create per new workflow; with leased
writes, the create takes the workflow's lease and a pass's last write gives it back. The
group commit sends each kind as one statement over arrays (``_sql.PERSIST_MANY``,
``_sql.PERSIST_RELEASED_MANY``, ``_sql.CREATE_MANY``, ``_sql.CREATE_LEASED_MANY``), with
each write's rows tagged by its place (``ord``); each write's outcome (a stale revision or
fence, a lease no longer current, a key held) is its row's alone. The parameters of each
write are those of its own statement, plus how many pointer and child rows its arrays hold
(``pointer_rows``, ``child_rows``), so the arrays' literals are joined without being parsed.
"""

from __future__ import annotations

from typing import Any

from wfe_postgres import _arrays as arrays
from wfe_postgres import _sql as q

__all__ = ["CREATES", "LEASED_CREATES", "PLAIN_WRITES", "RELEASING_WRITES"]

Rows = list[tuple[Any, ...]]

#: The head's columns: (parameter of one write, array parameter of the merged statement).
_HEAD = (
    ("id", "ids"),
    ("status", "statuses"),
    ("reference", "references"),
    ("next_execution", "next_executions"),
    ("complete_time", "complete_times"),
    ("revision", "revisions"),
    ("pointer_count", "pointer_counts"),
)
_NEW = (
    ("definition_id", "definition_ids"),
    ("version", "versions"),
    ("create_time", "create_times"),
)
#: The revision a write expects and the fence it holds.
_CHECKED = (("expected", "expected"), ("fence", "fences"))
#: The lease a create takes.
_TAKEN = (("lease_owner", "lease_owners"), ("ttl", "ttls"), ("host", "hosts"), ("pid", "pids"))
#: The lease a write gives back (its token is the write's fence), and the notification
#: waking the key's waiters once it is freed.
_GIVEN_BACK = (("lease_owner", "lease_owners"), ("channel", "channels"), ("topic", "topics"))


def _joined(literals: list[str]) -> str:
    """One array literal holding the elements of ``literals``, in order."""
    return "{" + ",".join(literal[1:-1] for literal in literals if literal != arrays.EMPTY) + "}"


def _ords(counts: list[int]) -> str:
    return arrays.integers(n for n, count in enumerate(counts, 1) for _ in range(count))


def _rows_of(writes: list[dict[str, Any]]) -> dict[str, str]:
    """The pointer and child arrays of ``writes`` as one, each row tagged with its write."""
    joined = {
        name: _joined([w[name] for w in writes])
        for name in ("positions", "texts", "child_positions", "child_indices", "child_ids")
    }
    joined["p_ords"] = _ords([w["pointer_rows"] for w in writes])
    joined["c_ords"] = _ords([w["child_rows"] for w in writes])
    return joined


def _columns(writes: list[dict[str, Any]], columns: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return {many: arrays.array([w[one] for w in writes]) for one, many in columns}


class _Writes:
    """A :class:`~wfe_postgres._batch.Merge` of the writes of one statement kind, keyed by
    instance id."""

    def __init__(self, statement: str, columns: tuple[tuple[str, str], ...]) -> None:
        self.statement = statement
        self.columns = columns

    def key(self, params: dict[str, Any]) -> Any:
        return params["id"]

    def merged(self, params: list[dict[str, Any]]) -> tuple[str, dict[str, str]]:
        values = {
            **_columns(params, self.columns),
            "documents": arrays.texts([w["document"] for w in params]),
            **_rows_of(params),
        }
        return self.statement, values

    def split(self, rows: Rows, count: int) -> list[Rows]:
        # One row per write, in their order (the statement's ORDER BY).
        return [[row] for row in rows]


#: Plain writes of running instances (``persist_workflow`` with ``changed_pointers`` and
#: no subscriptions, errors or events).
PLAIN_WRITES = _Writes(q.PERSIST_MANY, (*_HEAD, *_CHECKED))
#: The same with ``release`` (a pass's last write under leased writes).
RELEASING_WRITES = _Writes(q.PERSIST_RELEASED_MANY, (*_HEAD, *_CHECKED, *_GIVEN_BACK))
#: ``create_workflow``.
CREATES = _Writes(q.CREATE_MANY, (*_HEAD, *_NEW))
#: ``create_workflow`` with ``lease``.
LEASED_CREATES = _Writes(q.CREATE_LEASED_MANY, (*_HEAD, *_NEW, *_TAKEN))
