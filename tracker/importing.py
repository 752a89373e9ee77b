"""``cno-tracker import``: all-or-nothing, every problem with line, field and reason.

Rules (interchange.md): a patient is enrolled (earlier in the file or already stored)
before other events name it; events in the future beyond the clock-skew allowance are
refused; an idempotency key seen again with the same content is skipped and counted as a
duplicate, with different content it is an error; voids and corrections name an existing
event of the same patient. Nothing is written unless every line is valid."""

from __future__ import annotations

import gc
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import ValidationError

from events.envelope import NewEvent, canonical_json, content_hash, dump_data
from events.errors import InvalidEvent, Problem
from events.lines import decode_line, problems_from
from events.store import EventStore
from events.vocabulary import EntryCorrected, EntryVoided, data_class_for
from tracker.clock import Clock
from tracker.errors import ImportRefused
from tracker.protocol import Protocol

#: a bulk import this large refreshes the planner's statistics afterwards (PostgreSQL)
ANALYZE_AFTER = 10_000


@dataclass
class ImportReport:
    lines: int = 0
    written: int = 0
    duplicates: int = 0
    patients: set[str] = field(default_factory=set)
    dry_run: bool = False
    event_ids: list[str] = field(default_factory=list)

    def summary(self) -> str:
        verb = "would write" if self.dry_run else "wrote"
        return (f"{self.lines} line(s) read: {verb} {self.written} event(s) for "
                f"{len(self.patients)} patient(s), skipped {self.duplicates} duplicate(s)")


@dataclass
class _Pending:
    line: int
    patient: str
    event: NewEvent
    key_hash: str


def when_to_instant(value: date | datetime, protocol: Protocol) -> tuple[datetime, date]:
    """(UTC instant, local clinical date) of an ``occurred_at``. A bare date is the local
    midnight of that date in the centre's time zone."""
    zone = protocol.zone
    if isinstance(value, datetime):
        return value.astimezone(UTC), value.astimezone(zone).date()
    return datetime.combine(value, time(0), tzinfo=zone).astimezone(UTC), value


def import_lines(lines: Iterable[bytes | str], store: EventStore, *, clock: Clock,
                 protocol: Protocol, default_by: str = "import", dry_run: bool = False,
                 on_line: Callable[[int], None] | None = None) -> ImportReport:
    """Validate every line, then write them all in one transaction (or nothing)."""
    # An import holds every decoded line until it writes (all or nothing). Full garbage
    # collections would walk those tens of thousands of objects again and again; they
    # hold no cycles worth collecting meanwhile, so collection waits until the end.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _import(lines, store, clock=clock, protocol=protocol, default_by=default_by,
                       dry_run=dry_run, on_line=on_line)
    finally:
        if gc_was_enabled:
            gc.enable()


def _import(lines: Iterable[bytes | str], store: EventStore, *, clock: Clock,
            protocol: Protocol, default_by: str, dry_run: bool,
            on_line: Callable[[int], None] | None) -> ImportReport:
    now = clock.now()
    horizon = now + timedelta(minutes=protocol.clock_skew_minutes)
    today_local = horizon.astimezone(protocol.zone).date()
    report = ImportReport(dry_run=dry_run)
    problems: list[Problem] = []
    decoded: list[tuple[int, Any]] = []

    for number, raw in enumerate(lines, start=1):
        if on_line is not None:
            on_line(number)
        report.lines = number
        if not raw.strip():
            continue
        try:
            decoded.append((number, decode_line(raw, number)))
        except InvalidEvent as exc:
            problems.extend(exc.problems)

    patients = {m.patient for _, m in decoded}
    stored_versions = store.stream_versions(patients)
    keys = [m.idempotency_key for _, m in decoded if m.idempotency_key]
    stored_keys = store.find_idempotency_keys(keys) if keys else {}
    targets = store.get_events(
        m.data.target_event_id for _, m in decoded
        if isinstance(m.data, EntryVoided | EntryCorrected))

    enrolled = {p for p, v in stored_versions.items() if v > 0}
    seen_keys: dict[str, str] = {}
    voided_now: set[str] = set()
    pending: list[_Pending] = []

    for number, m in decoded:
        occurred_at, occurred_on = when_to_instant(m.occurred_at, protocol)
        line_problems: list[Problem] = []
        if occurred_at > horizon or occurred_on > today_local:
            line_problems.append(Problem(number, "occurred_at",
                                         f"{m.occurred_at} is in the future"))
        data = m.data
        if m.type == "PatientEnrolled":
            if m.patient in enrolled and not m.idempotency_key:
                line_problems.append(Problem(number, "patient",
                                             f"{m.patient} is already enrolled"))
        elif m.patient not in enrolled:
            line_problems.append(Problem(
                number, "patient",
                f"{m.patient} is not enrolled: a PatientEnrolled line must come first"))
        if isinstance(data, EntryVoided | EntryCorrected):
            line_problems.extend(_check_target(number, m.patient, data, targets, voided_now))
            if isinstance(data, EntryVoided) and not line_problems:
                voided_now.add(data.target_event_id)
        data_json = canonical_json(dump_data(data))
        key_hash = content_hash(m.type, m.patient, occurred_at, data_json)
        if m.idempotency_key:
            earlier = stored_keys.get(m.idempotency_key)
            earlier_hash = earlier[0] if earlier else seen_keys.get(m.idempotency_key)
            if earlier_hash is not None:
                if earlier_hash == key_hash:
                    report.duplicates += 1
                    if m.type == "PatientEnrolled":
                        enrolled.add(m.patient)
                    continue
                line_problems.append(Problem(
                    number, "idempotency_key",
                    f"{m.idempotency_key!r} was already used for different content"))
            elif m.type == "PatientEnrolled" and m.patient in enrolled:
                line_problems.append(Problem(number, "patient",
                                             f"{m.patient} is already enrolled"))
            seen_keys[m.idempotency_key] = key_hash
        if line_problems:
            problems.extend(line_problems)
            continue
        if m.type == "PatientEnrolled":
            enrolled.add(m.patient)
        pending.append(_Pending(number, m.patient, NewEvent(
            event_id=str(uuid.uuid4()), type=m.type, data=data, occurred_at=occurred_at,
            occurred_on=occurred_on, recorded_at=now, recorded_by=m.recorded_by or default_by,
            idempotency_key=m.idempotency_key, data_json=data_json, content_hash=key_hash),
            key_hash))

    if problems:
        problems.sort(key=lambda p: (p.line or 0))
        raise ImportRefused(problems)
    by_stream: dict[str, list[NewEvent]] = defaultdict(list)
    for p in pending:
        by_stream[p.patient].append(p.event)
        report.patients.add(p.patient)
    report.written = len(pending)
    report.event_ids = [p.event.event_id for p in pending]
    if dry_run or not pending:
        return report
    with store.transaction() as writer:
        writer.prefetch_heads(by_stream)
        for stream, new in by_stream.items():
            writer.append(stream, stored_versions.get(stream, 0), new, returning=False)
    if len(pending) >= ANALYZE_AFTER:
        store.analyze()  # the next import's look-ups plan against the new size
    return report


def _check_target(number: int, patient: str, data: EntryVoided | EntryCorrected,
                  targets: dict[str, Any], voided_now: set[str]) -> list[Problem]:
    target = targets.get(data.target_event_id)
    if target is None:
        return [Problem(number, "data.target_event_id",
                        f"no stored event {data.target_event_id}")]
    if target.stream != patient:
        return [Problem(number, "data.target_event_id",
                        f"event {data.target_event_id} belongs to another patient")]
    if target.type in ("EntryVoided", "EntryCorrected"):
        return [Problem(number, "data.target_event_id",
                        f"a {target.type} cannot itself be voided or corrected")]
    if target.type == "PatientEnrolled" and isinstance(data, EntryVoided):
        return [Problem(number, "data.target_event_id",
                        "an enrolment cannot be voided; correct it with EntryCorrected")]
    if not target.data.importable:
        return [Problem(number, "data.target_event_id",
                        f"{target.type} events are written by the system and cannot be changed")]
    if data.target_event_id in voided_now:
        return [Problem(number, "data.target_event_id", "that event is voided in this file")]
    if isinstance(data, EntryCorrected):
        try:
            data_class_for(target.type).model_validate_json(canonical_json(data.data))
        except ValidationError as exc:
            return problems_from(exc, number, prefix="data.data.")
    return []
