"""The importer's event ids are version-4 UUIDs written exactly as ``str(uuid4())``."""

from __future__ import annotations

import os
import uuid

from tracker.importing import new_event_id


def test_event_ids_are_random_version_4_uuids_in_canonical_text() -> None:
    ids = [new_event_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:500]:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text and len(text) == 36


def test_every_variant_digit_appears_and_ids_differ_across_draws() -> None:
    ids = [new_event_id() for _ in range(3000)]  # more than one bulk draw
    assert len(set(ids)) == len(ids)
    assert {text[19] for text in ids} == set("89ab")
    assert {text[14] for text in ids} == {"4"}


def test_a_forked_child_never_hands_out_its_parents_ids() -> None:
    new_event_id()  # the parent has drawn ids it has not used yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        try:
            os.write(write, new_event_id().encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert len(child) == 36
    assert child != new_event_id()
