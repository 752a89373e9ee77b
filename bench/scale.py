"""Scale benchmark for CNO Tracker: run on demand, never collected as a test.

    .venv/bin/python -m bench.scale                   # 10,000 and 100,000 patients (~25 min)
    .venv/bin/python -m bench.scale --quick           # 500 and 2,000 patients (~3 min)
    .venv/bin/python -m bench.scale --sizes 10000     # one size, no growth column

On PostgreSQL, for each size a fresh database is filled with a cohort made by
``tracker.synthetic`` (about 62 events a patient) and then timed:

1. **import**: ``import_lines`` in chunks of whole patients (~50,000 lines a transaction);
2. **rebuild**: ``StatusProjector.rebuild`` of the read model, a process per core;
3. **due**: ``cno-tracker due`` through the CLI (the present, from the read model; wall
   time with interpreter start-up, median of 3);
4. **worker cycle**: ``AlertWorker.run_once`` with nothing new (median of 3), and after
   1,000 new events (one visit each for 1,000 patients);
5. **status**: ``cno-tracker status REF --json`` through the CLI (median of 3) and the
   in-process read + fold of one patient (median of 20);
6. **web**: ``cno-tracker web`` as its own process; 10 logged-in clients send a mix of ward
   list (``/``) and patient pages (``/patients/REF``), ``--web-requests`` in all.

Per-event and per-patient costs are printed beside each figure, and with two sizes a
``growth`` column gives how the per-unit cost moved from the first size to the last
(1.00 = flat).

Then, at the largest size, **shared**: 3 ``cno-tracker worker`` processes (the local
Twilio-compatible and SMTP servers of the test suite stand in for the providers) and 2
``cno-tracker web`` processes over the same database. 1,000 urgent results (ionized calcium
0.9 mmol/L, one per patient) are imported while the web clients, split across both web
processes, keep asking for pages. Timed: from the import's commit to the last delivery
sent, and web requests/s beside the single-process figure. Checked: exactly one alert per
patient and one ``AlertSent`` per delivery (nothing duplicated by the extra processes).

Every database is called ``cno_bench_scale_<pid>_<what>`` and is dropped at the end, even
after a failure or SIGTERM. The machine's 2 cores are shared by PostgreSQL, the processes
under test and this driver: figures are a floor for a dedicated machine.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
from argon2 import PasswordHasher
from sqlalchemy import text

from bench.databases import Databases
from bench.web import PASSWORD, login, p95, start_web, stop_web
from bench.worker import import_cohort, settle, timed, visit_lines
from events.store import EventStore
from events.store.engine import make_engine
from tracker.accounts import Accounts
from tracker.clock import FixedClock, SystemClock
from tracker.importing import import_lines
from tracker.protocol import DEFAULT_PROTOCOL
from tracker.readmodel import StatusProjector
from tracker.status import evaluate

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("cno-tracker"))
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
CLIENTS = 10


def log(message: str) -> None:
    print(f"[bench.scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Figure:
    """One measurement at one size: ``seconds`` for ``units`` of work (events, patients,
    requests) — so the per-unit cost can be compared across sizes."""

    what: str
    seconds: float
    units: int
    unit: str
    note: str = ""

    @property
    def per_unit_us(self) -> float:
        return self.seconds / max(1, self.units) * 1e6


def median_of(n: int, fn: object) -> float:
    assert callable(fn)
    return statistics.median(timed(fn)[0] for _ in range(n))


def cli(url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNO_TRACKER_")}
    env["CNO_TRACKER_DATABASE_URL"] = url
    done = subprocess.run([CLI, *args], env=env, capture_output=True, timeout=600)
    if done.returncode not in (0, 1):  # due/status exit 1 when something is overdue
        raise SystemExit(f"cno-tracker {' '.join(args)}: exit {done.returncode}\n"
                         f"{done.stderr.decode(errors='replace')[-2000:]}")
    return done


# ----------------------------------------------------------------- the web side
def web_load(bases: list[str], refs: list[str], requests: int) -> dict[str, object]:
    """``CLIENTS`` clients spread over ``bases``, half ward list, half patient pages over a
    pool of 40 patients; p95 per page, requests/s, non-200 answers."""
    pool = refs[:40]
    sessions = [login(bases[i % len(bases)], f"scale{i:02d}") for i in range(CLIENTS)]
    times: dict[str, list[float]] = {"ward": [], "patient": []}
    lock = threading.Lock()
    state = {"n": 0, "errors": 0}

    def client(session: httpx.Client, seed: int) -> None:
        rnd = random.Random(seed)
        while True:
            with lock:
                if state["n"] >= requests:
                    return
                state["n"] += 1
            kind = "ward" if rnd.random() < 0.5 else "patient"
            path = "/" if kind == "ward" else f"/patients/{rnd.choice(pool)}"
            t0 = time.perf_counter()
            status = session.get(path).status_code
            spent = time.perf_counter() - t0
            with lock:
                times[kind].append(spent)
                state["errors"] += status != 200

    threads = [threading.Thread(target=client, args=(s, i)) for i, s in enumerate(sessions)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for s in sessions:
        s.close()
    return {"times": times, "rate": state["n"] / elapsed, "errors": state["errors"],
            "requests": state["n"]}


def make_accounts(url: str) -> None:
    engine = make_engine(url)
    store = EventStore(engine)
    accounts = Accounts(engine, store, SystemClock(), hasher=PasswordHasher())
    for i in range(CLIENTS):
        accounts.add(f"scale{i:02d}", "clinician", PASSWORD, by="bench")
    engine.dispose()


# ----------------------------------------------------------------- one size
def measure(dbs: Databases, patients: int, web_requests: int, tmp: Path
            ) -> tuple[list[Figure], str, list[str]]:
    from alerts.channels.console import FileChannel
    from alerts.roster import load_roster
    from alerts.worker import AlertWorker

    figures: list[Figure] = []
    url = dbs.fresh(f"s{patients}")
    engine = make_engine(url)
    store = EventStore(engine)
    now = datetime.now(UTC).replace(microsecond=0)
    clock = FixedClock(now)
    today = now.astimezone(DEFAULT_PROTOCOL.zone).date()
    log(f"{patients:,} patients: generating and importing")
    events, seconds = import_cohort(store, clock, patients, today - timedelta(days=1))
    figures.append(Figure("import (in-process, ~50k lines a transaction)", seconds, events,
                          "event"))
    store.analyze()
    settle(store)
    refs = sorted(store.patient_streams())
    log(f"{patients:,} patients: rebuilding the read model")
    projector = StatusProjector(store, DEFAULT_PROTOCOL, clock, workers=os.cpu_count() or 1)
    seconds, rebuilt = timed(lambda: projector.rebuild(workers=os.cpu_count() or 1))
    projector.close()
    figures.append(Figure("read-model rebuild (a process per core)", seconds, rebuilt.events,
                          "event"))
    log(f"{patients:,} patients: due, status, worker")
    cli(url, "due")  # the first run warms the server's caches
    figures.append(Figure("`cno-tracker due` (CLI wall, median of 3)",
                          median_of(3, lambda: cli(url, "due")), patients, "patient"))
    ref = refs[len(refs) // 2]
    figures.append(Figure("`cno-tracker status REF --json` (CLI wall, median of 3)",
                          median_of(3, lambda: cli(url, "status", ref, "--json")), 1,
                          "patient"))
    figures.append(Figure("status in-process: read + fold one patient (median of 20)",
                          median_of(20, lambda: evaluate(ref, store.read_stream(ref), at=today,
                                                         known_at=None,
                                                         protocol=DEFAULT_PROTOCOL)),
                          1, "patient"))
    worker = AlertWorker(store, DEFAULT_PROTOCOL, clock,
                         {"file": FileChannel(tmp / f"alerts-{patients}.jsonl")},
                         load_roster(REPO / "examples" / "roster.toml"),
                         worker_id=f"scale-{patients}")
    worker.start()
    try:
        worker.run_once()  # raises and files whatever is due today
        def quiet() -> None:
            clock.advance(timedelta(seconds=30))
            worker.run_once()
        figures.append(Figure("worker cycle, nothing new (median of 3)", median_of(3, quiet),
                              patients, "patient"))
        clock.advance(timedelta(minutes=5))
        import_lines(visit_lines(refs[:1000], 1, clock.now()), store, clock=clock,
                     protocol=DEFAULT_PROTOCOL)
        settle(store)
        seconds, report = timed(worker.run_once)
        assert report.catch_up is not None
        figures.append(Figure("worker cycle after 1,000 new events (1 each, 1,000 patients)",
                              seconds, patients, "patient",
                              f"folded {report.catch_up.patients:,} patients"))
    finally:
        worker.close()
    make_accounts(url)
    proc, base = start_web(url)
    try:
        web_load([base], refs, max(50, web_requests // 10))  # warm-up
        result = web_load([base], refs, web_requests)
    finally:
        stop_web(proc)
    times: dict[str, list[float]] = result["times"]  # type: ignore[assignment]
    rate: float = result["rate"]  # type: ignore[assignment]
    for kind in ("ward", "patient"):
        values = times[kind]
        figures.append(Figure(f"web {kind} page p95 ({len(values):,} requests, "
                              f"{CLIENTS} clients)", p95(values), 1, "request"))
    figures.append(Figure("web throughput (1 process)", 1 / rate, 1, "request",
                          f"{rate:.1f} requests/s, {result['errors']} not 200"))
    engine.dispose()
    return figures, url, refs


# ----------------------------------------------------------------- shared processes
def shared(url: str, refs: list[str], web_requests: int, single_rate: float, tmp: Path
           ) -> list[str]:
    from tests.support.processes import WorkerProcess, stop_all, wait_until, worker_env
    from tests.support.smtp_server import SmtpTestServer
    from tests.support.twilio_server import TwilioTestServer

    engine = make_engine(url)
    store = EventStore(engine)
    clock = SystemClock()
    chosen = refs[-1000:]
    lines = [orjson.dumps({
        "type": "LabResultRecorded", "patient": p, "recorded_by": "bench",
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=10)).isoformat(),
        "data": {"analyte": "ionized_calcium", "value": 0.9, "unit": "mmol/L"}})
        for p in chosen]
    out: list[str] = []
    webs = [start_web(url) for _ in range(2)]
    with TwilioTestServer() as twilio, SmtpTestServer() as smtp:
        env = worker_env(url, roster_file=REPO / "examples" / "roster.toml", twilio=twilio,
                         smtp=smtp)
        workers = [WorkerProcess(f"scale-w{i}", env, tmp / f"scale-w{i}.log", poll_seconds=0.5)
                   for i in range(3)]
        try:
            for w in workers:
                w.start()
            for w in workers:
                w.wait_started(120)
            log("shared: 3 workers and 2 web processes up; importing 1,000 urgent results")
            loaded: dict[str, object] = {}
            load = threading.Thread(target=lambda: loaded.update(
                web_load([b for _, b in webs], refs, web_requests)))
            load.start()
            import_lines(lines, store, clock=clock, protocol=DEFAULT_PROTOCOL)
            committed = time.perf_counter()

            def delivered() -> bool:
                with engine.connect() as conn:
                    left = conn.execute(text(
                        "SELECT count(*) FROM alert_deliveries d JOIN alerts a "
                        "ON a.alert_id = d.alert_id WHERE a.kind = 'hypocalcaemia' "
                        "AND d.status IN ('pending', 'sending')")).scalar()
                    raised = conn.execute(text(
                        "SELECT count(DISTINCT patient) FROM alerts "
                        "WHERE kind = 'hypocalcaemia'")).scalar()
                return (raised or 0) >= len(chosen) and left == 0
            wait_until(delivered, 900, "every urgent delivery sent", interval=0.5)
            spent = time.perf_counter() - committed
            load.join()
        finally:
            stop_all(workers)
            for proc, _ in webs:
                stop_web(proc)
    with engine.connect() as conn:
        per_patient = Counter(n for (n,) in conn.execute(text(
            "SELECT count(*) FROM alerts WHERE kind = 'hypocalcaemia' GROUP BY patient")))
        per_delivery = Counter(n for (n,) in conn.execute(text(
            "SELECT count(e.event_id) FROM alert_deliveries d JOIN alerts a "
            "ON a.alert_id = d.alert_id LEFT JOIN events e ON e.stream = 'alert:' || d.alert_id "
            "AND e.type = 'AlertSent' AND (e.data::jsonb)->>'recipient' = d.recipient "
            "AND (e.data::jsonb)->>'channel' = d.channel "
            "WHERE a.kind = 'hypocalcaemia' GROUP BY d.delivery_id")))
        by_worker = Counter({w: n for w, n in conn.execute(text(
            "SELECT split_part(recorded_by, ':', 2), count(*) FROM events "
            "WHERE type = 'AlertSent' GROUP BY 1"))})
    engine.dispose()
    once = per_patient == Counter({1: len(chosen)}) and set(per_delivery) == {1}
    rate: float = loaded["rate"]  # type: ignore[assignment]
    times: dict[str, list[float]] = loaded["times"]  # type: ignore[assignment]
    out.append(f"| 1,000 urgent results → every delivery sent (3 workers) | {spent:.1f} s | "
               f"{'nothing duplicated' if once else 'DUPLICATED'}: alerts per patient "
               f"{dict(per_patient)}, AlertSent per delivery {dict(per_delivery)}, "
               f"sent per worker {dict(sorted(by_worker.items()))} |")
    out.append(f"| web throughput, 2 processes, during the above | {rate:.1f} requests/s | "
               f"1 process alone: {single_rate:.1f} requests/s; ward p95 "
               f"{p95(times['ward']) * 1000:.0f} ms, patient p95 "
               f"{p95(times['patient']) * 1000:.0f} ms; {loaded['errors']} not 200 |")
    return out


# ----------------------------------------------------------------- report
def value(f: Figure) -> str:
    if f.unit == "event":
        return f"{f.seconds:,.1f} s ({f.units / f.seconds:,.0f} events/s)"
    if f.what.startswith("web throughput"):
        return f.note
    text_ = f"{f.seconds * 1000:,.0f} ms" if f.seconds < 10 else f"{f.seconds:,.1f} s"
    if f.units > 1:
        text_ += f" ({f.per_unit_us:,.1f} µs/{f.unit})"
    return text_ + (f"; {f.note}" if f.note else "")


def print_table(sizes: list[int], results: list[list[Figure]]) -> None:
    head = " | ".join(f"{n:,} patients" for n in sizes)
    growth = len(sizes) > 1
    print(f"\n| what | {head} |{' growth per unit |' if growth else ''}")
    print("|---|" + "---|" * len(sizes) + ("---|" if growth else ""))
    for i, first in enumerate(results[0]):
        row = [r[i] for r in results]
        cells = " | ".join(value(f) for f in row)
        g = f" {row[-1].per_unit_us / row[0].per_unit_us:.2f} |" if growth else ""
        print(f"| {first.what} | {cells} |{g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 and 2,000 patients")
    parser.add_argument("--sizes", default=None, help="patients per size (10000,100000)")
    parser.add_argument("--web-requests", type=int, default=None, help="per size (400)")
    parser.add_argument("--no-shared", action="store_true",
                        help="skip the 3-worker, 2-web-process run")
    parser.add_argument("--pg-url", default=os.environ.get("CNO_BENCH_PG_URL", DEFAULT_PG))
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("500,2000" if args.quick else "10000,100000"))
             .split(",")]
    web_requests = args.web_requests or (100 if args.quick else 400)
    dbs = Databases(args.pg_url, prefix="cno_bench_scale")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a timeout still drops them
    started = time.monotonic()
    log(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; sizes {sizes}")
    results: list[list[Figure]] = []
    lines: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="cno-scale-") as tmp:
            last_url, last_refs = "", list[str]()
            for n in sizes:
                figures, last_url, last_refs = measure(dbs, n, web_requests, Path(tmp))
                results.append(figures)
                print(f"\n{n:,} patients done after {(time.monotonic() - started) / 60:.1f} min",
                      flush=True)
                print_table(sizes[:len(results)], results)
                if n != sizes[-1]:
                    dbs.drop(last_url)
            if not args.no_shared:
                single = 1 / results[-1][-1].seconds
                lines = shared(last_url, last_refs, web_requests, single, Path(tmp))
    finally:
        dbs.close()
    print(f"\nscale benchmark, PostgreSQL, {datetime.now(UTC):%Y-%m-%d}; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; whole run "
          f"{(time.monotonic() - started) / 60:.1f} min")
    print_table(sizes, results)
    if lines:
        print(f"\nshared, {sizes[-1]:,} patients: 3 `cno-tracker worker` + 2 `cno-tracker web` "
              "processes over one database\n\n| what | value | notes |\n|---|---|---|")
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
