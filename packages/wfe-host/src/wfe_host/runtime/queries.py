"""Finding instances without a search provider: a scan of persistence listings."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from wfe_core.models import WorkflowStatus
from wfe_core.serialization import to_primitive
from wfe_core.spi import DATA_FILTER_PREFIX, check_filters, data_field_matches

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from wfe_core.models import WorkflowInstance
    from wfe_host.runtime.core import HostCore

#: Instances read per listing call while scanning.
BATCH = 500


async def scan(core: HostCore, filters: Mapping[str, Any]) -> AsyncIterator[WorkflowInstance]:
    """Every stored instance matching ``filters`` (the search filter keys), data restored."""
    check_filters(filters)
    status = filters.get("status")
    skip = 0
    while True:
        page = await core.persistence.list_workflows(
            status=None if status is None else WorkflowStatus(status),
            definition_id=filters.get("definition_id"),
            reference=filters.get("reference"),
            skip=skip,
            take=BATCH,
        )
        for instance in page.items:
            if matches_filters(instance, filters):
                yield core.restore(instance)
        skip += BATCH
        if skip >= page.total or not page.items:
            return


def matches_text(instance: WorkflowInstance, text: str | None) -> bool:
    """Whether ``text`` occurs (case-insensitively) in the reference, description,
    definition id or data of ``instance``."""
    if not text:
        return True
    needle = text.lower()
    fields = [instance.reference, instance.description, instance.definition_id]
    fields.append(json.dumps(to_primitive(instance.data), default=str))
    return any(needle in f.lower() for f in fields if f)


def matches_filters(instance: WorkflowInstance, filters: Mapping[str, Any]) -> bool:
    """The filters persistence listings cannot apply: version, time bounds, data fields."""
    version = filters.get("version")
    if version is not None and instance.version != int(version):
        return False
    after = filters.get("created_after")
    if after is not None and instance.create_time < after:
        return False
    before = filters.get("created_before")
    if before is not None and instance.create_time >= before:
        return False
    done = instance.complete_time
    after = filters.get("completed_after")
    if after is not None and (done is None or done < after):
        return False
    before = filters.get("completed_before")
    if before is not None and (done is None or done >= before):
        return False
    data: Any = None
    for key, wanted in filters.items():
        if key.startswith(DATA_FILTER_PREFIX) and wanted is not None:
            if data is None:
                data = to_primitive(instance.data)
            if not data_field_matches(data, key[len(DATA_FILTER_PREFIX) :], wanted):
                return False
    return True
