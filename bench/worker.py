"""Alert-worker benchmark for CNO Tracker: run on demand, never collected as a test.

    .venv/bin/python -m bench.worker            # full run (about 5 minutes on 2 cores)
    .venv/bin/python -m bench.worker --quick    # smoke run (about 1 minute)

Measures on PostgreSQL:

1. **Evaluation cycle.** A cohort made by ``tracker.synthetic`` (10,000 patients, about 62
   events each), imported with ``tracker.importing.import_lines``, folded once by the
   projector and given one warm-up cycle (it raises what fell due in the look-back window).
   Then ``AlertWorker.run_once()`` (catch up → evaluate → escalate → dispatch) is timed
   - with nothing new (target ≤ 1 s), and its parts one by one;
   - after 1,000 new events, one for each of 1,000 different patients (the worst case: each
     patient's whole history is folded again; target ≤ 2 s), and after 1,000 new events for
     100 patients (diagnostic).
   Alerts go to a file channel here: (1) times the worker's own work, not a provider.
2. **Dispatch.** N urgent alerts already raised (half routed to a nurse by SMS, half to a
   rheumatologist by e-mail) are made due at once, and worker *processes*
   (``cno-tracker worker``) deliver them to the local Twilio-compatible and
   SMTP servers of tests/support (official Twilio client, smtplib). Messages/s = N / (last
   ``sent_at`` − the instant they became due). Exactly once is checked at both servers (SMS
   per patient, e-mail per Message-ID) and in the audit log (one AlertSent per delivery).
   Target with 3 workers: ≥ 200 messages/s. One worker is run too, for scale.
3. **Delivery receipts** (bench/receipts.py): signed status callbacks per second on one
   web process (target ≥ 500/s), undelivered callback → the next channel's send (≤ 5 s),
   and urgent item falls due → SMS delivered receipt recorded, with 3 workers.

Every database is named ``cno_bench_worker_<pid>_<what>`` and dropped at the end, even
after a failure. PostgreSQL: ``--pg-url`` or ``CNO_BENCH_PG_URL`` (default the local server).

Caveats: 2 cores are shared by PostgreSQL, the worker processes and this process (which
runs both fake providers); other work on the machine moves the figures. A transaction left
open in another database of the same server can hold back readers of the event log (the
benchmark waits for the log to become readable, and says so, instead of timing a catch-up
that saw nothing).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func, select, text, update

from alerts.channels.console import FileChannel
from alerts.outbox import Outbox, Route
from alerts.roster import load_roster
from alerts.rules import AlertSpec
from alerts.tables import alerts as A
from alerts.tables import deliveries as D
from alerts.worker import AlertWorker
from bench.databases import Databases
from events.store import EventStore
from events.store.engine import make_engine
from tests.support.roster import NURSE_AND_RHEUMATOLOGIST
from tracker.clock import FixedClock
from tracker.importing import import_lines
from tracker.protocol import DEFAULT_PROTOCOL
from tracker.synthetic import generate_cohort

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
ROSTER = NURSE_AND_RHEUMATOLOGIST + """
[routing]
default = ["nurse"]

[escalation]
chain = ["rheumatologist"]
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Row:
    section: str
    what: str
    value: str
    target: str = ""
    verdict: str = ""


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def settle(store: EventStore, timeout: float = 120.0) -> None:
    """Wait until readers of the global log see every stored event (see module doc)."""
    deadline = time.monotonic() + timeout
    warned = False
    while True:
        readable = sum(len(b) for b in _batches(store))
        if readable >= store.count():
            return
        if not warned:
            log("the event log is not fully readable yet (a transaction open elsewhere on "
                "the server?): waiting")
            warned = True
        if time.monotonic() > deadline:
            raise SystemExit("the event log did not become readable: a long transaction "
                             "elsewhere on the server holds readers back")
        time.sleep(0.2)


def _batches(store: EventStore) -> Iterator[list[Any]]:
    from events.store import START, Checkpoint

    cp = START
    while True:
        batch = store.read_batch(cp, 50_000)
        if not batch:
            return
        yield batch
        cp = Checkpoint(batch[-1].tx, batch[-1].position)


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


# ----------------------------------------------------------------- 1. evaluation cycle
def import_cohort(store: EventStore, clock: FixedClock, patients: int, until: date
                  ) -> tuple[int, float]:
    """Import the generated cohort in chunks of whole patients; (events, seconds)."""
    written, spent = 0, 0.0
    chunk: list[bytes] = []
    last_patient = None

    def flush() -> None:
        nonlocal written, spent
        seconds, report = timed(lambda: import_lines(chunk, store, clock=clock,
                                                     protocol=DEFAULT_PROTOCOL))
        written += report.written
        spent += seconds
        chunk.clear()

    for line in generate_cohort(patients, seed=11, until=until):
        if line["patient"] != last_patient and len(chunk) >= 50_000:
            flush()
            log(f"imported {written:,} events")
        last_patient = line["patient"]
        chunk.append(orjson.dumps(line))
    if chunk:
        flush()
    return written, spent


def visit_lines(patients: list[str], per_patient: int, at: datetime) -> list[bytes]:
    lines = []
    for p in patients:
        for k in range(per_patient):
            when = (at - timedelta(minutes=per_patient - k)).isoformat()
            lines.append(orjson.dumps({
                "type": "VisitRecorded", "patient": p, "occurred_at": when,
                "recorded_by": "bench", "data": {"pain": False, "swelling": False,
                                                 "functional_limitation": False}}))
    return lines


def bench_evaluation(dbs: Databases, patients: int, new_events: int, tmp: Path
                     ) -> list[Row]:
    rows: list[Row] = []
    url = dbs.fresh("eval")
    engine = make_engine(url)
    store = EventStore(engine)
    now = datetime.now(UTC).replace(microsecond=0)
    clock = FixedClock(now)
    today = now.astimezone(DEFAULT_PROTOCOL.zone).date()
    log(f"generating and importing {patients:,} patients")
    events, seconds = import_cohort(store, clock, patients, today - timedelta(days=1))
    rows.append(Row("setup", f"import {events:,} events ({patients:,} patients)",
                    f"{events / seconds:,.0f} ev/s"))
    settle(store)
    worker = AlertWorker(store, DEFAULT_PROTOCOL, clock,
                         {"file": FileChannel(tmp / "alerts.jsonl")},
                         load_roster(REPO / "examples" / "roster.toml"), worker_id="bench")
    worker.start()
    try:
        log("first fold of the whole log")
        seconds, first = timed(worker.catch_up)
        rows.append(Row("setup", f"first fold ({first.events:,} events, "
                                 f"{first.patients:,} patients)", fmt_s(seconds)))
        seconds, warm = timed(worker.run_once)
        assert warm.evaluation is not None and warm.dispatch is not None
        rows.append(Row("setup", f"warm-up cycle (raised {len(warm.evaluation.raised)}, "
                                 f"sent {warm.dispatch.sent})", fmt_s(seconds)))
        with engine.connect() as conn:
            due_rows = conn.execute(text("SELECT count(*) FROM due_items")).scalar()
        # -- nothing new
        totals = []
        for _ in range(5):
            clock.advance(timedelta(seconds=30))
            seconds, report = timed(worker.run_once)
            assert report.catch_up is not None and report.evaluation is not None
            assert report.catch_up.patients == 0 and not report.evaluation.raised
            totals.append(seconds)
        nothing = statistics.median(totals)
        rows.append(Row("cycle", f"run_once, nothing new ({patients:,} patients, "
                                 f"{due_rows:,} due items; median of 5)", fmt_s(nothing),
                        "≤ 1 s", verdict(nothing <= 1.0)))
        for name, job in (("catch_up", worker.catch_up), ("evaluate", worker.evaluate),
                          ("escalate", worker.escalate), ("dispatch", worker.dispatch)):
            parts = [timed(job)[0] for _ in range(5)]
            rows.append(Row("cycle", f"  of which {name} (median of 5)",
                            fmt_s(statistics.median(parts))))
        # -- new events
        refs = [f"G11-{i:04d}" for i in range(1, patients + 1)]
        for label, per_patient, rounds in (("1 each for", 1, 3), ("10 each for", 10, 1)):
            count = new_events // per_patient
            samples = []
            for r in range(rounds):
                clock.advance(timedelta(minutes=5))
                chosen = refs[(r * count) % len(refs):][:count]
                lines = visit_lines(chosen, per_patient, clock.now())
                import_lines(lines, store, clock=clock, protocol=DEFAULT_PROTOCOL)
                settle(store)
                seconds, report = timed(worker.run_once)
                assert report.catch_up is not None
                if report.catch_up.patients != len(chosen):
                    raise SystemExit(f"the catch-up folded {report.catch_up.patients} "
                                     f"patients, expected {len(chosen)}")
                samples.append(seconds)
                catch = report.catch_up
            value = statistics.median(samples)
            what = (f"run_once after {len(lines):,} new events, {label} "
                    f"{count:,} patients (folds {catch.events:,} new events"
                    f"{'; median of 3' if rounds > 1 else ''})")
            if per_patient == 1:
                rows.append(Row("cycle", what, fmt_s(value), "≤ 2 s", verdict(value <= 2.0)))
            else:
                rows.append(Row("cycle", what, fmt_s(value), "(diagnostic)"))
        # -- the first cycle of a new local day: patients whose status changes by date
        local = clock.now().astimezone(DEFAULT_PROTOCOL.zone)
        midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(),
                                    tzinfo=DEFAULT_PROTOCOL.zone)
        clock.instant = midnight.astimezone(UTC) + timedelta(minutes=1)
        seconds, report = timed(worker.run_once)
        assert report.catch_up is not None and report.evaluation is not None
        rows.append(Row("cycle", f"run_once at the first tick of a new day (re-checks "
                                 f"{report.catch_up.rechecked:,} patients, raises "
                                 f"{len(report.evaluation.raised)})", fmt_s(seconds),
                        "(diagnostic)"))
    finally:
        worker.close()
        engine.dispose()
    return rows


# ----------------------------------------------------------------- 2. dispatch
def raise_alerts(store: EventStore, count: int, not_before: datetime) -> None:
    outbox = Outbox(store, DEFAULT_PROTOCOL.zone)
    now = datetime.now(UTC)
    for start in range(0, count, 250):
        with outbox.transaction() as writer:
            for i in range(start, min(count, start + 250)):
                key = f"B{i:05d}:hypocalcaemia:bench:{uuid.uuid4().hex}:now"
                spec = AlertSpec(dedupe_key=key, group=key.rsplit(":", 1)[0],
                                 patient=f"B{i:05d}", kind="hypocalcaemia",
                                 severity="urgent", item="hypocalcaemia",
                                 due_on=now.date(), fires_at=now, cause_event_ids=())
                route = Route("nurse.a", "sms") if i % 2 == 0 else Route("rheum.b", "email")
                outbox.raise_alert(writer, spec, [route], now=now, not_before=not_before,
                                   by="bench")


def bench_dispatch(dbs: Databases, messages: int, workers: int, tmp: Path,
                   tag: str) -> tuple[Row, list[Row]]:
    from tests.support.processes import WorkerProcess, stop_all, wait_until, worker_env
    from tests.support.smtp_server import SmtpTestServer
    from tests.support.twilio_server import TwilioTestServer

    url = dbs.fresh(tag)
    engine = make_engine(url)
    store = EventStore(engine)
    roster = tmp / "roster.toml"
    roster.write_text(ROSTER, encoding="utf-8")
    log(f"dispatch: raising {messages:,} alerts, {workers} worker process(es)")
    raise_alerts(store, messages, datetime.now(UTC) + timedelta(days=1))
    diagnostics: list[Row] = []
    with TwilioTestServer() as twilio, SmtpTestServer() as smtp:
        env = worker_env(url, roster_file=roster, twilio=twilio, smtp=smtp)
        procs = [WorkerProcess(f"{tag}-w{i}", env, tmp / f"{tag}-w{i}.log", poll_seconds=0.2)
                 for i in range(workers)]
        try:
            for p in procs:
                p.start()
            for p in procs:
                p.wait_started(60)
            time.sleep(1.0)  # first ticks (catch up, evaluate) done: the workers are idle
            go = datetime.now(UTC)
            with engine.begin() as conn:
                conn.execute(update(D).values(not_before=go))

            def all_sent() -> bool:
                with engine.connect() as conn:
                    left = conn.execute(select(func.count()).where(
                        D.c.status.in_(["pending", "sending"]))).scalar()
                return left == 0 or not all(p.alive for p in procs)
            wait_until(all_sent, 300, "every delivery sent", interval=0.25)
            time.sleep(0.5)  # let a duplicate, if any, arrive before counting
        finally:
            stop_all(procs)
        with engine.connect() as conn:
            statuses = Counter({s: n for s, n in conn.execute(
                select(D.c.status, func.count()).group_by(D.c.status))})
            last = conn.execute(select(func.max(D.c.sent_at))).scalar()
            by_worker = Counter({o: n for o, n in conn.execute(text(
                "SELECT split_part(recorded_by, ':', 2), count(*) FROM events "
                "WHERE type = 'AlertSent' GROUP BY 1"))})
            per_delivery = Counter(n for (n,) in conn.execute(text(
                "SELECT count(e.event_id) FROM alert_deliveries d LEFT JOIN events e "
                "ON e.stream = 'alert:' || d.alert_id AND e.type = 'AlertSent' "
                "GROUP BY d.delivery_id")))
            alert_ids = [r[0] for r in conn.execute(select(A.c.alert_id))]
        sms = Counter(m.body.split(" for ", 1)[1].split(",", 1)[0] for m in twilio.messages)
        mails = Counter(m.message_id for m in smtp.messages)
        half = (messages + 1) // 2
        once = (statuses == Counter({"sent": messages}) and len(sms) == half
                and set(sms.values()) == {1} and len(mails) == messages - half
                and set(mails.values()) <= {1} and per_delivery == Counter({1: messages})
                and len(alert_ids) == messages)
    engine.dispose()
    assert last is not None
    seconds = (last - go).total_seconds()
    rate = messages / seconds
    detail = (f"exactly once {'yes' if once else 'NO'}: {sum(sms.values())} SMS / "
              f"{sum(mails.values())} e-mails received, AlertSent per delivery "
              f"{dict(per_delivery)}, statuses {dict(statuses)}")
    share = ", ".join(f"{n}" for _, n in sorted(by_worker.items()))
    diagnostics.append(Row("dispatch", f"  {workers} worker(s): {detail}; sent per worker "
                                       f"[{share}]", ""))
    target = "≥ 200 msg/s" if workers == 3 else "(scale)"
    ok = once and (rate >= 200 if workers == 3 else True)
    row = Row("dispatch", f"{messages:,} messages, {workers} worker process(es), "
                          f"{fmt_s(seconds)}", f"{rate:,.0f} msg/s", target,
              verdict(ok) if workers == 3 else ("" if once else "NOT ONCE"))
    return row, diagnostics


# ----------------------------------------------------------------- 3. receipts
def bench_receipts(dbs: Databases, tmp: Path, callbacks: int, samples: int,
                   e2e_samples: int, e2e_poll: float) -> list[Row]:
    from bench.receipts import (
        ROSTER as RECEIPT_ROSTER,
    )
    from bench.receipts import (
        WebProcess,
        callbacks_per_second,
        end_to_end,
        env_for,
        summary,
        undelivered_to_next_channel,
    )
    from tests.support.processes import WorkerProcess, stop_all
    from tests.support.smtp_server import SmtpTestServer
    from tests.support.twilio_server import TEST_AUTH_TOKEN, TwilioTestServer

    rows: list[Row] = []
    url = dbs.fresh("receipts")
    roster = tmp / "receipts-roster.toml"
    roster.write_text(RECEIPT_ROSTER, encoding="utf-8")
    procs: list[WorkerProcess] = []
    with TwilioTestServer() as twilio, SmtpTestServer() as smtp:
        env = env_for(url, roster, twilio, smtp)
        web = WebProcess(env, tmp / "receipts-web.log")
        try:
            web.wait_ready()
            log(f"receipts: {callbacks:,} signed callbacks to one web process")
            for connections in (16, 64):
                rate, detail = callbacks_per_second(url, web, TEST_AUTH_TOKEN, callbacks,
                                                    connections)
                rows.append(Row("receipts", f"status callbacks, one web process ({detail})",
                                f"{rate:,.0f} /s", "≥ 500/s", verdict(rate >= 500)))
            log(f"receipts: undelivered → e-mail, {samples} samples, 1 worker (30 s poll)")
            procs = [WorkerProcess("rcpt-w0", env, tmp / "rcpt-w0.log", poll_seconds=30)]
            for p in procs:
                p.start()
            for p in procs:
                p.wait_started(60)
            time.sleep(2.0)
            lat = undelivered_to_next_channel(url, web, twilio, smtp, samples)
            rows.append(Row("receipts", "undelivered callback (30003) → the nurse's e-mail "
                                        "received, 1 worker with a 30 s poll",
                            summary(lat), "≤ 5 s", verdict(max(lat) <= 5.0)))
            stop_all(procs)
            log(f"receipts: end to end, {e2e_samples} samples, 3 workers "
                f"(--poll-seconds {e2e_poll:g})")
            procs = [WorkerProcess(f"rcpt-e{i}", env, tmp / f"rcpt-e{i}.log",
                                   poll_seconds=e2e_poll) for i in range(3)]
            for p in procs:
                p.start()
            for p in procs:
                p.wait_started(60)
            time.sleep(2.0)
            end_to_end(url, web, twilio, 1)  # warm-up: the workers' first fold of the log
            e2e = end_to_end(url, web, twilio, e2e_samples, first=1)
            from bench.receipts import STEPS
            worst = max(STEPS[-e2e_samples:], key=lambda s: s.get("AlertDelivered", 0))
            log(f"receipts: end to end, each sample (s after the lab): {STEPS[-e2e_samples:]}")
            rows.append(Row("receipts", f"urgent lab recorded → AlertDelivered recorded, 3 "
                                        f"workers (--poll-seconds {e2e_poll:g}), signed "
                                        "callbacks, after one warm-up; worst sample: "
                                        + ", ".join(f"{k[5:].lower()} +{v:g} s" for k, v in
                                                    sorted(worst.items(), key=lambda i: i[1])),
                            summary(e2e), "(measure)"))
        finally:
            stop_all(procs)
            web.stop()
    return rows


# ----------------------------------------------------------------- main
def print_table(rows: list[Row]) -> None:
    headers = ("section", "what", "value", "target", "verdict")
    cells = [headers, *[(r.section, r.what, r.value, r.target, r.verdict) for r in rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    for n, c in enumerate(cells):
        print("  ".join(v.ljust(widths[i]) for i, v in enumerate(c)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--pg-url", default=os.environ.get("CNO_BENCH_PG_URL", DEFAULT_PG))
    parser.add_argument("--patients", type=int, default=None, help="10000 (quick: 2000)")
    parser.add_argument("--new-events", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=None, help="4000 (quick: 1000)")
    parser.add_argument("--skip", choices=("evaluation", "dispatch", "receipts"),
                        action="append", default=[])
    parser.add_argument("--callbacks", type=int, default=None, help="3000 (quick: 1000)")
    parser.add_argument("--receipt-samples", type=int, default=None, help="5 (quick: 3)")
    parser.add_argument("--e2e-samples", type=int, default=None, help="10 (quick: 5)")
    parser.add_argument("--e2e-poll-seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    patients = args.patients or (2000 if args.quick else 10_000)
    messages = args.messages or (1000 if args.quick else 4000)
    log(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    rows: list[Row] = []
    dbs = Databases(args.pg_url, prefix="cno_bench_worker")
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="cno-bench-worker-") as tmp:
            if "evaluation" not in args.skip:
                rows += bench_evaluation(dbs, patients, args.new_events, Path(tmp))
            if "dispatch" not in args.skip:
                extra: list[Row] = []
                for workers in (1, 3):
                    row, diag = bench_dispatch(dbs, messages, workers, Path(tmp),
                                               f"dispatch{workers}")
                    rows.append(row)
                    extra += diag
                rows += extra
            if "receipts" not in args.skip:
                rows += bench_receipts(
                    dbs, Path(tmp), args.callbacks or (1000 if args.quick else 3000),
                    args.receipt_samples or (3 if args.quick else 5),
                    args.e2e_samples or (5 if args.quick else 10), args.e2e_poll_seconds)
    finally:
        dbs.close()
    log(f"done in {time.monotonic() - started:.0f} s")
    print_table(rows)
    return 0 if all(r.verdict in ("", "ok") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
