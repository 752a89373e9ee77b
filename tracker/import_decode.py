"""The stateless half of an import line: decoded, validated and made ready to write.

Everything here depends on the line alone (and the centre's time zone): the validated
model, the UTC instant and local date of ``occurred_at``, the canonical JSON of ``data``,
the content hash idempotency compares, a new event id. What depends on the store or on
other lines (enrolment, idempotency, voids and corrections, the stream versions) stays
with the importer. Being pure, this half can run in worker processes
(:mod:`tracker.import_pool`); a :class:`Line` is a plain tuple, cheap to send back."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, tzinfo
from functools import lru_cache
from typing import Any, NamedTuple

from events.envelope import canonical_json, content_hash, dump_data
from events.errors import InvalidEvent, Problem
from events.ids import new_event_id
from events.lines import decode_line
from events.vocabulary import EntryCorrected, EntryVoided

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
