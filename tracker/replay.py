"""The worklist of a past date or an earlier instant, by replaying every patient.

The read model holds each patient evaluated *today* from the whole record, so it can only
answer today's list. For any other date D, or any instant K, each patient is folded again
at D as known at K (``tracker.status.evaluate``, the very function behind ``status --at D
--known-at K``) and the worklist is built from those due items: the list is then exactly
the union of the per-patient statuses. With many patients on PostgreSQL the folding runs in
worker processes, one chunk of patients at a time."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import repeat
from multiprocessing import get_context
from typing import Any

from events.store import EventStore, is_patient_stream
from tracker.due import DueItem, is_current
from tracker.protocol import Protocol
from tracker.status import evaluate

#: fewer patients are folded in-process: starting worker processes costs about a second
PARALLEL_MIN = 400
CHUNK = 250


@dataclass(frozen=True)
class Question:
    """What a replayed worklist answers: the list of ``at`` as known at ``known_at``."""

    at: date
    known_at: datetime | None
    soon_days: int
    lookback_days: int

    def wants(self, item: DueItem) -> bool:
        """Whether the worklist can show this item (the same cut as ``due_before``)."""
        return (item.fires_on <= self.at + timedelta(days=self.soon_days)
                and is_current(item.kind, item.fires_on, self.at, self.lookback_days))


def row(item: DueItem) -> dict[str, Any]:
    """A due item as the worklist reads it (the columns of the read model's due_items)."""
    return {"key": item.key, "grp": item.group, "patient": item.patient, "kind": item.kind,
            "severity": item.severity, "fires_on": item.fires_on,
            "item_due_on": item.item_due_on, "item": item.item}


def replay_streams(store: EventStore, protocol: Protocol, question: Question,
                   streams: Iterable[str]) -> list[dict[str, Any]]:
    """Fold these patients at the question's date and instant; their wanted due items."""
    out: list[dict[str, Any]] = []
    for patient, events in store.read_streams(s for s in streams if is_patient_stream(s)).items():
        if not events:
            continue
        ev = evaluate(patient, events, at=question.at, known_at=question.known_at,
                      protocol=protocol)
        out.extend(row(i) for i in ev.due if question.wants(i))
    return out


@dataclass
class Replay:
    rows: list[dict[str, Any]]
    patients: int
    processes: int


def replay(store: EventStore, protocol: Protocol, question: Question, *,
           workers: int = 1) -> Replay:
    """Every patient's due items at ``question.at`` as known at ``question.known_at``."""
    streams = store.patient_streams()
    chunks = [streams[i:i + CHUNK] for i in range(0, len(streams), CHUNK)]
    if workers <= 1 or len(streams) < PARALLEL_MIN or not store.recorder.concurrent_writers:
        rows = [r for chunk in chunks for r in replay_streams(store, protocol, question, chunk)]
        return Replay(rows, len(streams), 1)
    url = store.engine.url.render_as_string(hide_password=False)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        parts = pool.map(_replay_chunk, repeat(url), repeat(protocol.model_dump_json()),
                         repeat(question), chunks)
        rows = [r for part in parts for r in part]
    return Replay(rows, len(streams), workers)


_PROCESS: dict[str, tuple[EventStore, Protocol]] = {}


def _replay_chunk(url: str, protocol_json: str, question: Question,
                  streams: Sequence[str]) -> list[dict[str, Any]]:
    """One chunk in a worker process (one engine per process, database and protocol)."""
    key = url + protocol_json
    if key not in _PROCESS:
        from events.store.engine import make_engine

        _PROCESS[key] = (EventStore(make_engine(url)), Protocol.model_validate_json(protocol_json))
    store, protocol = _PROCESS[key]
    return replay_streams(store, protocol, question, streams)

