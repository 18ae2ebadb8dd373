"""Search text and filters as an OpenSearch query (internal)."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from wfe_core.spi import DATA_FILTER_PREFIX, check_filters

# Weights of a text match per field, as the memory index ranks them.
_TEXT_FIELDS = ("reference.text^4", "definition_id.text^3", "description^2", "data_text")

#: Best match first, newest first among equals, a number of the id last so the order is total
#: (deep paging with search_after needs one).
SORT_BY_SCORE: list[Any] = [
    {"_score": "desc"},
    {"create_time": "desc"},
    {"tiebreak": "asc"},
]
SORT_BY_TIME: list[Any] = [{"create_time": "desc"}, {"tiebreak": "asc"}]


def _values(wanted: Any) -> list[Any]:
    if isinstance(wanted, Collection) and not isinstance(wanted, str | bytes):
        return list(wanted)
    return [wanted]


def _keyword(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return json.dumps(value)


def _flat(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _date(name: str, value: Any) -> str:
    if not isinstance(value, datetime):
        raise ValueError(f"search filter {name} must be a datetime, got {type(value).__name__}")
    return value.isoformat()


def _clause(key: str, wanted: Any) -> dict[str, Any]:
    if key.startswith(DATA_FILTER_PREFIX):
        return {"terms": {key: [_flat(v) for v in _values(wanted)]}}
    if key == "created_after":
        return {"range": {"create_time": {"gte": _date(key, wanted)}}}
    if key == "created_before":
        return {"range": {"create_time": {"lt": _date(key, wanted)}}}
    if key == "completed_after":
        return {"range": {"complete_time": {"gte": _date(key, wanted)}}}
    if key == "completed_before":
        return {"range": {"complete_time": {"lt": _date(key, wanted)}}}
    if key == "status":
        return {"terms": {"status": [str(v) for v in _values(wanted)]}}
    return {"terms": {key: [_keyword(v) for v in _values(wanted)]}}


def build(text: str | None, filters: Mapping[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """The query of a search and whether it ranks (has text). Raises :class:`ValueError` for
    unknown filter keys or values of the wrong kind."""
    filters = dict(filters or {})
    check_filters(filters)
    clauses = [_clause(key, wanted) for key, wanted in filters.items() if wanted is not None]
    needle = (text or "").strip()
    must: list[dict[str, Any]] = []
    if needle:
        must.append(
            {
                "multi_match": {
                    "query": needle,
                    "fields": list(_TEXT_FIELDS),
                    "type": "most_fields",
                    "operator": "and",
                }
            }
        )
    return {"bool": {"must": must or [{"match_all": {}}], "filter": clauses}}, bool(needle)
