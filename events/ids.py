"""New event ids: time-ordered (version 7) UUIDs as text, as ``str(UUID)`` writes them.

Every event id goes into the unique index on ``events.event_id``. A random (version 4) id
lands on a random leaf of that b-tree, so once the index outgrows the database's buffer
cache nearly every insert touches a page no recent insert touched: on PostgreSQL the first
change to a page after a checkpoint writes the whole 8 KiB page to the WAL, and a long
import spent more and more of its time there (``docs/store-performance.md``, "At scale:
6 million events on PostgreSQL"). A version 7 id (RFC 9562) starts with the Unix time in
milliseconds, so new ids sort after older ones and the index grows at its right edge like
the position's.

The time prefix only orders index pages. Nothing reads it back: an event's clinical time
is ``occurred_at`` and its recording time ``recorded_at``. It is taken from the system
clock, not the injected one, because a frozen or replayed clock must not make ids of one
millisecond collide more often: 74 random bits an id keep them unique either way."""

from __future__ import annotations

import os
import time

#: random bytes are drawn for this many ids at a time (one system call, not one each)
IDS_PER_DRAW = 1024
#: the variant nibble of an RFC 9562 UUID (binary 10xx) from a random hex digit
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}
_random_hex: list[str] = []  # 32 random hex digits an id, drawn but not used yet


def _forget_drawn() -> None:
    _random_hex.clear()


# a forked child (an import worker) must never hand out the random bits its parent drew
os.register_at_fork(after_in_child=_forget_drawn)


def _random_digits() -> str:
    try:
        return _random_hex.pop()  # atomic: threads never share bits, nor see a half list
    except IndexError:
        drawn = os.urandom(16 * IDS_PER_DRAW).hex()
        _random_hex.extend(drawn[i:i + 32] for i in range(32, len(drawn), 32))
        return drawn[:32]


def event_id_at(ms: int) -> str:
    """A new version 7 UUID as text for the Unix millisecond ``ms``: those 48 bits, the
    version nibble 7, 74 random bits from ``os.urandom`` (drawn :data:`IDS_PER_DRAW` ids at
    a time) and the RFC variant. Ids of later milliseconds sort after earlier ones, as text
    too. ``ms`` outside 48 bits (before 1970, or after the year 10889) is refused."""
    if not 0 <= ms < 1 << 48:
        raise ValueError(f"{ms} is not a Unix millisecond a version 7 UUID can hold")
    t = f"{ms:012x}"
    h = _random_digits()
    return f"{t[:8]}-{t[8:]}-7{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def new_event_id() -> str:
    """A new version 7 UUID as text for the present millisecond (:func:`event_id_at`)."""
    return event_id_at(time.time_ns() // 1_000_000)
