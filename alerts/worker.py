"""The alert worker: catch the read model up, raise and cancel alerts, escalate the
unacknowledged urgent ones and dispatch the outbox — once (``run_once``) or on an
APScheduler 3 schedule (``run_forever``) with the morning digest on a cron trigger at
``digest_hour`` in the centre's time zone.

Stopping: SIGTERM/SIGINT stop the schedule; the send in flight finishes and is recorded,
claimed rows not yet sent go back to ``pending``, and the process exits 0. A database that
goes away (PostgreSQL restart) fails the current job only: it is logged, SQLAlchemy
discards the broken pool, and the next tick reconnects (there is no pre-ping: it would
cost a round trip per checkout).

SQLite supports one worker: a second one refuses to start (an ``fcntl.flock`` on
``<database>.worker.lock``). PostgreSQL supports many (``FOR UPDATE SKIP LOCKED``).

The one entry point is ``cno-tracker worker`` (:mod:`alerts.cli`, built by
:mod:`alerts.wiring`); this module imports neither.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import IO, Any, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

from alerts.channels.base import Channel
from alerts.dispatch import Dispatcher, DispatchReport, RetryPolicy, logfmt
from alerts.errors import WorkerAlreadyRunning, WorkerConfigurationError
from alerts.health import Heartbeat
from alerts.links import LinkSigner
from alerts.notices import tell_owner
from alerts.optouts import sms_off
from alerts.outbox import Escalation, Outbox
from alerts.polling import DEFAULT_BATCH as DEFAULT_POLL_BATCH
from alerts.polling import MessageLookup, PollReport, ReceiptPoller
from alerts.receipts import ReceiptBook
from alerts.roster import Roster
from alerts.rules import (
    EscalationPolicy,
    EscalationTrigger,
    plan,
    send_not_before,
)
from alerts.vocabulary import AlertStatus, DeliveryMode, MessageKind
from events.store import EventStore
from tracker.alertkinds import Severity
from tracker.clock import Clock, SystemClock
from tracker.files import private_file
from tracker.protocol import Protocol
from tracker.readmodel import (
    CatchUpReport,
    StatusProjector,
    fired_due_items,
    patients_with_status,
    present_due_keys,
)

log = logging.getLogger("alerts.worker")
T = TypeVar("T")
_RAISE_CHUNK = 100


def default_worker_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def sqlite_lock_path(store: EventStore) -> Path | None:
    """``<database file>.worker.lock`` for a file SQLite database, else None."""
    if store.recorder.concurrent_writers:
        return None
    database = store.engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).resolve()
    return path.with_name(path.name + ".worker.lock")


class SingleWorkerLock:
    """An exclusive, non-blocking ``fcntl.flock`` held for the worker's lifetime (the
    kernel drops it if the process dies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        handle = private_file(self.path, "a+")  # 0600
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise WorkerAlreadyRunning(
                f"another alert worker is already running on this SQLite database (lock "
                f"{self.path} is held); SQLite supports one worker: stop the other one, or "
                "use PostgreSQL to run several") from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


@dataclass
class EvaluationReport:
    raised: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    duplicates: int = 0  # raised meanwhile by another worker
    too_old: int = 0


@dataclass
class CycleReport:
    catch_up: CatchUpReport | None = None
    evaluation: EvaluationReport | None = None
    escalated: int = 0
    dispatch: DispatchReport | None = None
    receipts: PollReport | None = None


class AlertWorker:
    def __init__(self, store: EventStore, protocol: Protocol, clock: Clock,
                 channels: Mapping[str, Channel], roster: Roster, *,
                 worker_id: str | None = None, batch_size: int = 100,
                 lease_seconds: float = 120.0, poll_seconds: float = 30.0,
                 retry: RetryPolicy | None = None,
                 rand: Callable[[], float] = random.random,
                 heartbeat_seconds: float = 5.0, wall: Clock | None = None,
                 links: LinkSigner | None = None, public_url: str | None = None,
                 receipt_poll_seconds: float | None = None,
                 receipt_poll_batch: int = DEFAULT_POLL_BATCH,
                 wake_seconds: float = 1.0) -> None:
        if receipt_poll_seconds is not None and (receipt_poll_seconds <= 0
                                                 or receipt_poll_batch < 1):
            raise ValueError("receipt_poll_seconds and receipt_poll_batch must be positive")
        if batch_size < 1 or lease_seconds <= 0 or poll_seconds <= 0 or heartbeat_seconds <= 0:
            raise ValueError("batch_size, lease_seconds, poll_seconds and heartbeat_seconds "
                             "must be positive")
        self.store = store
        self.protocol = protocol
        self.clock = clock
        self.channels = dict(channels)
        self.roster = roster
        self.worker_id = (worker_id or default_worker_id())[:64]
        self.by = f"alert-worker:{self.worker_id}"[:128]
        self.poll_seconds = poll_seconds
        #: how often the heartbeat thread looks for urgent work waiting between ticks
        self.wake_seconds = wake_seconds if wake_seconds > 0 else 1.0
        self.stop_event = threading.Event()
        try:
            self.policy = EscalationPolicy.of(protocol.escalation_minutes,
                                              roster.escalation.delay_minutes)
        except ValueError as exc:
            raise WorkerConfigurationError(f"escalation: {exc}") from None
        self.outbox = Outbox(store, protocol.zone)
        # a catch-up that touches many patients folds them in a process per core
        self.projector = StatusProjector(
            store, protocol, clock,
            workers=(os.cpu_count() or 1) if store.recorder.concurrent_writers else 1)
        # liveness is judged by the wall clock even when ``clock`` replays another instant
        self.wall = wall or SystemClock()
        self.heartbeat = Heartbeat(store.engine, self.worker_id,
                                   interval=timedelta(seconds=heartbeat_seconds))
        self.dispatcher = Dispatcher(
            self.outbox, self.channels, roster, clock, protocol, worker_id=self.worker_id,
            batch_size=batch_size, lease=timedelta(seconds=lease_seconds), retry=retry,
            rand=rand, stop=self.stop_event, wall=self.wall, policy=self.policy, links=links,
            public_url=public_url)
        #: delivery receipts by polling (alerts/polling.py): only with an SMS channel that
        #: can read messages back, and when asked for (``receipt_poll_seconds``)
        self.receipts = ReceiptBook(self.outbox, roster, policy=self.policy,
                                    available=set(self.channels))
        sms = self.channels.get("sms")
        self.poller = (ReceiptPoller(
            self.outbox, self.receipts, sms, roster, clock, by=self.by, policy=self.policy,
            interval=timedelta(seconds=receipt_poll_seconds), batch=receipt_poll_batch,
            lease=timedelta(seconds=lease_seconds))
            if receipt_poll_seconds is not None and isinstance(sms, MessageLookup) else None)
        path = sqlite_lock_path(store)
        self._lock = SingleWorkerLock(path) if path is not None else None
        self._started = False

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> AlertWorker:
        if not self._started:
            if self._lock is not None:
                self._lock.acquire()
                # the lock proves every other worker of this database dead: their claims
                # are taken at once, not after their lease
                self.heartbeat.retire_others(self.wall.now())
            self.heartbeat.started(self.wall.now())
            self._started = True
            log.info(logfmt("worker.started", worker=self.worker_id,
                            database=self.store.dialect, channels=",".join(sorted(self.channels))))
        return self

    def close(self) -> None:
        """Give back unsent claims and the SQLite lock."""
        if not self._started:
            return
        try:
            released = self.outbox.release(self.worker_id, now=self.clock.now())
            if released:
                log.info(logfmt("worker.released", worker=self.worker_id, deliveries=released))
            self.heartbeat.stopped(self.wall.now())
        except (OperationalError, DBAPIError) as exc:
            log.warning(logfmt("worker.release_failed", worker=self.worker_id,
                               error=type(exc).__name__))
        finally:
            self.projector.close()
            if self._lock is not None:
                self._lock.release()
            self._started = False
            log.info(logfmt("worker.stopped", worker=self.worker_id))

    def __enter__(self) -> AlertWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request_stop(self) -> None:
        self.stop_event.set()

    # ----------------------------------------------------------------- jobs
    def catch_up(self) -> CatchUpReport:
        report = self.projector.catch_up()
        if report.events or report.rechecked:
            log.info(logfmt("projector.caught_up", events=report.events,
                            patients=report.patients, rechecked=report.rechecked))
        return report

    def evaluate(self) -> EvaluationReport:
        """Raise what has fired, cancel what is no longer due (clinical-rules §6)."""
        now = self.clock.now()
        today = now.astimezone(self.protocol.zone).date()
        # only rows that may still be news: older ones are history (alert_lookback_days)
        earliest = today - timedelta(days=self.protocol.alert_lookback_days + 1)
        with self.store.engine.connect() as conn:
            rows = fired_due_items(conn, earliest, today)
            known = self.outbox.known(conn, keys=(r.key for r in rows))
            open_keys = sorted(k for k, a in known.items() if a.status == AlertStatus.OPEN)
            present = present_due_keys(conn, open_keys)
            patients = sorted({a.patient for a in known.values()
                               if a.status == AlertStatus.OPEN})
            evaluated = patients_with_status(conn, patients)
            off = sms_off(conn)
        decided = plan(rows, present, known, now=now, protocol=self.protocol,
                       evaluated=evaluated)
        report = EvaluationReport(too_old=decided.too_old)
        available = set(self.channels)
        for i in range(0, len(decided.raise_), _RAISE_CHUNK):
            chunk = decided.raise_[i:i + _RAISE_CHUNK]
            with self.outbox.transaction() as writer:
                for spec in chunk:
                    not_before = send_not_before(spec, now, self.protocol.zone,
                                                 self.protocol.digest_hour)
                    # who is on call when it goes out: now, or at the digest's instant
                    routes = self.roster.routes(
                        spec.kind, spec.severity, 0, available,
                        at=now if spec.urgent else max(now, not_before),
                        zone=self.protocol.zone, sms_off=off)
                    alert_id = self.outbox.raise_alert(
                        writer, spec, routes, now=now, by=self.by, not_before=not_before)
                    if alert_id is None:
                        report.duplicates += 1
                        continue
                    report.raised.append(alert_id)
                    log.info(logfmt("alert.raised", alert=alert_id, patient=spec.patient,
                                    kind=spec.kind, severity=spec.severity,
                                    due_on=spec.due_on, recipients=len(routes),
                                    mode=DeliveryMode.IMMEDIATE if spec.urgent
                                    else DeliveryMode.DIGEST))
        for c in decided.cancel:
            with self.outbox.transaction() as writer:
                if self.outbox.cancel(writer, c.alert_id, c.reason, now=now, by=self.by):
                    report.cancelled.append(c.alert_id)
                    log.info(logfmt("alert.cancelled", alert=c.alert_id, reason=c.reason))
        return report

    def escalate(self) -> int:
        """Send every open urgent alert whose escalation instant has come one role up."""
        now = self.clock.now()
        with self.store.engine.connect() as conn:
            due = self.outbox.due_escalations(conn, now, limit=500)
        steps = self.escalation_steps(now) if due else []
        done = 0
        for alert_id in due:
            with self.outbox.transaction() as writer:
                result = self.outbox.escalate(writer, alert_id, now=now, by=self.by,
                                              steps=steps)
            if result is None:
                continue
            if result.role is None:
                log.warning(logfmt("alert.escalation_exhausted", alert=alert_id))
                continue
            done += 1
            log.warning(logfmt("alert.escalated", alert=alert_id, to_role=result.role,
                               recipients=len(result.routes)))
        return done

    def escalation_steps(self, now: datetime) -> list[Escalation]:
        """The chain as data: ``steps[level]`` takes an alert from ``level`` to the next
        role (the roster's routes for it, the policy's next instant)."""
        available = set(self.channels)
        with self.store.engine.connect() as conn:
            off = sms_off(conn)
        steps = []
        for level, role in enumerate(self.roster.escalation.chain):
            # escalation levels route by the chain alone, whatever the kind and severity,
            # to whoever is on call at the escalation's instant
            routes = self.roster.routes(MessageKind.ESCALATION, Severity.URGENT, level + 1,
                                        available, at=now, zone=self.protocol.zone,
                                        sms_off=off)
            further = self.roster.next_role(level + 1) is not None
            steps.append(Escalation(role, tuple(routes), self.policy.escalate_at(
                EscalationTrigger.ESCALATED, now, further=further)))
        return steps

    def dispatch(self) -> DispatchReport:
        report = self.dispatcher.dispatch()
        if not self.stop_event.is_set():
            self.tell_owner()
        return report

    def tell_owner(self) -> int:
        """Tell the roster owner of SMS opt-outs and opt-ins replied since the last cycle."""
        return tell_owner(self.store, self.roster, self.channels, now=self.clock.now(),
                          zone=self.protocol.zone, by=self.by, down=self.dispatcher.down)

    def digest(self) -> DispatchReport:
        return self.dispatcher.dispatch_digest()

    def poll_receipts(self) -> PollReport | None:
        """Settle SMS deliveries by asking Twilio (None: polling is off)."""
        return self.poller.poll() if self.poller is not None else None

    def run_once(self) -> CycleReport:
        """One full cycle: catch up → evaluate → escalate → dispatch (immediate deliveries,
        then the digest deliveries whose digest instant has come) → poll receipts (when
        on). Escalation runs before dispatch so that its deliveries go out in the same
        cycle."""
        self.start()
        report = CycleReport()
        self.heartbeat.cycle_started(self.wall.now())
        report.catch_up = self.catch_up()
        report.evaluation = self.evaluate()
        report.escalated = self.escalate()
        report.dispatch = self.dispatch()
        report.receipts = self.poll_receipts()
        self.heartbeat.cycle_ended(self.wall.now(), self.dispatcher.down)
        d = report.dispatch
        log.info(logfmt("worker.cycle", worker=self.worker_id,
                        raised=len(report.evaluation.raised),
                        cancelled=len(report.evaluation.cancelled),
                        escalated=report.escalated, sent=d.sent, retrying=d.retrying,
                        dead=d.dead, unknown=d.unknown, digests=d.digests))
        return report

    # ----------------------------------------------------------------- scheduling
    def _guarded(self, name: str, job: Callable[[], T]) -> Callable[[], T | None]:
        def run() -> T | None:
            if self.stop_event.is_set():
                return None
            try:
                return job()
            except (OperationalError, DBAPIError) as exc:
                log.warning(logfmt("job.database_unavailable", job=name,
                                   error=type(exc).__name__, retry="next tick"))
            except Exception as exc:  # a job must never kill the worker
                log.error(logfmt("job.failed", job=name, error=type(exc).__name__),
                          exc_info=log.isEnabledFor(logging.DEBUG))
            return None
        return run

    def _cycle_start(self) -> CatchUpReport:
        self.heartbeat.cycle_started(self.wall.now())
        return self.catch_up()

    def _cycle_end(self) -> DispatchReport:
        report = self.dispatch()
        self.heartbeat.cycle_ended(self.wall.now(), self.dispatcher.down)
        return report

    def beat(self, scheduler: Any = None) -> bool:
        """One heartbeat, then :meth:`wake`. True if it woke the jobs."""
        now = self.wall.now()
        self.heartbeat.beat(now, self.dispatcher.down)
        return self.wake(scheduler, now)

    def wake(self, scheduler: Any = None, now: datetime | None = None) -> bool:
        """When a dead worker left claims behind, or urgent work is waiting that arrived
        between ticks (a fallback or an escalation brought forward by an undelivered
        receipt, recorded by the web process), run the escalate and dispatch jobs now
        rather than at their next tick. True if it did."""
        if scheduler is None:
            return False
        now = now or self.wall.now()
        if self.outbox.abandoned(self.worker_id, heartbeats_at=now, now=self.clock.now()):
            reason = "a dead worker's claims"
        elif self.outbox.immediate_waiting(self.clock.now(), skip_channels=self.dispatcher.down):
            reason = "urgent work waiting"
        else:
            return False
        scheduler.modify_job("escalate", next_run_time=datetime.now(UTC))
        scheduler.modify_job("dispatch", next_run_time=datetime.now(UTC))
        log.log(logging.INFO if reason.startswith("a dead") else logging.DEBUG,
                logfmt("worker.taking_over" if reason.startswith("a dead") else
                       "worker.woken", worker=self.worker_id, reason=reason))
        return True

    def _beating(self, scheduler: Any) -> None:
        """Heartbeats every interval and, between them, a look for waiting urgent work
        every ``wake_seconds`` (two indexed queries)."""
        interval = self.heartbeat.interval.total_seconds()
        tick = min(self.wake_seconds, interval)
        last = time.monotonic()
        while not self.stop_event.wait(tick):
            try:
                if time.monotonic() - last >= interval - tick / 2:
                    last = time.monotonic()
                    self.beat(scheduler)
                else:
                    self.wake(scheduler)
            except (OperationalError, DBAPIError) as exc:
                log.warning(logfmt("worker.heartbeat_failed", worker=self.worker_id,
                                   error=type(exc).__name__, retry="next beat"))
            except Exception as exc:  # the heartbeat must never kill the worker
                log.error(logfmt("worker.heartbeat_failed", worker=self.worker_id,
                                 error=type(exc).__name__))

    def build_scheduler(self) -> Any:
        """A BackgroundScheduler (one thread: jobs never overlap) with the interval jobs and
        the digest cron trigger at ``digest_hour``:00 in the centre's time zone."""
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        scheduler = BackgroundScheduler(
            timezone=UTC, executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": max(1, int(self.poll_seconds))})
        start = datetime.now(UTC)
        every = IntervalTrigger(seconds=self.poll_seconds, timezone=UTC)
        for name, job in (("catch_up", self._cycle_start), ("evaluate", self.evaluate),
                          ("escalate", self.escalate), ("dispatch", self._cycle_end)):
            scheduler.add_job(self._guarded(name, job), every, id=name, name=name,
                              next_run_time=start)
        if self.poller is not None:
            scheduler.add_job(self._guarded("receipts", self.poll_receipts),
                              IntervalTrigger(seconds=self.poller.interval.total_seconds(),
                                              timezone=UTC),
                              id="receipts", name="receipts", next_run_time=start)
        scheduler.add_job(self._guarded("digest", self.digest),
                          CronTrigger(hour=self.protocol.digest_hour, minute=0,
                                      timezone=self.protocol.zone),
                          id="digest", name="digest", misfire_grace_time=3600)
        from tracker.sealing import scheduled_seal  # seals (issue 9 item 5): self-contained

        sealing = scheduled_seal(self.store, self.clock)
        if sealing is not None:
            scheduler.add_job(self._guarded("seal", sealing[0]),
                              IntervalTrigger(minutes=sealing[1], timezone=UTC),
                              id="seal", name="seal", misfire_grace_time=3600)
        return scheduler

    def run_forever(self, *, install_signals: bool = True) -> None:
        """Run until SIGTERM/SIGINT (or :meth:`request_stop`), then stop cleanly."""
        self.start()
        previous: dict[int, Any] = {}
        if install_signals and threading.current_thread() is threading.main_thread():
            def on_signal(signum: int, _frame: FrameType | None) -> None:
                log.info(logfmt("worker.stopping", worker=self.worker_id,
                                signal=signal.Signals(signum).name))
                self.stop_event.set()
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, on_signal)
        scheduler = self.build_scheduler()
        beating = threading.Thread(target=self._beating, args=(scheduler,),
                                   name="heartbeat", daemon=True)
        try:
            scheduler.start()
            beating.start()
            while not self.stop_event.wait(0.5):
                pass
        finally:
            self.stop_event.set()
            if beating.is_alive():
                beating.join(timeout=10)
            if scheduler.running:
                scheduler.shutdown(wait=True)  # the job in flight finishes its send
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.close()


# --------------------------------------------------------------------- entry point
def configure_logging(level: int = logging.INFO) -> None:
    """``key=value`` lines on standard error (the console channel uses standard output)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("twilio", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # a send longer than the poll interval makes APScheduler warn on every tick that the
    # job is still running ("maximum number of running instances"): expected, not news
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
