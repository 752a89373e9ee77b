"""Event ids are version 7 UUIDs (RFC 9562) in canonical text, ordered by the millisecond
they were made in, random below it, and never handed out twice across a fork."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime

import pytest

from events import ids
from events.ids import IDS_PER_DRAW, event_id_at, new_event_id
from tracker.importing import new_event_id as importers_new_event_id
from tracker.timeline import short_id

#: 2026-12-03 12:00:00.123 UTC as Unix milliseconds
MS = 1_796_299_200_123


def test_ids_are_version_7_uuids_in_canonical_text() -> None:
    ids = [new_event_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:500]:
        parsed = uuid.UUID(text)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text and len(text) == 36


def test_the_first_48_bits_are_the_unix_millisecond() -> None:
    assert datetime(2026, 12, 3, 12, 0, 0, 123000, tzinfo=UTC).timestamp() * 1000 == MS
    text = event_id_at(MS)
    assert uuid.UUID(text).int >> 80 == MS
    assert text.startswith("01a23bc6-967b-7")


def test_new_ids_carry_the_present_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    ms = uuid.UUID(new_event_id()).int >> 80
    after = time.time_ns() // 1_000_000
    assert before <= ms <= after


def test_an_id_of_the_next_millisecond_sorts_after_as_text_and_as_uuid() -> None:
    earlier = [event_id_at(MS - 1) for _ in range(50)]
    on = [event_id_at(MS) for _ in range(50)]
    later = [event_id_at(MS + 1) for _ in range(50)]
    assert max(earlier) < min(on) and max(on) < min(later)
    assert max(uuid.UUID(t) for t in on) < min(uuid.UUID(t) for t in later)


def test_ids_of_one_millisecond_still_differ() -> None:
    ids = [event_id_at(MS) for _ in range(3 * IDS_PER_DRAW)]  # more than one bulk draw
    assert len(set(ids)) == len(ids)
    assert {t[19] for t in ids} == set("89ab")  # every variant digit: the bits are random
    assert {t[14] for t in ids} == {"7"}


def test_a_millisecond_outside_48_bits_is_refused() -> None:
    assert event_id_at(0).startswith("00000000-0000-7")
    assert event_id_at((1 << 48) - 1).startswith("ffffffff-ffff-7")
    for ms in (-1, 1 << 48):
        with pytest.raises(ValueError, match="Unix millisecond"):
            event_id_at(ms)


def test_ids_of_one_millisecond_have_different_short_forms() -> None:
    a, b = event_id_at(MS), event_id_at(MS)
    assert a[:8] == b[:8]  # the millisecond: a whole import shares it
    assert short_id(a) != short_id(b) and short_id(a) == "…" + a[-12:]


def test_the_importer_uses_the_same_ids() -> None:
    assert importers_new_event_id is new_event_id


def test_a_forked_child_never_hands_out_its_parents_random_bits() -> None:
    ids._random_hex.clear()
    event_id_at(MS)  # the parent has drawn bits it has not used yet
    assert ids._random_hex  # (so a child without the fork hook would reuse them)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id of the same millisecond, to the parent
        try:
            os.write(write, event_id_at(MS).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert len(child) == 36
    assert child != event_id_at(MS)
