"""The stateless half of an import line: decoded, validated and made ready to write.

Everything here depends on the line alone (and the centre's time zone): the validated
model, the UTC instant and local date of ``occurred_at``, the canonical JSON of ``data``,
the content hash idempotency compares, a new event id. What depends on the store or on
other lines (enrolment, idempotency, voids and corrections, the stream versions) stays
with the importer. Being pure, this half can run in worker processes
(:mod:`tracker.import_pool`); a :class:`Line` is a plain tuple, cheap to send back."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, time, tzinfo
from functools import lru_cache
from typing import Any, NamedTuple

from events.envelope import canonical_json, content_hash, dump_data
from events.errors import InvalidEvent, Problem
from events.lines import decode_line
from events.vocabulary import EntryCorrected, EntryVoided

#: random bytes are drawn for this many event ids at a time (one system call, not one each)
_IDS_PER_DRAW = 1024
#: the variant nibble of an RFC 4122 UUID (binary 10xx) from a random hex digit
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}
_random_hex: list[str] = []  # 32 hex digits an id, drawn but not used yet


def _forget_drawn() -> None:
    _random_hex.clear()


# a forked child (a worker process) must never hand out the ids its parent drew
os.register_at_fork(after_in_child=_forget_drawn)


def new_event_id() -> str:
    """A random (version 4) UUID as text, as ``str(uuid.uuid4())`` writes it, without
    building a ``UUID`` object per event (an import makes one per line). The random bits
    come from ``os.urandom`` like ``uuid4``'s, drawn for :data:`_IDS_PER_DRAW` ids at once."""
    try:
        h = _random_hex.pop()  # atomic: threads never share an id, nor see a half list
    except IndexError:
        drawn = os.urandom(16 * _IDS_PER_DRAW).hex()
        h = drawn[:32]
        _random_hex.extend(drawn[i:i + 32] for i in range(32, len(drawn), 32))
    # the version nibble is 4, the variant's two high bits 10: what uuid4 sets
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


#: the types whose target event the import checks (one union object, made once)
TARGETED = EntryVoided | EntryCorrected


class Line(NamedTuple):
    """One decoded line, ready for the importer's stateful checks and the writer."""

    number: int
    type: str
    patient: str
    idempotency_key: str | None
    recorded_by: str | None
    #: ``occurred_at`` as the line wrote it (a refusal quotes it; text after a pipe)
    written_at: date | datetime | str
    occurred_at: datetime  # UTC
    occurred_on: date  # local clinical date
    data_json: bytes
    content_hash: str
    schema_version: int
    event_id: str
    #: the data of a void or a correction (their checks read it); None otherwise
    target: EntryVoided | EntryCorrected | None


#: a decoded batch: each line a :class:`Line`, or the problems that refused it
Decoded = list[Line | tuple[Problem, ...]]


@lru_cache(maxsize=65536)
def _local_midnight(day: date, zone: tzinfo) -> datetime:
    """The UTC instant of a local date's midnight (cached: clinical dates repeat)."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def instant(value: date | datetime, zone: tzinfo) -> tuple[datetime, date]:
    """(UTC instant, local clinical date) of an ``occurred_at``. A bare date is the local
    midnight of that date in the centre's time zone."""
    if isinstance(value, datetime):
        return value.astimezone(UTC), value.astimezone(zone).date()
    return _local_midnight(value, zone), value


def prepare(m: Any, number: int, zone: tzinfo) -> Line:
    """The :class:`Line` of a validated line model ``m`` (from :func:`decode_line`)."""
    occurred_at, occurred_on = instant(m.occurred_at, zone)
    data = m.data
    data_json = canonical_json(dump_data(data))
    return Line(number, m.type, m.patient, m.idempotency_key, m.recorded_by, m.occurred_at,
                occurred_at, occurred_on, data_json,
                content_hash(m.type, m.patient, occurred_at, data_json),
                type(data).schema_version, new_event_id(),
                data if isinstance(data, TARGETED) else None)


@lru_cache(maxsize=65536)
def _day(text: str) -> date:
    return date.fromisoformat(text)


@lru_cache(maxsize=65536)
def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def pack(decoded: Decoded) -> list[tuple[Any, ...]]:
    """``decoded`` as plain tuples of text and numbers, for a pipe: pickling dates, times
    and named tuples costs five times as much (a void's or correction's data, rare, is
    pickled as it is)."""
    return [(*x[:5], str(x.written_at), x.occurred_at.isoformat(), x.occurred_on.isoformat(),
             *x[8:]) if isinstance(x, Line) else x for x in decoded]


def unpack(packed: list[tuple[Any, ...]]) -> Decoded:
    """What :func:`pack` packed (``written_at`` comes back as its text: only a refusal
    quotes it)."""
    make = Line._make
    # a packed line starts with its number; a refusal is a tuple of Problems
    return [make((*x[:6], _moment(x[6]), _day(x[7]), *x[8:])) if x and type(x[0]) is int
            else x for x in packed]


def decode_batch(batch: list[tuple[int, bytes | str]], zone: tzinfo) -> Decoded:
    """Each numbered raw line of ``batch`` decoded and prepared, in order."""
    out: Decoded = []
    for number, raw in batch:
        try:
            m = decode_line(raw, number)
        except InvalidEvent as exc:
            out.append(tuple(exc.problems))
            continue
        out.append(prepare(m, number, zone))
    return out
