"""Worker liveness in the database: each worker's heartbeat row (:class:`Heartbeat`, the
writing side) and :func:`worker_health` (the reading side: ``cno-tracker worker status``,
the web application's ``/readyz`` and admin page).

A worker beats every ``interval`` (default 5 s) from a thread of its own, so a long job
never makes it look dead; each beat sets ``expires_at = now + 3 × interval``. A worker
whose row has expired, or which wrote ``stopped_at``, is not alive: the deliveries it had
claimed may be taken at once by another worker (or by the restarted one), instead of
waiting for their lease (see :meth:`alerts.outbox.Outbox.claim`).

Lag behind the log is the number of log positions the read model's projector has not
folded yet (the newest event's position minus the projector's checkpoint).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from alerts.tables import deliveries as D
from alerts.tables import sms_opt_outs as O
from alerts.tables import worker_heartbeats as H
from alerts.vocabulary import DeliveryStatus
from events.store.tables import events as E
from tracker.readmodel import projector_checkpoints

#: a heartbeat is fresh for this many intervals after it was written
EXPIRY_INTERVALS = 3
DEFAULT_INTERVAL = timedelta(seconds=5)
#: rows of workers dead or stopped for longer than this are deleted when a worker starts
FORGET_AFTER = timedelta(days=7)
#: the delivery statuses ``worker status`` counts per channel
COUNTED_STATUSES = tuple(s.value for s in (
    DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.UNKNOWN, DeliveryStatus.DEAD))


def package_version() -> str:
    try:
        return version("cno-tracker")
    except PackageNotFoundError:
        return "unknown"


class Heartbeat:
    """Writes one worker's row; every method is one short transaction of its own."""

    def __init__(self, engine: Engine, worker_id: str, *,
                 interval: timedelta = DEFAULT_INTERVAL) -> None:
        if interval <= timedelta(0):
            raise ValueError("the heartbeat interval must be positive")
        self.engine = engine
        self.worker_id = worker_id
        self.interval = interval
        self.host = socket.gethostname()[:255]
        self.pid = os.getpid()

    def _write(self, now: datetime, **values: Any) -> None:
        values = {"beat_at": now, "expires_at": now + self.interval * EXPIRY_INTERVALS,
                  **values}
        with self.engine.begin() as conn:
            done = conn.execute(update(H).where(H.c.worker_id == self.worker_id)
                                .values(**values)).rowcount
            if not done:
                row = {"worker_id": self.worker_id, "host": self.host, "pid": self.pid,
                       "version": package_version()[:32], "started_at": now,
                       "channels_down": "{}", **values}
                conn.execute(insert(H).values(**row))

    def started(self, now: datetime) -> None:
        with self.engine.begin() as conn:  # workers gone for a week are history
            conn.execute(delete(H).where(H.c.expires_at < now - FORGET_AFTER))
        self._write(now, host=self.host, pid=self.pid, started_at=now, stopped_at=None,
                    cycle_started_at=None, cycle_ended_at=None, channels_down="{}")

    def beat(self, now: datetime, channels_down: Mapping[str, str]) -> None:
        self._write(now, channels_down=_json(channels_down))

    def cycle_started(self, now: datetime) -> None:
        self._write(now, cycle_started_at=now)

    def cycle_ended(self, now: datetime, channels_down: Mapping[str, str]) -> None:
        self._write(now, cycle_ended_at=now, channels_down=_json(channels_down))

    def stopped(self, now: datetime) -> None:
        self._write(now, stopped_at=now, expires_at=now)

    def retire_others(self, now: datetime) -> int:
        """Mark every other worker stopped (SQLite, under the single-worker lock: no other
        worker can be alive), so the claims they left are taken at once."""
        with self.engine.begin() as conn:
            return int(conn.execute(update(H).where(
                H.c.worker_id != self.worker_id, H.c.stopped_at.is_(None))
                .values(stopped_at=now, expires_at=now)).rowcount or 0)


def _json(value: Mapping[str, str]) -> str:
    return orjson.dumps(dict(sorted(value.items()))).decode()


def dead_workers(now: datetime) -> Any:
    """A subquery: the ids of workers whose heartbeat expired or who stopped."""
    return select(H.c.worker_id).where(
        (H.c.expires_at < now) | H.c.stopped_at.is_not(None)).scalar_subquery()


@dataclass(frozen=True)
class WorkerBeat:
    worker_id: str
    host: str
    pid: int
    version: str
    started_at: datetime
    beat_at: datetime
    expires_at: datetime
    cycle_started_at: datetime | None
    cycle_ended_at: datetime | None
    channels_down: dict[str, str]
    stopped_at: datetime | None
    alive: bool


@dataclass(frozen=True)
class WorkerHealth:
    """What ``worker status`` shows. ``ok``: a live worker and no channel down."""

    now: datetime
    workers: list[WorkerBeat]
    lag_positions: int | None  # None: the projector has never run
    deliveries: dict[str, dict[str, int]] = field(default_factory=dict)  # channel → status → n
    channels_down: dict[str, str] = field(default_factory=dict)  # over the live workers
    #: staff whose latest reply to the SMS number was an opt-out word (STOP …)
    sms_opted_out: list[str] = field(default_factory=list)

    @property
    def alive(self) -> list[WorkerBeat]:
        return [w for w in self.workers if w.alive]

    @property
    def last_cycle_ended_at(self) -> datetime | None:
        ends = [w.cycle_ended_at for w in self.workers if w.cycle_ended_at is not None]
        return max(ends) if ends else None

    @property
    def ok(self) -> bool:
        return bool(self.alive) and not self.channels_down


def worker_health(engine: Engine, now: datetime) -> WorkerHealth:
    """Read the heartbeats, the projector's lag and the delivery counts at ``now``."""
    with engine.connect() as conn:
        workers = [_beat(dict(r._mapping), now) for r in conn.execute(
            select(H).order_by(H.c.beat_at.desc(), H.c.worker_id))]
        lag = _lag(conn)
        counts: dict[str, dict[str, int]] = {}
        for channel, status, n in conn.execute(
                select(D.c.channel, D.c.status, func.count()).where(
                    D.c.status.in_(COUNTED_STATUSES)).group_by(D.c.channel, D.c.status)):
            counts.setdefault(channel, {s: 0 for s in COUNTED_STATUSES})[status] = int(n)
        opted_out = sorted(r[0] for r in conn.execute(
            select(O.c.staff_id).where(O.c.opted_out)))
    down: dict[str, str] = {}
    for w in workers:
        if w.alive:
            for channel, reason in w.channels_down.items():
                down.setdefault(channel, reason)
    return WorkerHealth(now=now, workers=workers, lag_positions=lag,
                        deliveries=dict(sorted(counts.items())),
                        channels_down=dict(sorted(down.items())), sms_opted_out=opted_out)


def _beat(row: dict[str, Any], now: datetime) -> WorkerBeat:
    down = orjson.loads(row.pop("channels_down") or "{}")
    alive = row["stopped_at"] is None and row["expires_at"] >= now
    return WorkerBeat(**row, channels_down=down, alive=alive)


def _lag(conn: Connection) -> int | None:
    head = conn.execute(select(func.max(E.c.position))).scalar()
    checkpoint = conn.execute(select(func.max(projector_checkpoints.c.position))).scalar()
    if checkpoint is None:
        return None if head is None else int(head)
    return max(0, int(head or 0) - int(checkpoint))


def latest_beat(conn: Connection) -> datetime | None:
    """The newest heartbeat of a worker that has not stopped (None: no worker reported);
    the web application's ``/readyz`` judges its age."""
    beat = conn.execute(select(func.max(H.c.beat_at)).where(H.c.stopped_at.is_(None))).scalar()
    return beat if isinstance(beat, datetime) else None
