"""From the raw log of one patient to the facts a projection folds over.

``facts(events, at=…, known_at=…)``:
1. drops events recorded after ``known_at`` ("what did we know then");
2. applies ``EntryVoided`` / ``EntryCorrected`` that were recorded by then — so an audit
   before a correction still sees the original;
3. keeps what occurred on or before the clinical date ``at``;
4. orders by clinical time (``occurred_at``, then log position).
Pure: no clock, no database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from events.envelope import canonical_json
from events.vocabulary import EntryCorrected, EntryVoided, EventData, data_class_for


class LoggedEvent(Protocol):
    """What facts() needs of a stored event (events.envelope.RecordedEvent has it)."""

    @property
    def position(self) -> int: ...
    @property
    def event_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def occurred_on(self) -> date: ...
    @property
    def recorded_at(self) -> datetime: ...
    @property
    def recorded_by(self) -> str: ...
    @property
    def data(self) -> EventData: ...


@dataclass(frozen=True, slots=True)
class Fact:
    event_id: str
    type: str
    data: Any  # the EventData subclass named by ``type`` (corrected where a correction applies)
    occurred_at: datetime
    on: date  # the local clinical date
    recorded_at: datetime
    recorded_by: str
    position: int
    corrected_by: str | None = None


CORRECTION_TYPES = frozenset({"EntryVoided", "EntryCorrected"})


@dataclass(frozen=True, slots=True)
class Amendments:
    """The voids and corrections known at an instant: target event id -> the id of the
    void; target event id -> (id of the latest correction, its replacement data)."""

    voided_by: dict[str, str]
    corrected: dict[str, tuple[str, dict[str, Any]]]


def amendments(known: Iterable[LoggedEvent]) -> Amendments:
    """What the voids and corrections among ``known`` do (in log order: the latest
    correction of an event wins). ``facts()`` applies it; the audit timeline marks it."""
    voided_by: dict[str, str] = {}
    corrected: dict[str, tuple[str, dict[str, Any]]] = {}
    for e in sorted(known, key=lambda e: e.position):
        if e.type == "EntryVoided":
            assert isinstance(e.data, EntryVoided)
            voided_by[e.data.target_event_id] = e.event_id
        elif e.type == "EntryCorrected":
            assert isinstance(e.data, EntryCorrected)
            corrected[e.data.target_event_id] = (e.event_id, e.data.data)
    return Amendments(voided_by, corrected)


def facts(events: Iterable[LoggedEvent], *, at: date | None = None,
          known_at: datetime | None = None) -> list[Fact]:
    known = [e for e in events if known_at is None or e.recorded_at <= known_at]
    changes = amendments(known)
    voided, corrected = changes.voided_by, changes.corrected
    out: list[Fact] = []
    for e in known:
        if e.type in CORRECTION_TYPES or e.event_id in voided:
            continue
        if at is not None and e.occurred_on > at:
            continue
        data: Any = e.data
        by = None
        if e.event_id in corrected:
            by, replacement = corrected[e.event_id]
            data = data_class_for(e.type).model_validate_json(canonical_json(replacement))
        out.append(Fact(e.event_id, e.type, data, e.occurred_at, e.occurred_on,
                        e.recorded_at, e.recorded_by, e.position, by))
    out.sort(key=lambda f: (f.occurred_at, f.position))
    return out
