"""Ids of instances, pointers, events and subscriptions."""

from __future__ import annotations

import uuid

from wfe_core.models import new_id


def test_ids_are_uuid4_hex_and_distinct() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for value in ids[:1000]:
        parsed = uuid.UUID(hex=value)
        assert parsed.hex == value
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
