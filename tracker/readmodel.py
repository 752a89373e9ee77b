"""The status read model: one row per patient with its current status JSON and the next
date it may change by itself, plus the schedule of due items, kept by a projector that
follows the global log and commits each batch together with its checkpoint.

The alert worker asks "what fires on or before T?" with an indexed query on
``due_items.fires_on`` instead of replaying everything."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from itertools import repeat
from multiprocessing import get_context
from typing import Any, TypeVar

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Date,
    Index,
    String,
    Table,
    Text,
    delete,
    insert,
    or_,
    select,
    text,
)

from events.envelope import RecordedEvent
from events.store import START, Checkpoint, EventStore, is_patient_stream, metadata
from events.store.types import UTCDateTime
from tracker.clock import Clock
from tracker.due import STANDING_KINDS, DueItem
from tracker.protocol import Protocol
from tracker.status import Evaluation, evaluate

patient_status = Table(
    "patient_status", metadata,
    Column("patient", String(64), primary_key=True),
    Column("evaluated_on", Date, nullable=False),
    Column("next_check_on", Date, nullable=True, index=True),
    Column("protocol_fingerprint", String(16), nullable=False),
    Column("status", Text, nullable=False),
)
due_items = Table(
    "due_items", metadata,
    Column("key", String(300), primary_key=True),
    Column("grp", String(300), nullable=False),
    Column("patient", String(64), nullable=False, index=True),
    Column("kind", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("fires_on", Date, nullable=False),
    Column("item_due_on", Date, nullable=False),
    Column("item", String(64), nullable=False),
    Column("cause_event_ids", Text, nullable=False),
)
Index("ix_due_items_fires_on", due_items.c.fires_on)
projector_checkpoints = Table(
    "projector_checkpoints", metadata,
    Column("name", String(64), primary_key=True),
    Column("tx", BigInteger, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

PROJECTOR_LOCK_KEY = 0x434E4F5052  # "CNOPR": one projector at a time on PostgreSQL
_CHUNK = 400


T = TypeVar("T")
PARALLEL_MIN = 200  # fewer touched patients are folded in-process (a pool costs ~1 s)


@dataclass
class Rows:
    """Read-model rows of some patients, ready to write (picklable across processes)."""

    patients: list[str]
    statuses: list[dict[str, Any]]
    items: list[dict[str, Any]]
    events: int = 0

    @classmethod
    def merge(cls, parts: Iterable[Rows]) -> Rows:
        out = cls([], [], [])
        for part in parts:
            out.patients += part.patients
            out.statuses += part.statuses
            out.items += part.items
            out.events += part.events
        return out


def rows_of(evals: list[Evaluation], *, events: int) -> Rows:
    return Rows(
        patients=[e.patient for e in evals],
        statuses=[{"patient": e.patient, "evaluated_on": e.at, "next_check_on": e.next_check_on,
                   "protocol_fingerprint": e.protocol.fingerprint,
                   "status": orjson.dumps(e.as_json(), option=orjson.OPT_SORT_KEYS).decode()}
                  for e in evals],
        items=[{"key": i.key, "grp": i.group, "patient": i.patient, "kind": i.kind,
                "severity": i.severity, "fires_on": i.fires_on, "item_due_on": i.item_due_on,
                "item": i.item, "cause_event_ids": orjson.dumps(list(i.cause_event_ids)).decode()}
               for e in evals for i in e.due],
        events=events)


@dataclass
class CatchUpReport:
    events: int = 0
    patients: int = 0
    rechecked: int = 0
    skipped_locked: bool = False


class StatusProjector:
    def __init__(self, store: EventStore, protocol: Protocol, clock: Clock,
                 name: str = "status", *, workers: int = 1) -> None:
        self.store = store
        self.engine = store.engine
        self.protocol = protocol
        self.clock = clock
        self.name = name
        #: processes that evaluate in parallel when a catch-up touches many patients
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._pool_size = 0

    def today(self) -> date:
        return self.clock.now().astimezone(self.protocol.zone).date()

    # ----------------------------------------------------------------- checkpoint
    def checkpoint(self, conn: Connection | None = None) -> Checkpoint:
        q = select(projector_checkpoints.c.tx, projector_checkpoints.c.position).where(
            projector_checkpoints.c.name == self.name)
        if conn is None:
            with self.engine.connect() as c:
                row = c.execute(q).first()
        else:
            row = conn.execute(q).first()
        return Checkpoint(int(row[0]), int(row[1])) if row else START

    def _save_checkpoint(self, conn: Connection, cp: Checkpoint) -> None:
        conn.execute(delete(projector_checkpoints).where(
            projector_checkpoints.c.name == self.name))
        conn.execute(insert(projector_checkpoints).values(
            name=self.name, tx=cp.tx, position=cp.position, updated_at=self.clock.now()))

    @contextmanager
    def _exclusive(self) -> Iterator[bool]:
        """Only one projector runs at a time; the others skip the cycle."""
        with self.store.recorder.exclusive(PROJECTOR_LOCK_KEY) as got:
            yield got

    # ----------------------------------------------------------------- evaluating
    def evaluate(self, patient: str, events: Sequence[RecordedEvent],
                 on: date) -> Evaluation:
        return evaluate(patient, events, at=on, known_at=None, protocol=self.protocol)

    def _write(self, conn: Connection, rows: Rows, *, replace: bool = True) -> int:
        """Replace the rows of the patients in ``rows`` (inside the caller's transaction).
        ``replace=False``: they have none (a rebuild emptied both tables), only insert."""
        if not rows.patients:
            return 0
        if replace:
            conn.execute(delete(due_items).where(due_items.c.patient.in_(rows.patients)))
            conn.execute(delete(patient_status).where(
                patient_status.c.patient.in_(rows.patients)))
        conn.execute(insert(patient_status), rows.statuses)
        if rows.items:
            conn.execute(insert(due_items), rows.items)
        return len(rows.patients)

    def _evaluate_streams(self, streams: Iterable[str], on: date) -> Rows:
        histories = self.store.read_streams(s for s in streams if is_patient_stream(s))
        return rows_of([self.evaluate(p, evs, on) for p, evs in histories.items() if evs],
                       events=sum(len(evs) for evs in histories.values()))

    def _evaluate_many(self, streams: Sequence[str], on: date) -> Rows:
        """Evaluate patients, in worker processes when there are many (PostgreSQL)."""
        if (self.workers <= 1 or len(streams) < PARALLEL_MIN
                or not self.store.recorder.concurrent_writers):
            return Rows.merge(self._evaluate_streams(streams[i:i + _CHUNK], on)
                              for i in range(0, len(streams), _CHUNK))
        per = max(1, -(-len(streams) // self.workers))
        parts = [list(streams[i:i + per]) for i in range(0, len(streams), per)]
        return Rows.merge(self._in_processes(_evaluate_chunk, on, parts, self.workers))

    def _in_processes(self, fn: Callable[[str, str, date, list[str]], T], on: date,
                      chunks: Sequence[list[str]], workers: int) -> Iterator[T]:
        """The one process-pool path: ``fn(url, protocol, on, chunk)`` for each chunk, in
        ``workers`` spawned processes that open their own engine (nothing but stream names
        crosses the pipe). The pool lives until :meth:`close` or a different size."""
        if self._pool is not None and self._pool_size != workers:
            self.close()
        if self._pool is None:
            self._pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
            self._pool_size = workers
        return self._pool.map(fn, repeat(self._url()), repeat(self.protocol.model_dump_json()),
                              repeat(on), chunks)

    def _url(self) -> str:
        return self.engine.url.render_as_string(hide_password=False)

    def close(self) -> None:
        """Stop the worker processes, if any were started."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    # ----------------------------------------------------------------- following
    def catch_up(self, *, batch_size: int = 5000,
                 progress: Callable[[int], None] | None = None) -> CatchUpReport:
        """Fold what is new since the checkpoint, then whoever's status changes today."""
        report = CatchUpReport()
        with self._exclusive() as mine:
            if not mine:
                report.skipped_locked = True
                return report
            self._follow(report, batch_size, progress)
        return report

    def _follow(self, report: CatchUpReport, batch_size: int,
                progress: Callable[[int], None] | None) -> None:
        on = self.today()
        checkpoint = self.checkpoint()
        while True:
            batch = self.store.read_batch(checkpoint, batch_size)
            if not batch:
                break
            touched = sorted({e.stream for e in batch if is_patient_stream(e.stream)})
            last = batch[-1]
            checkpoint = Checkpoint(last.tx, last.position)
            rows = self._evaluate_many(touched, on)
            with self.engine.begin() as conn:  # the rows and the checkpoint, together
                report.patients += self._write(conn, rows)
                self._save_checkpoint(conn, checkpoint)
            report.events += len(batch)
            if progress is not None:
                progress(len(batch))
        report.rechecked = self._recheck(on)

    def _recheck(self, on: date) -> int:
        with self.engine.connect() as conn:
            stale = [r[0] for r in conn.execute(
                select(patient_status.c.patient).where(patient_status.c.next_check_on <= on))]
        rows = self._evaluate_many(stale, on)
        with self.engine.begin() as conn:
            return self._write(conn, rows)

    def rebuild(self, *, progress: Callable[[int], None] | None = None,
                workers: int = 1) -> CatchUpReport:
        """Drop every row and fold the whole log again, patient chunk by patient chunk:
        memory stays flat. Gives the same rows as following the log from position zero.
        ``workers`` > 1 folds chunks in that many processes (PostgreSQL)."""
        report = CatchUpReport()
        with self._exclusive() as mine:
            if not mine:
                report.skipped_locked = True
                return report
            self._refold_everything(report, progress, workers)
            # whatever arrived during the rebuild is folded by the usual catch-up
            follow = CatchUpReport()
            self._follow(follow, 5000, None)
        report.events += follow.events
        return report

    def _refold_everything(self, report: CatchUpReport,
                           progress: Callable[[int], None] | None, workers: int) -> None:
        on = self.today()
        tail = self.store.tail()
        with self.engine.begin() as conn:
            conn.execute(delete(due_items))
            conn.execute(delete(patient_status))
            self._save_checkpoint(conn, START)
        streams = self.store.patient_streams()
        chunks = [list(streams[i:i + _CHUNK]) for i in range(0, len(streams), _CHUNK)]
        # Where the projector lock is a real one (PostgreSQL's advisory lock), nobody else
        # writes these tables until the rebuild ends: its chunks only insert. Deleting each
        # chunk's (absent) rows first was half a 6-million-event rebuild. Elsewhere (SQLite:
        # no lock) a catch-up in another process may have written a patient meanwhile.
        locked = self.store.recorder.concurrent_writers
        parallel = workers > 1 and len(chunks) > 1 and locked
        done: Iterable[tuple[int, int]] = (
            self._in_processes(_refold_chunk, on, chunks, workers) if parallel
            else (self.refold(chunk, on, replace=not locked) for chunk in chunks))
        for patients, events in done:
            report.patients += patients
            report.events += events
            if progress is not None:
                progress(patients)
        if parallel and workers != self.workers:
            self.close()  # a rebuild's own pool size: not kept for catch-ups
        with self.engine.begin() as conn:
            self._save_checkpoint(conn, tail)
            if conn.dialect.name == "postgresql":
                # The planner's figures for both tables date from before the rebuild
                # (often: empty). With them, the next catch-up's per-patient DELETE ran
                # as a sequential scan of millions of due items.
                conn.execute(text("ANALYZE patient_status, due_items"))

    def refold(self, streams: Sequence[str], on: date, *, replace: bool = True
               ) -> tuple[int, int]:
        """Evaluate these patients from their whole history and replace their rows
        (``replace=False``: write them, the tables holding none of theirs: a rebuild)."""
        rows = self._evaluate_streams(streams, on)
        with self.engine.begin() as conn:
            patients = self._write(conn, rows, replace=replace)
        return patients, rows.events


_PROCESS_PROJECTORS: dict[str, StatusProjector] = {}


def _process_projector(url: str, protocol_json: str) -> StatusProjector:
    """The projector of a worker process (one engine per process and database)."""
    key = url + protocol_json
    projector = _PROCESS_PROJECTORS.get(key)
    if projector is None:
        from events.store.engine import make_engine
        from tracker.clock import SystemClock

        projector = StatusProjector(EventStore(make_engine(url)),
                                    Protocol.model_validate_json(protocol_json), SystemClock())
        _PROCESS_PROJECTORS[key] = projector
    return projector


def _refold_chunk(url: str, protocol_json: str, on: date, streams: list[str]
                  ) -> tuple[int, int]:
    """One chunk of a parallel rebuild: evaluated and written by the worker process."""
    return _process_projector(url, protocol_json).refold(streams, on, replace=False)


def _evaluate_chunk(url: str, protocol_json: str, on: date, streams: list[str]) -> Rows:
    """One chunk of a parallel catch-up: evaluated by the worker process, written by the
    caller in the same transaction as its checkpoint."""
    return _process_projector(url, protocol_json)._evaluate_streams(streams, on)


# ----------------------------------------------------------------- queries
def load_status(conn: Connection, patient: str) -> dict[str, Any] | None:
    row = conn.execute(select(patient_status.c.status).where(
        patient_status.c.patient == patient)).first()
    return orjson.loads(row[0]) if row else None


def due_before(conn: Connection, until: date, *, with_causes: bool = True,
               news_since: date | None = None) -> list[dict[str, Any]]:
    """Due items that fire on or before ``until``, by date (an indexed range query).
    ``with_causes=False`` leaves out the bulky cause lists (the worklist needs none);
    ``news_since`` drops news of a moment (a relapse, a deviation) that fired before it,
    keeping standing items (labs, doses, imaging) whatever their age."""
    columns = list(due_items.c) if with_causes else [
        c for c in due_items.c if c.name != "cause_event_ids"]
    q = select(*columns).where(due_items.c.fires_on <= until)
    if news_since is not None:
        q = q.where(or_(due_items.c.fires_on >= news_since,
                        due_items.c.kind.in_(sorted(STANDING_KINDS))))
    rows = conn.execute(q.order_by(due_items.c.fires_on, due_items.c.patient, due_items.c.key))
    keys = [c.name for c in columns]
    return [dict(zip(keys, r, strict=True)) for r in rows]


def fired_due_items(conn: Connection, earliest: date, until: date) -> list[DueItem]:
    """The due items whose fire date is in ``[earliest, until]``, by date and key (what the
    alert worker evaluates: items older than its look-back are history, later ones have
    not fired)."""
    q = (select(due_items).where(due_items.c.fires_on >= earliest,
                                 due_items.c.fires_on <= until)
         .order_by(due_items.c.fires_on, due_items.c.key))
    return [_due_item(r._mapping) for r in conn.execute(q)]


def _due_item(row: Any) -> DueItem:
    causes = row["cause_event_ids"]
    if isinstance(causes, str):
        causes = orjson.loads(causes)
    return DueItem(key=row["key"], group=row["grp"], patient=row["patient"], kind=row["kind"],
                   severity=row["severity"], fires_on=row["fires_on"],
                   item_due_on=row["item_due_on"], item=row["item"],
                   cause_event_ids=tuple(causes))


def present_due_keys(conn: Connection, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` still name a due item (the others' alerts may be cancelled)."""
    out: set[str] = set()
    for i in range(0, len(keys), 500):
        q = select(due_items.c.key).where(due_items.c.key.in_(keys[i:i + 500]))
        out.update(r[0] for r in conn.execute(q))
    return out


def patients_with_status(conn: Connection, patients: Sequence[str]) -> set[str]:
    """Which of ``patients`` the read model holds a status for (folded at least once)."""
    out: set[str] = set()
    for i in range(0, len(patients), 500):
        q = select(patient_status.c.patient).where(
            patient_status.c.patient.in_(patients[i:i + 500]))
        out.update(r[0] for r in conn.execute(q))
    return out


def all_rows(conn: Connection) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every row of the read model, ordered: for comparing a rebuild with a follow."""
    statuses = [tuple(r) for r in conn.execute(
        select(patient_status).order_by(patient_status.c.patient))]
    items = [tuple(r) for r in conn.execute(select(due_items).order_by(due_items.c.key))]
    return statuses, items


