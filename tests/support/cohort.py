"""Generated courses as in-memory stored events, for property tests without a database."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

import orjson

from events.envelope import RecordedEvent, canonical_json, dump_data
from events.lines import decode_line
from tracker.importing import when_to_instant
from tracker.protocol import DEFAULT_PROTOCOL
from tracker.synthetic import generate_cohort

RECORDED = datetime(2021, 6, 1, 12, tzinfo=UTC)


@cache
def cohort_lines(patients: int, seed: int, until: date = date(2020, 12, 31)
                 ) -> dict[str, tuple[dict[str, Any], ...]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for line in generate_cohort(patients, seed, until, start_year=2015):
        out.setdefault(line["patient"], []).append(line)
    return {p: tuple(v) for p, v in out.items()}


def stored(line: dict[str, Any], position: int, *, event_id: str | None = None,
           recorded_at: datetime = RECORDED) -> RecordedEvent:
    m = decode_line(orjson.dumps(line))
    occurred_at, occurred_on = when_to_instant(m.occurred_at, DEFAULT_PROTOCOL)
    return RecordedEvent(
        position=position, tx=0, event_id=event_id or str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                                      line["idempotency_key"])),
        stream=m.patient, version=position, type=m.type,
        schema_version=type(m.data).schema_version, occurred_at=occurred_at,
        occurred_on=occurred_on, recorded_at=recorded_at, recorded_by=m.recorded_by or "import",
        idempotency_key=m.idempotency_key, payload=canonical_json(dump_data(m.data)).decode(),
        hash="")


def history(lines: tuple[dict[str, Any], ...]) -> list[RecordedEvent]:
    return [stored(line, i) for i, line in enumerate(lines, start=1)]


def later(moment: datetime, days: int) -> datetime:
    return moment + timedelta(days=days)
