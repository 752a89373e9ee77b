"""Event-store benchmark for CNO Tracker: run on demand, never collected as a test.

    .venv/bin/python -m bench.store            # full run (a few minutes)
    .venv/bin/python -m bench.store --quick    # smoke run (about 30 seconds)

Measures, on SQLite (a file in a temporary directory) and PostgreSQL, in one run:

1. single-event appends per second, one transaction each: ``EventStore.append`` vs plain
   SQLAlchemy Core inserts of the same rows vs the eventsourcing 9.x application recorder;
2. the same with several concurrent writer processes on PostgreSQL;
3. bulk import per second: ``import_lines`` in-process and the ``cno-tracker import`` CLI;
4. read + decode per second over the whole log, with the read's peak memory, at two sizes.

See bench/README.md for what each figure means. Every database it creates is named
``cno_bench_<pid>_<what>`` (PostgreSQL) or lives in a temporary directory (SQLite), and is
dropped at the end.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    Transcoding,
    UUIDAsHex,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteDatastore,
)
from sqlalchemy import Engine, insert, text
from sqlalchemy.engine import make_url

from bench.databases import Databases
from bench.store_options import Options, Result, faster, parse_args
from events.envelope import (
    GENESIS,
    NewEvent,
    canonical_json,
    chain_hash,
    content_hash,
    dump_data,
)
from events.lines import decode_line
from events.store import EventStore
from events.store.engine import make_engine, normalise_url
from events.store.tables import events as EVENTS
from tracker.clock import FixedClock
from tracker.import_pool import default_workers
from tracker.importing import import_lines, when_to_instant
from tracker.protocol import DEFAULT_PROTOCOL

RECORDED_AT = datetime(2025, 1, 1, 12, tzinfo=UTC)  # the bench's clock: "now"
UNTIL = date(2024, 12, 31)  # no generated event is later than this
BATCH = 2000  # read page size, the same for both stores
FILL_CHUNK = 10_000
ES = "eventsourcing"


# ---------------------------------------------------------------------------- results
def _log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- databases
# ---------------------------------------------------------------------------- event source
def _simple_lines(seed: int, n: int) -> Iterator[dict[str, Any]]:
    """A stand-in cohort: enrolment, then visits, labs and infusions, unique keys."""
    rng = random.Random(seed)
    made, patient = 0, 0
    while True:
        patient += 1
        ref = f"S{seed}-{patient:05d}"
        born = date(2000 + rng.randint(0, 8), rng.randint(1, 12), rng.randint(1, 28))
        day = date(2012, 1, 1).toordinal() + rng.randint(0, 3000)
        for k in range(rng.randint(20, 100)):
            if made >= n:
                return
            when = date.fromordinal(day + 14 * k).isoformat()
            line: dict[str, Any] = {"patient": ref, "occurred_at": when,
                                    "recorded_by": "dr.bench",
                                    "idempotency_key": f"simple-{seed}-{ref}-{k}"}
            roll = rng.random()
            if k == 0:
                line |= {"type": "PatientEnrolled",
                         "data": {"birth_date": born.isoformat(), "sex": "female"}}
            elif roll < 0.45:
                line |= {"type": "LabResultRecorded",
                         "data": {"analyte": "crp", "value": round(rng.uniform(0, 40), 1),
                                  "unit": "mg/L"}}
            elif roll < 0.85:
                line |= {"type": "VisitRecorded",
                         "data": {"pain": rng.random() < 0.5, "swelling": False,
                                  "functional_limitation": False, "pain_score": 2,
                                  "active_lesions": [{"site": "tibia", "side": "left"}]}}
            else:
                line |= {"type": "InfusionAdministered",
                         "data": {"drug": "pamidronate", "dose_mg": 30.0, "weight_kg": 35.5}}
            made += 1
            yield line


def cohort_lines(seed: int, n: int, generator: str) -> Iterator[bytes]:
    """``n`` interchange lines: ``tracker.synthetic.generate_cohort`` when present."""
    if generator == "cohort":
        try:
            from tracker.synthetic import generate_cohort
        except ImportError:
            generator = "simple"
    source: Iterable[dict[str, Any]] = (
        generate_cohort(n, seed, UNTIL) if generator == "cohort" else _simple_lines(seed, n))
    for i, line in enumerate(source):
        if i >= n:
            return
        yield orjson.dumps(line)


def write_jsonl(path: Path, seed: int, n: int, generator: str) -> int:
    count = 0
    with path.open("wb") as fh:
        for raw in cohort_lines(seed, n, generator):
            fh.write(raw + b"\n")
            count += 1
    return count


@dataclass(frozen=True, slots=True)
class Item:
    """One event to append: its stream, its version, the event."""

    stream: str
    version: int
    event: NewEvent


def to_items(lines: Iterable[bytes], versions: dict[str, int] | None = None) -> list[Item]:
    """Decode lines as the importer does; ``versions`` carries stream heads across calls."""
    versions = {} if versions is None else versions
    out = []
    for raw in lines:
        m = decode_line(raw)
        occurred_at, occurred_on = when_to_instant(m.occurred_at, DEFAULT_PROTOCOL)
        version = versions.get(m.patient, 0) + 1
        versions[m.patient] = version
        out.append(Item(m.patient, version, NewEvent(
            event_id=str(uuid.uuid4()), type=m.type, data=m.data, occurred_at=occurred_at,
            occurred_on=occurred_on, recorded_at=RECORDED_AT,
            recorded_by=m.recorded_by or "bench", idempotency_key=m.idempotency_key)))
    return out


# ---------------------------------------------------------------------------- eventsourcing
@dataclass(frozen=True)
class BenchEvent:
    """The same event as an eventsourcing domain event (its mapper stores ``vars()``)."""

    originator_id: str
    originator_version: int
    event_id: str
    type: str
    occurred_at: datetime
    occurred_on: date
    recorded_at: datetime
    recorded_by: str
    idempotency_key: str | None
    data: dict[str, Any]


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


def to_domain_event(item: Item) -> BenchEvent:
    e = item.event
    return BenchEvent(item.stream, item.version, e.event_id, e.type, e.occurred_at,
                      e.occurred_on, e.recorded_at, e.recorded_by, e.idempotency_key,
                      dump_data(e.data))


class _NormalSyncPool(SQLiteConnectionPool):
    """eventsourcing's SQLite pool with ``synchronous=NORMAL``, as ``make_engine`` sets it
    for our store: both then commit to the WAL without an fsync per transaction."""

    def _create_connection(self) -> SQLiteConnection:
        conn = super()._create_connection()
        conn._sqlite_conn.execute("PRAGMA synchronous=NORMAL")
        return conn


@dataclass
class EsStore:
    recorder: SQLiteApplicationRecorder | PostgresApplicationRecorder
    mapper: Mapper[str]
    close: Callable[[], None]


def es_store(url: str, *, create: bool = True) -> EsStore:
    """eventsourcing's application recorder (text originator ids: our stream names)."""
    u = make_url(normalise_url(url))
    recorder: SQLiteApplicationRecorder | PostgresApplicationRecorder
    if u.drivername.startswith("sqlite"):
        path = str(u.database)
        sqlite_ds = SQLiteDatastore(db_name=path, originator_id_type="text")
        sqlite_ds.pool.close()
        sqlite_ds.pool = _NormalSyncPool(db_name=path)
        recorder = SQLiteApplicationRecorder(sqlite_ds)
        close = sqlite_ds.close
    else:
        pg_ds = PostgresDatastore(dbname=str(u.database), host=str(u.host), port=u.port or 5432,
                                  user=str(u.username), password=u.password or "",
                                  originator_id_type="text")
        recorder = PostgresApplicationRecorder(pg_ds)
        close = pg_ds.close
    if create:
        recorder.create_table()
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO(), DateAsISO()):
        transcoder.register(transcoding)
    return EsStore(recorder, Mapper(transcoder=transcoder), close)


# ---------------------------------------------------------------------------- appenders
Appender = tuple[Callable[[Any], object], list[Any], Callable[[], None]]


def core_rows(items: list[Item]) -> list[dict[str, Any]]:
    """The rows ``EventStore.append`` would insert (hash chain included), built up front."""
    prev: dict[str, str] = {}
    rows = []
    for it in items:
        e = it.event
        data_json = canonical_json(dump_data(e.data))
        schema_version = type(e.data).schema_version
        h = chain_hash(prev.get(it.stream, GENESIS), event_id=e.event_id, stream=it.stream,
                       version=it.version, event_type=e.type, schema_version=schema_version,
                       occurred_at=e.occurred_at, occurred_on=e.occurred_on,
                       recorded_at=e.recorded_at, recorded_by=e.recorded_by,
                       idempotency_key=e.idempotency_key, data_json=data_json)
        prev[it.stream] = h
        rows.append({
            "tx": 0, "event_id": e.event_id, "stream": it.stream, "version": it.version,
            "type": e.type, "schema_version": schema_version, "occurred_at": e.occurred_at,
            "occurred_on": e.occurred_on, "recorded_at": e.recorded_at,
            "recorded_by": e.recorded_by, "idempotency_key": e.idempotency_key,
            "content_hash": content_hash(e.type, it.stream, e.occurred_at, data_json),
            "data": data_json.decode(), "hash": h,
        })
    return rows


def _engine(url: str, *, pre_ping: bool) -> Engine:
    if url.startswith("sqlite"):
        return make_engine(url)
    return make_engine(url, pool_pre_ping=pre_ping)


def make_appender(kind: str, url: str, items: list[Item], *, create: bool = True) -> Appender:
    """(append one payload, the payloads, close): everything but the appends is done here."""
    if kind in ("ours", "ours-noping"):
        # ours: the engine exactly as the application makes it (no pre-ping since the
        # store's append became one round trip); ours-noping is kept as an alias
        engine = make_engine(url)
        store = EventStore(engine)
        with engine.connect():
            pass

        def ours(it: Item) -> object:
            return store.append(it.stream, it.version - 1, [it.event])
        return ours, items, engine.dispose
    if kind == "core":
        engine = _engine(url, pre_ping=False)
        stmt = insert(EVENTS)
        with engine.connect():
            pass

        def core(row: dict[str, Any]) -> object:
            with engine.begin() as conn:
                return conn.execute(stmt, row)
        return core, core_rows(items), engine.dispose
    if kind == ES:
        es = es_store(url, create=create)
        recorder, mapper = es.recorder, es.mapper
        recorder.max_notification_id()  # opens the pool

        def eventsourcing(ev: BenchEvent) -> object:
            return recorder.insert_events([mapper.to_stored_event(ev)])
        return eventsourcing, [to_domain_event(it) for it in items], es.close
    raise ValueError(kind)


def bench_single(dbs: Databases, kind: str, items: list[Item]) -> tuple[str, Result]:
    url = dbs.fresh(kind, migrate=kind != ES)
    append, payloads, close = make_appender(kind, url, items)
    t0 = time.perf_counter()
    for p in payloads:
        append(p)
    seconds = time.perf_counter() - t0
    close()
    stored = stored_count(kind, url)
    if stored != len(payloads):
        raise RuntimeError(f"{kind} stored {stored} of {len(payloads)} events")
    return url, Result("append x1", dbs.backend, kind, len(payloads), seconds,
                       "1 event per transaction")


def stored_count(kind: str, url: str) -> int:
    """How many events a system's table holds (proof that the appends were committed)."""
    engine = make_engine(url)
    table = "stored_events" if kind == ES else "events"
    with engine.connect() as conn:
        count = int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    engine.dispose()
    return count


def _writer_child(kind: str, url: str, lines: list[bytes], barrier: Any, out: Any) -> None:
    append, payloads, close = make_appender(kind, url, to_items(lines), create=False)
    barrier.wait()
    t0 = time.monotonic()
    for p in payloads:
        append(p)
    t1 = time.monotonic()
    close()
    out.put((t0, t1, len(payloads)))


def bench_writers(backend: str, kind: str, url: str, writers: int, per_writer: int,
                  generator: str, seed: int = 1000) -> Result:
    """``writers`` processes appending at once, each to its own streams (those of the
    cohort of seed ``seed + w``: another ``seed`` gives other streams, so a later round
    appends to the same database without meeting the earlier one's)."""
    before = stored_count(kind, url)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(writers + 1)
    out = ctx.Queue()
    procs = [ctx.Process(target=_writer_child, args=(
        kind, url, list(cohort_lines(seed + w, per_writer, generator)), barrier, out))
        for w in range(writers)]
    for p in procs:
        p.start()
    barrier.wait(timeout=300)
    results = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"a {kind} writer failed with exit code {p.exitcode}")
    start = min(r[0] for r in results)
    end = max(r[1] for r in results)
    total = sum(r[2] for r in results)
    if stored_count(kind, url) != before + total:
        raise RuntimeError(f"{kind}: the writers' events are not all stored")
    return Result(f"append x{writers}", backend, kind, total, end - start,
                  f"{writers} processes, own streams")


# ---------------------------------------------------------------------------- import
def bench_import_api(dbs: Databases, path: Path, n: int, workers: int | None = None
                     ) -> Result:
    """``import_lines`` with its default decoding workers (``workers=None``: one per
    core), or with ``workers`` (0: every line decoded in this process, as before the pool:
    the diagnostic row ``lines-serial``)."""
    url = dbs.fresh("import_api" if workers is None else f"import_api_w{workers}")
    engine = make_engine(url)
    store = EventStore(engine)
    t0 = time.perf_counter()
    with path.open("rb") as fh:
        report = import_lines(fh, store, clock=FixedClock(RECORDED_AT),
                              protocol=DEFAULT_PROTOCOL, workers=workers)
    seconds = time.perf_counter() - t0
    engine.dispose()
    dbs.drop(url)
    if report.written != n:
        raise RuntimeError(f"import_lines wrote {report.written} of {n} events")
    if workers is None:
        return Result("import", dbs.backend, "import_lines", n, seconds,
                      f"in-process, validation, {default_workers()} decoding workers")
    return Result("import", dbs.backend, "lines-serial", n, seconds,
                  f"in-process, validation, --workers {workers} (diagnostic)")


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "cno-tracker"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from tracker.cli.main import main; main()"]


def bench_import_cli(dbs: Databases, path: Path, n: int) -> Result:
    url = dbs.fresh("import_cli")
    env = {**os.environ, "CNO_TRACKER_DATABASE_URL": url}
    t0 = time.perf_counter()
    proc = subprocess.run([*_cli(), "import", str(path)], env=env, capture_output=True,
                          text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or f"wrote {n} event(s)" not in proc.stdout:
        raise RuntimeError(f"cno-tracker import failed ({proc.returncode}): "
                           f"{proc.stdout[-500:]}{proc.stderr[-2000:]}")
    return Result("import", dbs.backend, "cli", n, seconds, "subprocess wall incl. start-up")


def _load() -> str:
    """The 1-minute load average (the machine is shared: say how busy it was)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


def cli_startup() -> float:
    t0 = time.perf_counter()
    subprocess.run([*_cli(), "--help"], capture_output=True, check=True)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------- reading
def fill_ours(url: str, items: list[Item]) -> None:
    """Append ``items`` in one transaction, each stream's run as one batch."""
    engine = make_engine(url)
    store = EventStore(engine)
    runs: dict[str, list[Item]] = {}
    for it in items:
        runs.setdefault(it.stream, []).append(it)
    with store.transaction() as writer:
        for stream, run in runs.items():
            writer.append(stream, run[0].version - 1, [it.event for it in run],
                          returning=False)
    engine.dispose()


def fill_es(url: str, items: list[Item]) -> None:
    es = es_store(url, create=False)
    for i in range(0, len(items), 1000):
        es.recorder.insert_events(
            [es.mapper.to_stored_event(to_domain_event(it)) for it in items[i:i + 1000]])
    es.close()


def _rss_mib() -> float:
    """The current resident set size (Linux), else the peak so far."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _scan(kind: str, url: str) -> Iterator[Callable[[], Iterator[object]]]:
    """Yield a function that walks the whole log once (and decodes it), then clean up."""
    if kind in ("ours", "ours-rows"):
        engine = make_engine(url)
        store = EventStore(engine)
        store.count()  # connect

        def ours() -> Iterator[object]:
            for e in store.read_all(batch_size=BATCH):
                yield e.data if kind == "ours" else e
        yield ours
        engine.dispose()
        return
    es = es_store(url, create=False)
    recorder, mapper = es.recorder, es.mapper
    recorder.max_notification_id()  # connect

    def eventsourcing() -> Iterator[object]:
        start: int | None = None
        while True:
            page = recorder.select_notifications(start, BATCH, inclusive_of_start=False)
            if not page:
                return
            for notification in page:
                yield mapper.to_domain_event(notification).data  # type: ignore[attr-defined]
            start = page[-1].id
    yield eventsourcing
    es.close()


def _read_child(kind: str, url: str, traced: bool, out: Any) -> None:
    """Read (and decode) the whole log in a fresh process: one timed pass that samples
    the resident set once per page, then (``traced``) a pass under tracemalloc."""
    for walk in _scan(kind, url):
        count, base = 0, _rss_mib()
        top = base
        t0 = time.perf_counter()
        for _ in walk():
            count += 1
            if count % BATCH == 0:
                top = max(top, _rss_mib())
        seconds = time.perf_counter() - t0
        peak = -1.0
        if traced:
            tracemalloc.start()
            for _ in walk():
                pass
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
    out.put((count, seconds, top - base, peak))


def bench_read(backend: str, kind: str, url: str, expected: int, traced: bool) -> Result:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_read_child, args=(kind, url, traced, out))
    proc.start()
    count, seconds, rss, peak = out.get(timeout=900)
    proc.join()
    if count != expected:
        raise RuntimeError(
            f"{kind} read {count} events, expected {expected}: on PostgreSQL our readers stop "
            "below the oldest transaction still open anywhere on the server (another "
            "database's included); is a long or idle-in-transaction session running?")
    note = "rows only, no decode" if kind == "ours-rows" else "rows + decode"
    note += f"; RSS +{rss:.1f} MiB"
    if peak >= 0:
        note += f", tracemalloc peak {peak:.1f} MiB"
    return Result("read", backend, kind, count, seconds, note,
                  {"rss_mib": rss, "tracemalloc_mib": peak})


# ---------------------------------------------------------------------------- the run
def run_backend(backend: str, opts: Options, tmp: Path, results: list[Result]) -> None:
    dbs = Databases(opts.pg_url, tmp, prefix="cno_bench", backend=backend)
    try:
        if opts.sections & {"append", "writers"}:
            _run_appends(backend, opts, dbs, results)
        if "import" in opts.sections:
            _log(f"{backend}: import of {opts.import_events} lines")
            path = tmp / f"import-{opts.import_events}.jsonl"
            if not path.exists():
                write_jsonl(path, 7, opts.import_events, opts.generator)
            results.append(bench_import_api(dbs, path, opts.import_events))
            if opts.diagnostics:
                results.append(bench_import_api(dbs, path, opts.import_events, workers=0))
            results.append(bench_import_cli(dbs, path, opts.import_events))
        if "read" in opts.sections:
            _run_reads(backend, opts, dbs, results)
    finally:
        dbs.close()


def _run_appends(backend: str, opts: Options, dbs: Databases, results: list[Result]) -> None:
    # the writers section needs each system's database only once: one round for it alone
    rounds = opts.append_rounds if "append" in opts.sections else 1
    _log(f"{backend}: single appends ({opts.appends} events, {rounds} alternating "
         "round(s))")
    items = to_items(cohort_lines(1, opts.appends, opts.generator))
    kinds = ["ours", "core", ES]
    if backend == "postgresql" and opts.diagnostics:
        kinds.insert(1, "ours-noping")
    urls: dict[str, str] = {}
    best: dict[str, Result] = {}
    for _ in range(rounds):
        for kind in kinds:
            urls[kind], result = bench_single(dbs, kind, items)
            best[kind] = faster(best.get(kind), result)
    if "append" in opts.sections:
        results.extend(best[kind] for kind in kinds)
    if backend == "postgresql" and opts.writers > 1 and "writers" in opts.sections:
        writing = ("ours", "core", ES)
        kept: dict[str, Result] = {}
        for round_ in range(opts.append_rounds):
            for kind in writing:
                _log(f"{backend}: {opts.writers} writers, {kind} (round {round_ + 1})")
                kept[kind] = faster(kept.get(kind), bench_writers(
                    backend, kind, urls[kind], opts.writers, opts.per_writer,
                    opts.generator, seed=1000 + round_ * opts.writers))
        results.extend(kept[kind] for kind in writing)


def _run_reads(backend: str, opts: Options, dbs: Databases, results: list[Result]) -> None:
    ours_url = dbs.fresh("read_ours")
    es_url = dbs.fresh("read_es", migrate=False)
    es_store(es_url).close()
    lines = cohort_lines(21, max(opts.read_sizes), opts.generator)
    versions: dict[str, int] = {}
    have = 0
    for size in sorted(opts.read_sizes):
        _log(f"{backend}: filling the logs to {size} events")
        while have < size:
            items = to_items(islice(lines, min(FILL_CHUNK, size - have)), versions)
            if not items:
                break
            fill_ours(ours_url, items)
            fill_es(es_url, items)
            have += len(items)
        _log(f"{backend}: reading {size} events ({opts.read_rounds} alternating rounds)")
        kinds = ["ours", "ours-rows", ES] if opts.diagnostics else ["ours", ES]
        best: dict[str, Result] = {}
        for round_ in range(opts.read_rounds):
            for kind in kinds:
                url = es_url if kind == ES else ours_url
                traced = opts.traced and kind != "ours-rows" and round_ == 0
                best[kind] = faster(best.get(kind),
                                     bench_read(backend, kind, url, have, traced))
        results.extend(best[kind] for kind in kinds)


# ---------------------------------------------------------------------------- report
def _find(results: list[Result], section: str, backend: str, system: str,
          events: int | None = None) -> Result | None:
    for r in results:
        if (r.section, r.backend, r.system) == (section, backend, system) and (
                events is None or r.events == events):
            return r
    return None


#: single append, ours / eventsourcing, per database (issue 14's table)
APPEND_X1_VS_ES = {"sqlite": 1.0, "postgresql": 1.3}
#: events/s of each import path (issue 14: in-process 40,000, through the CLI 30,000)
IMPORT_RATE = {"import_lines": 40_000, "cli": 30_000}
#: seconds of ``cno-tracker --help``
STARTUP_SECONDS = 0.2


def targets(results: list[Result], opts: Options,
            startup: float | None = None) -> list[tuple[str, str, str, bool]]:
    """(what, measured, required, met) for every target the run can judge."""
    out: list[tuple[str, str, str, bool]] = []
    if startup is not None:
        out.append(("CLI start-up (cno-tracker --help)", f"{startup:.2f} s",
                    f"<= {STARTUP_SECONDS} s", startup <= STARTUP_SECONDS))

    def ratio(what: str, a: Result | None, b: Result | None, need: float) -> None:
        if a and b and b.rate:
            r = a.rate / b.rate
            out.append((what, f"{r:.2f}x", f">= {need}x", r >= need))

    for be in opts.backends:
        ours = _find(results, "append x1", be, "ours")
        ratio(f"{be}: append x1, ours / eventsourcing", ours,
              _find(results, "append x1", be, ES), APPEND_X1_VS_ES.get(be, 1.3))
        ratio(f"{be}: append x1, ours / plain Core", ours,
              _find(results, "append x1", be, "core"), 0.8)
        sec = f"append x{opts.writers}"
        ratio(f"{be}: {sec}, ours / eventsourcing", _find(results, sec, be, "ours"),
              _find(results, sec, be, ES), 2.0)
        for system in ("import_lines", "cli"):
            r = _find(results, "import", be, system)
            if r:
                need = IMPORT_RATE[system]
                out.append((f"{be}: import, {system}", f"{r.rate:,.0f}/s", f">= {need:,}/s",
                            r.rate >= need))
        for size in sorted(opts.read_sizes):
            ratio(f"{be}: read+decode {size}, ours / eventsourcing",
                  _find(results, "read", be, "ours", size),
                  _find(results, "read", be, ES, size), 1.0)
        small = _find(results, "read", be, "ours", min(opts.read_sizes))
        large = _find(results, "read", be, "ours", max(opts.read_sizes))
        if small and large and small is not large:
            key = "tracemalloc_mib" if small.extra["tracemalloc_mib"] >= 0 else "rss_mib"
            a, b = small.extra[key], large.extra[key]
            out.append((f"{be}: read memory ({key[:-4]}), ours {small.events} -> "
                        f"{large.events}", f"{a:.1f} -> {b:.1f} MiB",
                        "flat (<= 1.25x + 4 MiB)", b <= 1.25 * a + 4))
    return out


def render(results: list[Result], opts: Options, wall: float,
           startup: float | None = None) -> str:
    head = f"{'section':<10} {'db':<10} {'system':<13} {'events':>8} {'seconds':>8} " \
           f"{'events/s':>10}  note"
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r.section:<10} {r.backend:<10} {r.system:<13} {r.events:>8} "
                     f"{r.seconds:>8.2f} {r.rate:>10,.0f}  {r.note}")
    lines += ["", f"{'target':<58} {'measured':>20} {'required':>24}  result", "-" * 112]
    for what, measured, need, ok in targets(results, opts, startup):
        lines.append(f"{what:<58} {measured:>20} {need:>24}  {'ok' if ok else 'MISS'}")
    lines.append(f"\nwhole run: {wall:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    opts, args = parse_args(argv)
    for be in opts.backends:
        if be not in ("sqlite", "postgresql"):
            raise SystemExit(f"unknown backend {be!r}: use sqlite and/or postgresql")
    load_before = _load()
    started = time.perf_counter()
    results: list[Result] = []
    tmp = Path(tempfile.mkdtemp(prefix="cno-bench-"))
    try:
        for be in opts.backends:
            run_backend(be, opts, tmp, results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wall = time.perf_counter() - started
    startup = min(cli_startup() for _ in range(3))  # best of three: start-up, not load
    print(f"CLI start-up (cno-tracker --help, best of 3): {startup:.2f} s")
    print(f"load average before / after: {load_before} / {_load()}")
    print(render(results, opts, wall, startup))
    if args.json:
        args.json.write_bytes(orjson.dumps({
            "options": {**opts.__dict__, "sections": sorted(opts.sections)},
            "results": [{**r.__dict__, "rate": r.rate} for r in results],
            "targets": [{"what": w, "measured": m, "required": n, "met": ok}
                        for w, m, n, ok in targets(results, opts, startup)],
            "seconds": wall,
        }, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
