"""In-memory search index: case-insensitive substring search over workflow instances."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

import attrs
from anyio.lowlevel import checkpoint

from wfe_core.models import Page, WorkflowInstance, WorkflowStatus
from wfe_core.providers import capabilities as cap
from wfe_core.providers._search import SearchIndex
from wfe_core.serialization import from_primitive, to_primitive

__all__ = [
    "DATA_FILTER_PREFIX",
    "FILTER_KEYS",
    "MemorySearch",
    "check_filters",
    "data_field_matches",
]

#: The filter keys :meth:`SearchIndex.search` accepts (besides ``data.<path>`` ones).
FILTER_KEYS = frozenset(
    {
        "status",
        "definition_id",
        "reference",
        "version",
        "created_after",
        "created_before",
        "completed_after",
        "completed_before",
    }
)
#: A filter key ``data.a.b`` matches instances whose data has the value at ``a.b``.
DATA_FILTER_PREFIX = "data."

# How much a text match in each field weighs when ranking ("best match first").
_WEIGHTS = (("reference", 4), ("definition_id", 3), ("description", 2), ("data", 1))


@attrs.define
class _Entry:
    document: str
    status: WorkflowStatus
    definition_id: str
    reference: str | None
    version: int
    revision: int
    create_time: datetime
    complete_time: datetime | None
    data: Any
    #: Lower-cased text of each searchable field.
    fields: dict[str, str]
    seq: int


class MemorySearch(SearchIndex):
    """Workflow instances indexed in this process's memory.

    ``text`` matches, case-insensitively, any substring of the reference, the description, the
    definition id or the JSON of the data. Results rank by which fields matched (reference,
    then definition id, then description, then data), newest ``create_time`` first among
    equals. Filters: ``status``, ``definition_id``, ``reference`` and ``version`` match exactly
    (or any member of a list, tuple or set of values); ``created_after`` keeps instances
    created at or after it, ``created_before`` those created strictly before it, and
    ``completed_after`` / ``completed_before`` the same of ``complete_time`` (unfinished
    instances match neither); ``data.<dotted.path>`` keeps instances whose data holds the value
    there (see :func:`data_field_matches`). An unknown filter key raises :class:`ValueError`.
    Indexing an instance of a lower ``revision`` than its entry's is ignored.
    """

    capabilities = frozenset({cap.SEARCH_BY_DATA})

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._seq = 0

    async def index_workflow(self, instance: WorkflowInstance) -> None:
        """Add or replace the entry of ``instance`` (a snapshot: later changes are not seen)."""
        await checkpoint()
        current = self._entries.get(instance.id)
        if current is not None and current.revision > instance.revision:
            return  # a late, stale update: the newer entry stays
        primitive = to_primitive(instance)
        document = json.dumps(primitive, ensure_ascii=False)
        decoded = from_primitive(json.loads(document), WorkflowInstance)
        self._seq += 1
        self._entries[instance.id] = _Entry(
            document=document,
            status=decoded.status,
            definition_id=decoded.definition_id,
            reference=decoded.reference,
            version=decoded.version,
            revision=decoded.revision,
            create_time=decoded.create_time,
            complete_time=decoded.complete_time,
            data=primitive.get("data"),
            fields={
                "reference": (decoded.reference or "").casefold(),
                "definition_id": decoded.definition_id.casefold(),
                "description": (decoded.description or "").casefold(),
                "data": (
                    ""
                    if primitive.get("data") is None
                    else json.dumps(primitive["data"], ensure_ascii=False).casefold()
                ),
            },
            seq=self._seq,
        )

    async def remove_workflow(self, workflow_id: str) -> None:
        """Drop the entry of ``workflow_id``; a no-op when it is not indexed."""
        await checkpoint()
        self._entries.pop(workflow_id, None)

    async def search(
        self,
        text: str | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        skip: int = 0,
        take: int = 20,
    ) -> Page[WorkflowInstance]:
        """Matching instances, best match first, newest first among equals."""
        await checkpoint()
        filters = dict(filters or {})
        check_filters(filters)
        needle = (text or "").strip().casefold()
        scored: list[tuple[int, _Entry]] = []
        for entry in self._entries.values():
            if not _matches(entry, filters):
                continue
            score = sum(w for name, w in _WEIGHTS if needle in entry.fields[name])
            if needle and not score:
                continue
            scored.append((score, entry))
        scored.sort(key=lambda pair: (pair[0], pair[1].create_time, pair[1].seq), reverse=True)
        skip = max(skip, 0)
        take = max(take, 0)
        items = [
            from_primitive(json.loads(entry.document), WorkflowInstance)
            for _, entry in scored[skip : skip + take]
        ]
        return Page(items=items, total=len(scored), skip=skip, take=take)


def check_filters(filters: Mapping[str, Any]) -> None:
    """Raise :class:`ValueError` naming the filter keys :meth:`SearchIndex.search` does not
    know (or an empty data path)."""
    unknown = [
        key
        for key in filters
        if key not in FILTER_KEYS
        and not (key.startswith(DATA_FILTER_PREFIX) and key[len(DATA_FILTER_PREFIX) :].strip("."))
    ]
    if unknown:
        raise ValueError(
            f"unknown search filters {sorted(unknown)}; use {sorted(FILTER_KEYS)} "
            f"or {DATA_FILTER_PREFIX}<dotted.path>"
        )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def data_field_matches(data: Any, path: str, wanted: Any) -> bool:
    """Whether the (primitive) ``data`` has, at the dotted ``path``, a value equal to ``wanted``
    (or to any member of a list, tuple or set of wanted values), compared as text; a list
    found on the way matches when one of its members does."""
    wanted_texts = (
        {_text(w) for w in wanted}
        if isinstance(wanted, Collection) and not isinstance(wanted, str | bytes)
        else {_text(wanted)}
    )
    found = [data]
    for name in path.split("."):
        step: list[Any] = []
        for value in found:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict) and name in item:
                    step.append(item[name])
        found = step
    leaves = [item for value in found for item in (value if isinstance(value, list) else [value])]
    return any(
        not isinstance(leaf, dict) and leaf is not None and _text(leaf) in wanted_texts
        for leaf in leaves
    )


def _one_of(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, Collection) and not isinstance(wanted, str | bytes):
        return value in wanted
    return bool(value == wanted)


def _matches(entry: _Entry, filters: Mapping[str, Any]) -> bool:
    for key, wanted in filters.items():
        if wanted is None:
            continue
        if key == "created_after":
            if entry.create_time < wanted:
                return False
        elif key == "created_before":
            if entry.create_time >= wanted:
                return False
        elif key == "completed_after":
            if entry.complete_time is None or entry.complete_time < wanted:
                return False
        elif key == "completed_before":
            if entry.complete_time is None or entry.complete_time >= wanted:
                return False
        elif key.startswith(DATA_FILTER_PREFIX):
            if not data_field_matches(entry.data, key[len(DATA_FILTER_PREFIX) :], wanted):
                return False
        elif not _one_of(getattr(entry, key), wanted):
            return False
    return True
