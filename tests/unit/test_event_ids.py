"""The importer's event ids are version-4 UUIDs written exactly as ``str(uuid4())``."""

from __future__ import annotations

import uuid

from tracker.importing import new_event_id


def test_event_ids_are_random_version_4_uuids_in_canonical_text() -> None:
    ids = [new_event_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:500]:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text and len(text) == 36
