"""Projections benchmark for CNO Tracker: run on demand, never collected as a test.

    .venv/bin/python -m bench.projections            # full run (about 10 minutes)
    .venv/bin/python -m bench.projections --quick    # smoke run (about 30 seconds)
    .venv/bin/python -m bench.projections --quick --profile   # and cProfile the misses

Measures, mainly on PostgreSQL (SQLite at a small size alongside):

1. the status of one patient with ~200 events, in-process: ``store.read_stream`` +
   ``evaluate`` + ``.as_json()``, median and p95 over many repetitions, split into read
   (SQL and rows), decode (pydantic, forced up front), fold (facts and projections) and JSON;
2. ``StatusProjector.rebuild()`` of the read model for a generated cohort (events/s end to
   end, RSS high-water over the process's baseline) at two sizes, each in a fresh process,
   and ``catch_up()`` from an empty checkpoint at the first size;
3. ``cno-tracker due --at DATE``: ``due_before`` + ``worklist`` in-process (median of many)
   and the whole CLI as a subprocess (wall, start-up included);
4. ``cno-tracker due --at PAST --json`` on PostgreSQL through the CLI, which replays every
   patient at that date (a process per core by default, and once with ``--workers 1`` at
   the largest size), at growing cohort sizes in a database of its own
   (``--replay-sizes``; ``--replay-only`` runs nothing else).

The cohort comes from ``tracker.synthetic`` (a smaller cohort is a prefix of a larger one with
the same seed), imported with ``import_lines``. The bench clock is fixed at the moment the run
starts, so the CLI (which uses the system clock) finds the read model current. PostgreSQL
databases are named ``cno_bench_proj_<pid>_<what>`` and dropped at the end; SQLite lives in a
temporary directory.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, delete, text

from bench.databases import Databases
from events.store import EventStore
from events.store.engine import make_engine
from tracker.clock import FixedClock, SystemClock
from tracker.importing import import_lines
from tracker.protocol import DEFAULT_PROTOCOL
from tracker.readmodel import (
    StatusProjector,
    due_before,
    due_items,
    patient_status,
    projector_checkpoints,
)
from tracker.status import evaluate
from tracker.synthetic import generate_cohort
from tracker.worklist import SOON_DAYS, worklist

ROOT = Path(__file__).resolve().parent.parent
UNTIL = date(2024, 12, 31)  # no generated event is later than this
LONG = "B0200-LONG"  # the one long-course patient of section 1 (a reference needs a digit)
IMPORT_CHUNK = 1000  # patients per import_lines call (one transaction each)
PROTOCOL = DEFAULT_PROTOCOL

TARGET_STATUS_MS = 5.0
TARGET_REBUILD_EPS = 30_000.0
TARGET_DUE_MS = 200.0
TARGET_REPLAY_S = 30.0
REPLAY_AT = date(2023, 6, 1)  # a past date with most of the cohort under follow-up


def _log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def _p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _rss_mib() -> float:
    """The current resident set size (Linux), else the peak so far."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _hwm_mib() -> float:
    """This process's RSS high-water mark. ``VmHWM`` belongs to the address space, so unlike
    ``ru_maxrss`` (which Linux carries over fork and exec) it is not the parent's peak."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------- results
@dataclass
class Row:
    section: str
    backend: str
    what: str
    value: str
    target: str = ""
    ok: bool | None = None
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    def add(self, *args: Any, **kwargs: Any) -> None:
        self.rows.append(Row(*args, **kwargs))

    def render(self, wall: float) -> str:
        head = ("section", "backend", "measure", "value", "target", "", "note")
        body = [(r.section, r.backend, r.what, r.value, r.target,
                 "" if r.ok is None else ("ok" if r.ok else "MISS"), r.note) for r in self.rows]
        widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head) - 1)]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) \
                + "  " + cells[-1]

        out = [line(head), line(["-" * w for w in widths] + ["-" * 4])]
        out += [line(b) for b in body]
        out.append(f"(whole run {wall:.0f} s)")
        return "\n".join([*out, *self.extra])


# ---------------------------------------------------------------------------- databases
# ---------------------------------------------------------------------------- the cohort
def cohort(patients: int, seed: int) -> list[list[bytes]]:
    """Import lines grouped per patient, in patient order (so a prefix is a smaller cohort)."""
    groups: list[list[bytes]] = []
    current = ""
    for line in generate_cohort(patients, seed, UNTIL):
        if line["patient"] != current:
            current = line["patient"]
            groups.append([])
        groups[-1].append(orjson.dumps(line))
    return groups


def long_patient(target: int, seed: int) -> list[bytes]:
    """One patient with ``target`` events: the longest course of a small cohort diagnosed
    from 2000 on, renamed, followed up by quarterly symptom-free visits with CRP and ESR."""
    by_patient: dict[str, list[dict[str, Any]]] = {}
    for line in generate_cohort(80, seed + 7919, UNTIL, start_year=2000):
        by_patient.setdefault(line["patient"], []).append(line)

    def room(lines: list[dict[str, Any]]) -> int:
        last = date.fromisoformat(lines[-1]["occurred_at"][:10])
        return len(lines) + 3 * ((UNTIL - last).days // 91)

    reachable = [v for v in by_patient.values() if room(v) >= target]
    lines = (max(reachable, key=len) if reachable
             else max(by_patient.values(), key=room))[:target]
    ref = lines[0]["patient"]
    out = [{**x, "patient": LONG, "idempotency_key": x["idempotency_key"].replace(ref, LONG)}
           for x in lines]
    visit = next(x["data"] for x in reversed(out) if x["type"] == "VisitRecorded")
    visit = {k: v for k, v in visit.items() if k not in ("active_lesions", "symptom_free_since")}
    visit.update(pain=False, swelling=False, functional_limitation=False,
                 physician_global_active=False, pain_score=0)
    day = date.fromisoformat(out[-1]["occurred_at"][:10])
    n = 0
    while len(out) < target:
        day += timedelta(days=91)
        if day > UNTIL:
            break
        extra: list[tuple[str, str, dict[str, Any]]] = [
            ("VisitRecorded", day.isoformat(), dict(visit)),
            ("LabResultRecorded", f"{day.isoformat()}T08:30:00+00:00",
             {"analyte": "crp", "value": 1.2, "unit": "mg/L"}),
            ("LabResultRecorded", f"{day.isoformat()}T08:30:00+00:00",
             {"analyte": "esr", "value": 9.0, "unit": "mm/h"}),
        ]
        for etype, when, data in extra[:target - len(out)]:
            n += 1
            out.append({"type": etype, "patient": LONG, "occurred_at": when,
                        "recorded_by": "bench", "idempotency_key": f"bench-long-{n}",
                        "data": data})
    return [orjson.dumps(x) for x in out]


def import_groups(url: str, groups: Sequence[list[bytes]], clock: FixedClock) -> tuple[int, float]:
    engine = make_engine(url)
    store = EventStore(engine)
    written, t0 = 0, time.perf_counter()
    try:
        for i in range(0, len(groups), IMPORT_CHUNK):
            lines = [x for g in groups[i:i + IMPORT_CHUNK] for x in g]
            written += import_lines(lines, store, clock=clock, protocol=PROTOCOL).written
    finally:
        engine.dispose()
    return written, time.perf_counter() - t0


# ---------------------------------------------------------------------------- 1. one status
@dataclass
class StatusTimes:
    events: int
    facts: int
    read: list[float]
    decode: list[float]
    fold: list[float]
    as_json: list[float]

    @property
    def total(self) -> list[float]:
        return [sum(x) for x in zip(self.read, self.decode, self.fold, self.as_json, strict=True)]


def status_once(store: EventStore, patient: str, at: date) -> tuple[float, float, float, float,
                                                                    int, int]:
    t0 = time.perf_counter()
    events = store.read_stream(patient)
    t1 = time.perf_counter()
    for e in events:
        e.data  # noqa: B018  (decode now: RecordedEvent.data is a cached property)
    t2 = time.perf_counter()
    ev = evaluate(patient, events, at=at, known_at=None, protocol=PROTOCOL)
    t3 = time.perf_counter()
    ev.as_json()
    t4 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, t4 - t3, len(events), len(ev.facts)


def bench_status(url: str, at: date, reps: int) -> StatusTimes:
    engine = make_engine(url)
    store = EventStore(engine)
    try:
        for _ in range(5):
            status_once(store, LONG, at)  # warm: pool, statement cache, imports
        samples = [status_once(store, LONG, at) for _ in range(reps)]
    finally:
        engine.dispose()
    return StatusTimes(samples[0][4], samples[0][5], [s[0] for s in samples],
                       [s[1] for s in samples], [s[2] for s in samples],
                       [s[3] for s in samples])


def report_status(report: Report, backend: str, t: StatusTimes) -> None:
    total = t.total
    med = _ms(statistics.median(total))
    report.add("1 status", backend, f"read+evaluate+as_json, {t.events} events (median)",
               f"{med:.2f} ms", f"<= {TARGET_STATUS_MS:g} ms", med <= TARGET_STATUS_MS,
               f"p95 {_ms(_p95(total)):.2f} ms over {len(total)} reps; {t.facts} facts")
    parts = [("read (SQL + rows)", t.read), ("decode (pydantic)", t.decode),
             ("fold (facts + projections + due)", t.fold), ("as_json", t.as_json)]
    for name, values in parts:
        m = _ms(statistics.median(values))
        report.add("1 status", backend, f"  {name}", f"{m:.2f} ms",
                   note=f"{100 * m / med:.0f}% of the median; p95 {_ms(_p95(values)):.2f} ms")


# ---------------------------------------------------------------------------- 2. rebuild
def _clear_read_model(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(delete(due_items))
        conn.execute(delete(patient_status))
        conn.execute(delete(projector_checkpoints))


def child_main(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: run one projector operation, timed, with its memory."""
    engine = make_engine(spec["url"])
    store = EventStore(engine)
    clock = FixedClock(datetime.fromisoformat(spec["clock"]))
    projector = StatusProjector(store, PROTOCOL, clock)
    events = store.count()
    patients = len(store.streams())
    if spec["op"] == "catch_up":
        _clear_read_model(engine)
    base = _rss_mib()
    top = [base]

    def progress(_n: int) -> None:
        top[0] = max(top[0], _rss_mib())

    prof = cProfile.Profile() if spec.get("profile") else None
    t0 = time.perf_counter()
    if prof is not None:
        prof.enable()
    rep = (projector.rebuild(progress=progress, workers=spec.get("workers", 1))
           if spec["op"] == "rebuild" else projector.catch_up(progress=progress))
    if prof is not None:
        prof.disable()
    seconds = time.perf_counter() - t0
    out: dict[str, Any] = {
        "events": events, "patients": patients, "seconds": seconds,
        "folded_patients": rep.patients, "base_mib": base, "sampled_peak_mib": top[0],
        "hwm_mib": _hwm_mib()}
    if prof is not None:
        out["profile"] = profile_text(prof, seconds)
    engine.dispose()
    return out


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "bench.projections", "--child",
                           json.dumps(spec)], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec['op']} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def report_projector(report: Report, backend: str, op: str, r: dict[str, Any],
                     target: bool) -> float:
    eps = r["events"] / r["seconds"]
    grow = max(r["sampled_peak_mib"], r["hwm_mib"]) - r["base_mib"]
    ok = eps >= TARGET_REBUILD_EPS if target else None
    report.add("2 projector", backend, f"{op}, {r['patients']} patients, {r['events']} events",
               f"{eps:,.0f} ev/s", f">= {TARGET_REBUILD_EPS:,.0f} ev/s" if target else "", ok,
               f"{r['seconds']:.1f} s; RSS high-water {r['hwm_mib']:.0f} MiB "
               f"(+{grow:.0f} over {r['base_mib']:.0f} MiB baseline)")
    return eps


# ---------------------------------------------------------------------------- 3. due
LOOKBACK = PROTOCOL.alert_lookback_days


def bench_due(url: str, at: date, reps: int) -> tuple[list[float], list[float], int, int]:
    engine = make_engine(url)
    query: list[float] = []
    fold: list[float] = []
    rows: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    try:
        for i in range(reps + 2):
            t0 = time.perf_counter()
            with engine.connect() as conn:  # exactly what `cno-tracker due` runs
                rows = due_before(conn, at + timedelta(days=SOON_DAYS), with_causes=False,
                                  news_since=at - timedelta(days=LOOKBACK))
            t1 = time.perf_counter()
            items = worklist(rows, at, soon_days=SOON_DAYS, lookback_days=LOOKBACK)
            t2 = time.perf_counter()
            if i >= 2:  # the first two warm the pool and the statement cache
                query.append(t1 - t0)
                fold.append(t2 - t1)
    finally:
        engine.dispose()
    return query, fold, len(rows), len(items)


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("cno-tracker")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tracker.cli.main"]


def bench_due_cli(url: str, at: date, runs: int) -> tuple[list[float], list[float], int]:
    env = {**os.environ, "CNO_TRACKER_DATABASE_URL": url}
    walls: list[float] = []
    starts: list[float] = []
    count = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run([*_cli(), "due", "--at", at.isoformat(), "--json"], env=env,
                              capture_output=True, check=False)
        walls.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"cno-tracker due failed: {proc.stderr.decode()}")
        listing = orjson.loads(proc.stdout)
        count = len(listing["items"] if isinstance(listing, dict) else listing)
        t0 = time.perf_counter()
        subprocess.run([*_cli(), "--help"], env=env, capture_output=True, check=True)
        starts.append(time.perf_counter() - t0)
    return walls, starts, count


def run_due(report: Report, backend: str, url: str, at: date, reps: int, cli_runs: int,
            size: int) -> None:
    query, fold, nrows, nitems = bench_due(url, at, reps)
    total = [a + b for a, b in zip(query, fold, strict=True)]
    med = _ms(statistics.median(total))
    report.add("3 due", backend, f"due_before+worklist in-process, {size} patients (median)",
               f"{med:.1f} ms", f"<= {TARGET_DUE_MS:g} ms", med <= TARGET_DUE_MS,
               f"p95 {_ms(_p95(total)):.1f} ms over {len(total)}; {nrows} rows -> "
               f"{nitems} items; SQL+rows {_ms(statistics.median(query)):.1f} ms, "
               f"worklist {_ms(statistics.median(fold)):.1f} ms")
    if cli_runs <= 0:
        return
    # the CLI catches up with the system clock first: make the read model current for it
    engine = make_engine(url)
    t0 = time.perf_counter()
    rep = StatusProjector(EventStore(engine), PROTOCOL, SystemClock()).catch_up()
    warm = time.perf_counter() - t0
    with engine.connect() as conn:
        daily = conn.execute(text("SELECT count(*) FROM patient_status "
                                  "WHERE next_check_on IS NOT NULL")).scalar_one()
    engine.dispose()
    walls, starts, count = bench_due_cli(url, at, cli_runs)
    wall, start = statistics.median(walls), statistics.median(starts)
    report.add("3 due", backend, f"`cno-tracker due --at {at} --json` wall (median)",
               f"{_ms(wall):.0f} ms", "", None,
               f"{count} items; `cno-tracker --help` alone {_ms(start):.0f} ms; "
               f"{len(walls)} runs")
    report.add("3 due", backend, "  catch_up the CLI would run first today", f"{_ms(warm):.0f} ms",
               note=f"re-checked {rep.rechecked}; the first `due` of each new day re-evaluates "
                    f"{daily} of {size} patients (next_check_on set)")


# ---------------------------------------------------------------------------- 4. replay
def due_replay_cli(url: str, at: date, workers: int | None) -> tuple[float, int, str]:
    """One ``cno-tracker due --at AT`` (a past date: a replay) as a subprocess."""
    env = {**os.environ, "CNO_TRACKER_DATABASE_URL": url}
    extra = ["--workers", str(workers)] if workers else []
    t0 = time.perf_counter()
    proc = subprocess.run([*_cli(), "due", "--at", at.isoformat(), *extra], env=env,
                          capture_output=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"cno-tracker due --at failed: {proc.stderr.decode()}")
    lines = proc.stdout.decode().splitlines()
    return wall, len(lines) - 1, lines[0]


def run_replay(report: Report, dbs: Databases, groups: list[list[bytes]], sizes: list[int],
               clock: FixedClock) -> None:
    url = dbs.fresh("replay", backend="postgresql")
    cores = os.cpu_count() or 1
    done, events = 0, 0
    for size in sizes:
        _log(f"postgresql: replay, importing up to {size} patients")
        n, _secs = import_groups(url, groups[done:size], clock)
        done, events = size, events + n
        _log(f"postgresql: due --at {REPLAY_AT} over {size} patients")
        wall, items, header = due_replay_cli(url, REPLAY_AT, None)
        report.add("4 replay", "postgresql",
                   f"`cno-tracker due --at {REPLAY_AT}`, {size} patients (default: "
                   f"{cores} cores)",
                   f"{wall:.1f} s", f"<= {TARGET_REPLAY_S:g} s" if size >= 10_000 else "",
                   wall <= TARGET_REPLAY_S if size >= 10_000 else None,
                   f"{events:,} events, {events / wall:,.0f} events/s end to end; "
                   f"{items} lines; header: {header}")
    if sizes:
        _log(f"postgresql: due --at {REPLAY_AT} over {done} patients, one process")
        wall, items, _header = due_replay_cli(url, REPLAY_AT, 1)
        report.add("4 replay", "postgresql",
                   f"`cno-tracker due --at {REPLAY_AT} --workers 1`, {done} patients",
                   f"{wall:.1f} s", note=f"{events / wall:,.0f} events/s; {items} lines")


# ---------------------------------------------------------------------------- profiling
# (file suffix, function) -> label: cumulative time of the calls that matter
BUCKETS = (
    ("tracker/readmodel.py", "_tail", "readmodel._tail (full log scan for the tail)"),
    ("events/store/sql.py", "read_streams", "store.read_streams (SQL + rows)"),
    ("events/store/sql.py", "read_stream", "store.read_stream (SQL + rows)"),
    ("events/store/sql.py", "_row_to_event", "  RecordedEvent(*row) (incl. the _tail scan)"),
    ("events/store/types.py", "process_result_value",
     "  UTCDateTime.process_result_value (incl. _tail)"),
    ("events/envelope.py", "decode_data", "decode_data (pydantic validate_json)"),
    ("tracker/status.py", "evaluate", "status.evaluate (incl. decode)"),
    ("tracker/facts.py", "facts", "  facts() (incl. decode)"),
    ("tracker/projections/course.py", "disease_course", "  disease_course"),
    ("tracker/projections/diagnosis.py", "diagnosis", "  diagnosis"),
    ("tracker/projections/treatment.py", "treatment", "  treatment"),
    ("tracker/projections/pamidronate.py", "pamidronate_exposure", "  pamidronate_exposure"),
    ("tracker/projections/monitoring.py", "monitoring", "  monitoring"),
    ("tracker/due.py", "due_items", "  due_items"),
    ("tracker/due.py", "next_check_on", "  next_check_on"),
    ("dataclasses.py", "replace", "dataclasses.replace (all folds)"),
    ("functools.py", "wrapper", "per-event handlers via singledispatch (incl. bodies)"),
    ("functools.py", "dispatch", "  singledispatch type lookup alone"),
    ("tracker/status.py", "as_json", "Evaluation.as_json"),
    ("tracker/readmodel.py", "_write", "readmodel._write (DELETE + INSERT)"),
)


def profile_text(prof: cProfile.Profile, wall: float) -> str:
    stats = pstats.Stats(prof)
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in table.values())
    lines = [f"{total:.2f} s of own time in {wall:.2f} s under the profiler (cProfile slows "
             "call-heavy code: compare shares, not seconds, with the table)",
             "cumulative time by component (nested rows are part of the row above):"]
    for suffix, name, label in BUCKETS:
        hits = [v for k, v in table.items() if k[0].endswith(suffix) and k[2] == name]
        if hits:
            cum = sum(v[3] for v in hits)
            calls = sum(v[1] for v in hits)
            lines.append(f"  {label:<52} {cum:7.2f} s {100 * cum / total:5.1f}%  "
                         f"{calls:>9} calls")
    frac = sum(v[2] for k, v in table.items() if k[0].endswith("fractions.py"))
    lines.append(f"  {'fractions.Fraction (own time)':<52} {frac:7.2f} s "
                 f"{100 * frac / total:5.1f}%")
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
    body = [x for x in buf.getvalue().splitlines() if x.strip()]
    start = next((i for i, x in enumerate(body) if x.lstrip().startswith("ncalls")), 0)
    lines.append("top functions by own time:")
    lines += ["  " + x.replace(str(ROOT) + "/", "") for x in body[start:]]
    return "\n".join(lines)


def profile_status(url: str, at: date, reps: int) -> str:
    engine = make_engine(url)
    store = EventStore(engine)
    status_once(store, LONG, at)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for _ in range(reps):
        events = store.read_stream(LONG)
        evaluate(LONG, events, at=at, known_at=None, protocol=PROTOCOL).as_json()
    prof.disable()
    wall = time.perf_counter() - t0
    engine.dispose()
    return profile_text(prof, wall)


# ---------------------------------------------------------------------------- the run
@dataclass
class Options:
    backends: list[str]
    pg_url: str
    patients: int
    large: int
    sqlite_patients: int
    long_events: int
    reps: int
    due_reps: int
    cli_runs: int
    catch_up: bool
    profile: bool
    seed: int
    due_at: date | None
    replay_sizes: list[int]
    replay_only: bool


def parse_args(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench.projections", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, about 30 seconds")
    p.add_argument("--backends", default="postgresql,sqlite")
    p.add_argument("--pg-url", default=os.environ.get(
        "CNO_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--patients", type=int, help="first size (default 10000; quick 300)")
    p.add_argument("--large", type=int,
                   help="second, larger size for the rebuild (default 16000; quick 600; "
                        "0 to skip)")
    p.add_argument("--sqlite-patients", type=int, help="SQLite size (default 2000; quick 150)")
    p.add_argument("--long-events", type=int, default=200,
                   help="events of the section-1 patient")
    p.add_argument("--reps", type=int, help="section-1 repetitions (default 300; quick 200)")
    p.add_argument("--due-reps", type=int, help="in-process due repetitions (default 30)")
    p.add_argument("--cli-runs", type=int, help="CLI due runs (default 5; quick 2)")
    p.add_argument("--no-catch-up", action="store_true", help="skip catch_up from empty")
    p.add_argument("--profile", action="store_true",
                   help="cProfile section 1 and the first-size rebuild (one more rebuild)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--due-at", type=date.fromisoformat, default=None,
                   help="the DATE of section 3 (default: today, the bench clock's date)")
    p.add_argument("--replay-sizes", default=None,
                   help="cohort sizes of section 4, comma-separated (default 2000,5000,10000; "
                        "quick 100,300; empty to skip)")
    p.add_argument("--replay-only", action="store_true", help="run section 4 alone")
    a = p.parse_args(argv)
    q = a.quick
    sizes_text = a.replay_sizes if a.replay_sizes is not None else (
        "100,300" if q else "2000,5000,10000")
    replay_sizes = sorted(int(x) for x in sizes_text.split(",") if x.strip())

    def pick(value: int | None, full: int, quick: int) -> int:
        return value if value is not None else (quick if q else full)

    backends = [b.strip() for b in a.backends.split(",") if b.strip()]
    for b in backends:
        if b not in ("sqlite", "postgresql"):
            raise SystemExit(f"unknown backend {b!r}: use sqlite and/or postgresql")
    patients = pick(a.patients, 10_000, 300)
    large = pick(a.large, 16_000, 600)
    if large and large <= patients:
        raise SystemExit("--large must be more than --patients (or 0)")
    return Options(backends, a.pg_url, patients, large, pick(a.sqlite_patients, 2000, 150),
                   a.long_events, pick(a.reps, 300, 200), pick(a.due_reps, 30, 20),
                   pick(a.cli_runs, 5, 2), not a.no_catch_up, a.profile, a.seed, a.due_at,
                   replay_sizes, a.replay_only)


def run_backend(backend: str, opts: Options, groups: list[list[bytes]], long: list[bytes],
                dbs: Databases, clock: FixedClock, report: Report) -> None:
    pg = backend == "postgresql"
    first = opts.patients if pg else min(opts.sqlite_patients, len(groups))
    url = dbs.fresh("main", backend=backend)
    today = clock.now().astimezone(PROTOCOL.zone).date()
    due_at = opts.due_at or today

    _log(f"{backend}: importing {first} patients + {LONG}")
    n, secs = import_groups(url, [long, *groups[:first]], clock)
    report.add("0 setup", backend, f"import_lines, {first} patients + 1",
               f"{n / secs:,.0f} ev/s", note=f"{n} events in {secs:.1f} s (setup, not a target)")

    _log(f"{backend}: status of {LONG}, {opts.reps} reps")
    report_status(report, backend, bench_status(url, today, opts.reps))

    _log(f"{backend}: rebuild at {first} patients")
    spec = {"url": url, "clock": clock.now().isoformat()}
    report_projector(report, backend, "rebuild", run_child({**spec, "op": "rebuild"}), True)
    if pg:  # what `cno-tracker projections rebuild` does by default: a process per core
        cores = os.cpu_count() or 1
        report_projector(report, backend, f"rebuild, {cores} worker processes",
                         run_child({**spec, "op": "rebuild", "workers": cores}), True)
    if opts.catch_up:
        _log(f"{backend}: catch_up from an empty checkpoint")
        report_projector(report, backend, "catch_up from empty",
                         run_child({**spec, "op": "catch_up"}), False)

    _log(f"{backend}: due")
    run_due(report, backend, url, due_at, opts.due_reps, opts.cli_runs if pg else 0, first + 1)

    if opts.profile and pg:
        _log(f"{backend}: profiling section 1 and the rebuild")
        report.extra += ["", f"== profile: section 1, {opts.reps} x status of {LONG} "
                         f"({backend})", profile_status(url, today, opts.reps)]
        prof = run_child({**spec, "op": "rebuild", "profile": True})
        report.extra += ["", f"== profile: rebuild, {first} patients ({backend})",
                         prof["profile"]]

    if pg and opts.large:
        _log(f"{backend}: importing up to {opts.large} patients")
        n, secs = import_groups(url, groups[first:opts.large], clock)
        report.add("0 setup", backend, f"import_lines, +{opts.large - first} patients",
                   f"{n / secs:,.0f} ev/s", note=f"{n} events in {secs:.1f} s")
        _log(f"{backend}: rebuild at {opts.large} patients")
        report_projector(report, backend, "rebuild", run_child({**spec, "op": "rebuild"}), True)
        cores = os.cpu_count() or 1
        report_projector(report, backend, f"rebuild, {cores} worker processes",
                         run_child({**spec, "op": "rebuild", "workers": cores}), True)
        query, fold, nrows, nitems = bench_due(url, due_at, opts.due_reps)
        med = _ms(statistics.median([a + b for a, b in zip(query, fold, strict=True)]))
        report.add("3 due", backend, f"due_before+worklist in-process, {opts.large + 1} "
                   "patients (median)", f"{med:.1f} ms", f"<= {TARGET_DUE_MS:g} ms",
                   med <= TARGET_DUE_MS, f"{nrows} rows -> {nitems} items")


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child_main(json.loads(sys.argv[2]))))
        return 0
    opts = parse_args(argv)
    wall0 = time.perf_counter()
    clock = FixedClock(datetime.now(UTC).replace(microsecond=0))
    size = max(0 if opts.replay_only else max(
        opts.large, opts.patients, opts.sqlite_patients if "sqlite" in opts.backends else 0),
        *opts.replay_sizes, 1)
    _log(f"generating {size} patients (seed {opts.seed}) and a {opts.long_events}-event patient")
    t0 = time.perf_counter()
    groups = cohort(size, opts.seed)
    long = long_patient(opts.long_events, opts.seed)
    gen = time.perf_counter() - t0
    report = Report()
    report.add("0 setup", "-", f"generate_cohort, {size} patients",
               f"{sum(map(len, groups)):,} lines",
               note=f"{sum(map(len, groups)) / len(groups):.1f} events/patient; {gen:.1f} s")
    tmp = Path(tempfile.mkdtemp(prefix="cno_bench_proj_"))
    dbs = Databases(opts.pg_url, tmp, prefix="cno_bench_proj")
    try:
        for backend in [] if opts.replay_only else opts.backends:
            run_backend(backend, opts, groups, long, dbs, clock, report)
        if "postgresql" in opts.backends:
            run_replay(report, dbs, groups, opts.replay_sizes, clock)
    finally:
        dbs.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(report.render(time.perf_counter() - wall0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
