"""``cno-tracker import``: all-or-nothing, every problem with line, field and reason.

Rules (interchange.md): a patient is enrolled (earlier in the file or already stored)
before other events name it; events in the future beyond the clock-skew allowance are
refused; an idempotency key seen again with the same content is skipped and counted as a
duplicate, with different content it is an error; voids and corrections name an existing
event of the same patient and stay coherent (see corrections.py). Nothing is written
unless every line is valid.

The file is streamed: lines are decoded, checked and written in batches inside one
transaction, so memory does not grow with the file. What the checks need of the lines
already written (their keys, the patients they enrolled, the events they voided) is read
back through that transaction; in memory stay only the stream versions of the patients
touched, the targets voided or corrected in this file, and the first problems. A problem
anywhere rolls the whole transaction back; so does ``dry_run``, after every check ran."""

from __future__ import annotations

import gc
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import IO

from sqlalchemy import Connection

from events.envelope import PreparedEvent
from events.errors import ConcurrencyConflict, DuplicateIdempotencyKey, Problem
from events.ids import new_event_id
from events.store import EventStore
from events.store.writing import Writer
from tracker import import_pool
from tracker.clock import Clock
from tracker.corrections import Targets, check_target
from tracker.errors import ImportRefused
from tracker.import_decode import Line, instant
from tracker.protocol import Protocol

__all__ = ["ConcurrentImport", "ImportReport", "Known", "bounded_lines", "import_lines",
           "new_event_id", "when_to_instant"]

#: the longest line accepted (bytes, without its newline); longer ones end the import
MAX_LINE_BYTES = 1 << 20
#: lines are checked and written in batches of at most this many lines / bytes
BATCH_LINES = 2000
BATCH_BYTES = 8 << 20
#: problems listed one by one; beyond, they are counted
MAX_PROBLEMS = 1000
#: the ids of the first written events kept in the report (``record`` prints the first)
EVENT_IDS_KEPT = 1000


@dataclass
class ImportReport:
    lines: int = 0
    written: int = 0
    duplicates: int = 0
    patients: set[str] = field(default_factory=set)
    dry_run: bool = False
    #: the ids of the first :data:`EVENT_IDS_KEPT` events written
    event_ids: list[str] = field(default_factory=list)

    def summary(self) -> str:
        verb = "would write" if self.dry_run else "wrote"
        return (f"{self.lines} line(s) read: {verb} {self.written} event(s) for "
                f"{len(self.patients)} patient(s), skipped {self.duplicates} duplicate(s)")


class ConcurrentImport(ConcurrencyConflict):
    """Another transaction stored one of this import's idempotency keys meanwhile."""

    def __init__(self, key: str) -> None:
        self.stream, self.expected, self.actual = "", 0, None
        Exception.__init__(self, f"idempotency key {key!r} was stored by another writer "
                                 "during this import; re-read and retry")


class _RolledBack(Exception):
    """Ends a dry run's transaction after every check ran."""


def when_to_instant(value: date | datetime, protocol: Protocol) -> tuple[datetime, date]:
    """(UTC instant, local clinical date) of an ``occurred_at``. A bare date is the local
    midnight of that date in the centre's time zone."""
    return instant(value, protocol.zone)


def bounded_lines(stream: IO[bytes], max_bytes: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """The lines of ``stream``, reading at most ``max_bytes`` + 1 bytes of any line: an
    overlong line is yielded cut there (the importer refuses it) and reading stops, so an
    endless line (``/dev/zero``) ends instead of filling memory."""
    while True:
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        yield line
        if len(line) > max_bytes and not line.endswith(b"\n"):
            return


@dataclass(frozen=True)
class Known:
    """What the caller read from the store just before, outside any transaction, as the
    first batch's own look-ups would (``tracker.interop.ingest`` reads them to decide
    what to send): the first batch is checked against these instead of reading them
    again. Only the look-ups outside the write transaction are saved; inside it the
    checks that catch another writer stay (the heads read in the transaction against
    these versions, the unique stream version and idempotency key)."""

    #: stream -> its version (0: no event) for every stream in ``versions``
    versions: dict[str, int] = field(default_factory=dict)
    #: every idempotency key looked up, and what was found stored for it
    looked_up: frozenset[str] = frozenset()
    keys: dict[str, tuple[str, str, str]] = field(default_factory=dict)


def import_lines(lines: Iterable[bytes | str], store: EventStore, *, clock: Clock,
                 protocol: Protocol, default_by: str = "import", dry_run: bool = False,
                 on_line: Callable[[int], None] | None = None,
                 max_line_bytes: int = MAX_LINE_BYTES,
                 known: Known | None = None, workers: int | None = None) -> ImportReport:
    """Check and write every line in one transaction (or nothing). ``known``: see
    :class:`Known`. ``workers``: processes decoding batches beside this one (see
    :mod:`tracker.import_pool`; ``None``: one per core, 0: none)."""
    importer = _Importer(store, clock=clock, protocol=protocol, default_by=default_by,
                         dry_run=dry_run, on_line=on_line, max_line_bytes=max_line_bytes,
                         known=known, workers=workers)
    # Automatic collections would walk each batch's objects again and again (a fifth of
    # the import's time); the batch's young objects are collected once, after it instead.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        importer.run(lines)
    finally:
        if gc_was_enabled:
            gc.enable()
    # (a large import refreshes the planner's statistics as it commits: the store does
    # that after any transaction of ANALYZE_AFTER events or more)
    return importer.report


class _Importer:
    def __init__(self, store: EventStore, *, clock: Clock, protocol: Protocol,
                 default_by: str, dry_run: bool, on_line: Callable[[int], None] | None,
                 max_line_bytes: int, known: Known | None = None,
                 workers: int | None = None) -> None:
        self.store = store
        self.workers = workers
        #: used by the first batch's check only (outside the transaction)
        self.known = known
        self.protocol = protocol
        self.default_by = default_by
        self.on_line = on_line
        self.max_line_bytes = max_line_bytes
        self.now = clock.now()
        self.horizon = self.now + timedelta(minutes=protocol.clock_skew_minutes)
        self.today_local = self.horizon.astimezone(protocol.zone).date()
        self.report = ImportReport(dry_run=dry_run)
        self.problems: list[Problem] = []
        self.unlisted = 0
        #: stream -> its version as this import knows it (stored + written here)
        self.versions: dict[str, int] = {}
        self.targets = Targets()
        self._read_all = False  # the lines are all read
        self._raw_batches = 0  # batches read (decoded, or being decoded)
        self._batches_out = 0  # decoded batches taken by the checks
        self._overlong: Problem | None = None  # the line that stopped the reading

    @property
    def _ended(self) -> bool:
        """The batch taken last was the file's last."""
        return self._read_all and self._batches_out == self._raw_batches

    # ----------------------------------------------------------------- driving
    def run(self, lines: Iterable[bytes | str]) -> None:
        batches = self._batches(lines)
        try:
            self._run(batches)
        finally:
            batches.close()  # stops the decoding workers now, also when refused

    def _run(self, batches: Iterator[list[Line]]) -> None:
        first = next(batches, None)
        if first is None:
            return
        # The first batch is checked before the write transaction begins (a one-line
        # `record` takes the write lock only to write). The versions it read are the
        # expected ones: a writer that appended meanwhile makes the import a conflict.
        pending = self._check(first, None)
        del first
        if self._ended and self.problems:
            self._refuse()  # the whole file was one batch: no transaction needed
        if self._ended and not pending:
            return  # nothing to write (every line a duplicate)
        try:
            with self.store.transaction() as writer:
                self._write(writer, pending)
                del pending
                # Each batch's rows are written before the next batch is looked up (see
                # _check), and every batch is let go before the next one is read: the
                # young objects the generator collects after a batch are only the few
                # survivors (a batch still referenced here made each collection walk all
                # of it). The last batch's rows are written as the transaction commits.
                for batch in batches:
                    self._write(writer, self._check(batch, writer))
                    del batch
                if self.problems:
                    self._refuse()
                if self.report.dry_run:
                    raise _RolledBack
        except _RolledBack:
            pass
        except DuplicateIdempotencyKey as exc:
            # every key was looked up in this transaction: another writer stored it since
            raise ConcurrentImport(exc.key) from None

    def _refuse(self) -> None:
        self.problems.sort(key=lambda p: p.line or 0)
        if self.unlisted:
            self.problems.append(Problem(None, "input", f"{self.unlisted} more problem(s) "
                                                        "not listed"))
        raise ImportRefused(self.problems)

    def _problem(self, problem: Problem) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        else:
            self.unlisted += 1

    def _raw(self, lines: Iterable[bytes | str]) -> Iterator[list[tuple[int, bytes | str]]]:
        """The numbered non-blank lines in batches, as read (the line that is too long
        ends the reading; its problem is recorded with the last batch's)."""
        batch: list[tuple[int, bytes | str]] = []
        size = 0
        for number, raw in enumerate(lines, start=1):
            if self.on_line is not None:
                self.on_line(number)
            self.report.lines = number
            length = len(raw) if isinstance(raw, bytes) else len(raw.encode())
            if length - (raw[-1:] in (b"\n", "\n")) > self.max_line_bytes:
                self._overlong = Problem(number, "line", f"longer than {self.max_line_bytes} "
                                                         "bytes; the import stops here")
                break
            if not raw.strip():
                continue
            batch.append((number, raw))
            size += length
            if len(batch) >= BATCH_LINES or size >= BATCH_BYTES:
                self._raw_batches += 1
                yield batch
                batch, size = [], 0
        self._read_all = True
        if batch or self.report.lines:
            self._raw_batches += 1
            yield batch

    def _batches(self, lines: Iterable[bytes | str]) -> Generator[list[Line], None, None]:
        """Decoded lines in batches (by worker processes when there are several batches);
        decoding problems are recorded on the way."""
        for decoded in import_pool.decoded(self._raw(lines), self.protocol.zone,
                                           self.workers):
            self._batches_out += 1
            batch: list[Line] = []
            for item in decoded:
                if isinstance(item, Line):
                    batch.append(item)
                else:
                    for p in item:
                        self._problem(p)
            if self._ended and self._overlong is not None:
                self._problem(self._overlong)
            del decoded
            yield batch
            # the young generations only (this batch's garbage), and only when more
            # batches follow: a one-batch import (each HL7 message) pays for none
            if not self._ended:
                gc.collect(1)

    # ----------------------------------------------------------------- checking
    def _check(self, batch: list[Line], writer: Writer | None
               ) -> dict[str, list[PreparedEvent]]:
        """Check a batch against the store and what came before; returns the events to
        write, by stream. ``writer`` None: the first batch, checked before the write
        transaction begins. Inside it, the previous batch's rows are written first, so
        the look-ups see everything this import wrote. (Writing them in a thread while this
        batch was checked was tried, and measured slower: the thread formatting rows and
        this one checking lines took turns at the interpreter lock.)"""
        if writer is not None:
            writer.flush()
        return self._check_lines(batch, self._look_up(batch, writer))

    def _look_up(self, batch: list[Line], writer: Writer | None) -> dict[str, str]:
        """What the batch's checks need from the store: the versions of the streams this
        import has not met yet (inside the transaction, read with their heads in one
        query), the stored content hash of each idempotency key (returned), the targets of
        voids and corrections."""
        store = self.store
        known, self.known = self.known, None
        streams = {m.patient for m in batch}
        if writer is not None:
            # one query for the heads this transaction has not read, with the versions
            writer.prefetch_heads(streams)
            self.versions.update({p: writer.heads[p].version
                                  for p in streams - self.versions.keys()})
            conn: Connection | None = writer.conn
            known = None  # inside the transaction every look-up is its own
        else:
            conn = None
            unknown = streams - self.versions.keys()
            if known is not None:
                self.versions.update({p: known.versions[p] for p in unknown
                                      if p in known.versions})
                unknown -= known.versions.keys()
            found = store.stream_versions(unknown) if unknown else {}
            self.versions.update({p: found.get(p, 0) for p in unknown})
        keys = [m.idempotency_key for m in batch if m.idempotency_key]
        stored_keys: dict[str, str] = {}
        if known is not None:
            stored_keys = {k: known.keys[k][0] for k in keys if k in known.keys}
            keys = [k for k in keys if k not in known.looked_up]
        if keys:
            stored_keys |= {k: v[0] for k, v in
                            store.find_idempotency_keys(keys, conn=conn).items()}
        self.targets.load(store, (m.target.target_event_id for m in batch
                                  if m.target is not None), conn)
        return stored_keys

    def _check_lines(self, batch: list[Line], stored_keys: dict[str, str]
                     ) -> dict[str, list[PreparedEvent]]:
        batch_keys: dict[str, str] = {}
        pending: dict[str, list[PreparedEvent]] = {}
        for m in batch:
            event = self._check_line(m, stored_keys, batch_keys, pending)
            if event is not None:
                pending.setdefault(m.patient, []).append(event)
        return pending

    def _enrolled(self, patient: str, pending: dict[str, list[PreparedEvent]]) -> bool:
        return self.versions.get(patient, 0) > 0 or bool(pending.get(patient))

    def _check_line(self, m: Line, stored_keys: dict[str, str],
                    batch_keys: dict[str, str], pending: dict[str, list[PreparedEvent]]
                    ) -> PreparedEvent | None:
        number = m.number
        problems: list[Problem] = []
        if m.occurred_at > self.horizon or m.occurred_on > self.today_local:
            problems.append(Problem(number, "occurred_at", f"{m.written_at} is in the future"))
        enrolled = self._enrolled(m.patient, pending)
        if m.type == "PatientEnrolled":
            if enrolled and not m.idempotency_key:
                problems.append(Problem(number, "patient", f"{m.patient} is already enrolled"))
        elif not enrolled:
            problems.append(Problem(
                number, "patient",
                f"{m.patient} is not enrolled: a PatientEnrolled line must come first"))
        if m.target is not None:
            problems.extend(check_target(number, m.patient, m.target, self.targets))
        key_hash = m.content_hash
        if m.idempotency_key:
            earlier_hash = (stored_keys.get(m.idempotency_key)
                            or batch_keys.get(m.idempotency_key))
            if earlier_hash is not None:
                if earlier_hash == key_hash:
                    self.report.duplicates += 1
                    return None
                problems.append(Problem(
                    number, "idempotency_key",
                    f"{m.idempotency_key!r} was already used for different content"))
            elif m.type == "PatientEnrolled" and enrolled:
                problems.append(Problem(number, "patient", f"{m.patient} is already enrolled"))
            batch_keys[m.idempotency_key] = key_hash
        if problems:
            for p in problems:
                self._problem(p)
            return None
        if m.target is not None:
            self.targets.record(number, m.target)
        return PreparedEvent(m.event_id, m.type, m.occurred_at, m.occurred_on, self.now,
                             m.recorded_by or self.default_by, m.idempotency_key,
                             m.data_json, key_hash, m.schema_version)

    # ----------------------------------------------------------------- writing
    def _write(self, writer: Writer, pending: dict[str, list[PreparedEvent]]) -> None:
        report = self.report
        writer.prefetch_heads(s for s in pending if s not in writer.heads)
        for stream, new in pending.items():
            writer.append(stream, self.versions[stream], new, returning=False)
            self.versions[stream] += len(new)
            report.written += len(new)
            report.patients.add(stream)
            room = EVENT_IDS_KEPT - len(report.event_ids)
            if room > 0:
                report.event_ids.extend(e.event_id for e in new[:room])
