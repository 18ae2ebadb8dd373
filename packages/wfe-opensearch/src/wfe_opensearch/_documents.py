"""The index's mapping and the document of a workflow instance (internal)."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from wfe_core.serialization import to_primitive

if TYPE_CHECKING:
    from datetime import datetime

    from wfe_core.models import WorkflowInstance

#: Bumped on every mapping change: a new version is a new index (a reindex), behind the alias.
MAPPING_VERSION = 1

# ignore_above: a longer value stays in the document but is not a term (Lucene refuses a
# document with a term over 32 KB); exact filters do not match it.
_KEYWORD = {"type": "keyword", "ignore_above": 1024}
_DATE = {"type": "date"}
# Definition and reference are matched exactly (filters) and as words (text).
_KEYWORD_AND_TEXT = {**_KEYWORD, "fields": {"text": {"type": "text"}}}

#: Strict: a field the provider does not know is refused, never added by a write. The data is
#: one ``flat_object`` (every dotted path searchable, no field per path: arbitrary user data
#: cannot explode or break the mapping), plus its words as text for full-text search.
MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "_meta": {"wfe_mapping_version": MAPPING_VERSION},
    "properties": {
        "id": _KEYWORD,
        "definition_id": _KEYWORD_AND_TEXT,
        "version": {"type": "integer"},
        "status": _KEYWORD,
        "reference": _KEYWORD_AND_TEXT,
        "description": {
            "type": "text",
            "fields": {"raw": {"type": "keyword", "ignore_above": 1024}},
        },
        "create_time": _DATE,
        "complete_time": _DATE,
        "next_execution": _DATE,
        "parent_workflow_id": _KEYWORD,
        "revision": {"type": "long"},
        # A number derived from the id that makes the sort order total: a keyword id as the
        # last sort key costs 5-10x more per search at 100,000 documents.
        "tiebreak": {"type": "long"},
        "step_names": _KEYWORD,
        "step_statuses": _KEYWORD,
        "data": {"type": "flat_object"},
        "data_text": {"type": "text"},
        # The instance as stored, returned as is; not parsed, so any data fits.
        "instance": {"type": "object", "enabled": False},
    },
}


def index_body(shards: int, replicas: int, alias: str) -> dict[str, Any]:
    """The body creating one version of the index, with the alias pointing at it."""
    return {
        "settings": {"index": {"number_of_shards": shards, "number_of_replicas": replicas}},
        "mappings": MAPPING,
        "aliases": {alias: {}},
    }


def tiebreak(workflow_id: str) -> int:
    """A non-negative 63-bit number of ``workflow_id`` (distinct ids collide with odds of
    about one in 2**63 per pair, and then only tie among equal creation times)."""
    digest = hashlib.blake2b(workflow_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest) >> 1


def _date(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _words(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _words(item, out)
    elif isinstance(value, list):
        for item in value:
            _words(item, out)
    elif value is not None:
        out.append(value if isinstance(value, str) else json.dumps(value))


def _flat_data(data: Any) -> dict[str, Any] | None:
    """The data as a ``flat_object`` value: an object of strings (``null`` leaves dropped)."""
    if data is None:
        return None
    if not isinstance(data, dict):
        # A flat_object must be an object: a scalar or list is kept under one key.
        data = {"value": data}
    flat: dict[str, Any] = _scalars(data)
    return flat


#: Longest key and leaf value (characters) kept in the ``flat_object``: each leaf is one
#: keyword term, with its path, and Lucene refuses a whole document for a term over 32 KB.
#: Longer ones are left out there (no data filter matches them; text search still does).
MAX_FLAT_KEY = 256
MAX_FLAT_VALUE = 2_048


def _scalars(value: Any) -> Any:
    if isinstance(value, dict):
        kept = {
            key: _scalars(item)
            for key, item in value.items()
            if item is not None and len(key) <= MAX_FLAT_KEY
        }
        return {key: item for key, item in kept.items() if item is not _DROPPED}
    if isinstance(value, list):
        items = (_scalars(item) for item in value if item is not None)
        return [item for item in items if item is not _DROPPED]
    # flat_object indexes every leaf as a keyword: numbers and booleans by their JSON text.
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= MAX_FLAT_VALUE else _DROPPED


_DROPPED = object()


def document(instance: WorkflowInstance) -> dict[str, Any]:
    """The document indexed for ``instance``."""
    primitive = to_primitive(instance)
    data = primitive.get("data")
    words: list[str] = []
    _words(data, words)
    return {
        "id": instance.id,
        "definition_id": instance.definition_id,
        "version": instance.version,
        "status": str(instance.status),
        "reference": instance.reference,
        "description": instance.description,
        "create_time": _date(instance.create_time),
        "complete_time": _date(instance.complete_time),
        "next_execution": _date(instance.next_execution),
        "parent_workflow_id": instance.parent_workflow_id,
        "revision": instance.revision,
        "tiebreak": tiebreak(instance.id),
        "step_names": sorted({p.step_name for p in instance.pointers if p.step_name}),
        "step_statuses": sorted({str(p.status) for p in instance.pointers}),
        "data": _flat_data(data),
        "data_text": " ".join(words) or None,
        "instance": primitive,
    }
