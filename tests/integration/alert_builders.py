"""Builders shared by the alert outbox and worker tests: a roster, patients whose labs
raise alerts, a worker wired to real channels, and readers of the alert streams."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import insert, select

from alerts.channels.base import Channel
from alerts.dispatch import RetryPolicy
from alerts.outbox import AlertRow, DeliveryRow, Outbox
from alerts.roster import Roster, parse_roster
from alerts.worker import AlertWorker
from events.store import EventStore
from tests.support.events import new_event
from tests.support.roster import CONSULTANT as CONSULTANT
from tests.support.roster import CONSULTANT_PHONE as CONSULTANT_PHONE
from tests.support.roster import NURSE_AND_RHEUMATOLOGIST as NURSE_AND_RHEUMATOLOGIST
from tests.support.roster import NURSE_PHONE as NURSE_PHONE
from tests.support.roster import RHEUM_EMAIL as RHEUM_EMAIL
from tracker.clock import FixedClock
from tracker.protocol import DEFAULT_PROTOCOL, Protocol
from tracker.readmodel import due_items

ROSTER_TOML = NURSE_AND_RHEUMATOLOGIST + CONSULTANT + """
[routing]
default = ["nurse"]

[escalation]
chain = ["rheumatologist", "on_call_consultant"]
"""

#: 2025-03-10 09:00 UTC is 10:00 in Madrid (CET, UTC+1); the digest is at 08:00 local.
LAB_AT = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)
NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
NEXT_DIGEST = datetime(2025, 3, 11, 7, 0, tzinfo=UTC)
FAST_RETRY = RetryPolicy(base_seconds=30, cap_seconds=600, max_attempts=4, jitter=0.0)


def roster(text: str = ROSTER_TOML) -> Roster:
    return parse_roster(text)


def settle(store: EventStore, timeout: float = 30.0) -> None:
    """Wait until readers of the global log see every stored event.

    On PostgreSQL a reader stops below the oldest transaction still running anywhere on
    the server (events/store/sql.py): another database's long transaction (a benchmark
    sharing the server) delays what the projector sees. Once every transaction older than
    our appends has ended, the events stay visible."""
    deadline = time.monotonic() + timeout
    while sum(1 for _ in store.read_all()) < store.count():
        if time.monotonic() > deadline:
            raise AssertionError("the global log did not become readable in time")
        time.sleep(0.02)


def enrol(store: EventStore, patient: str, at: datetime = LAB_AT) -> None:
    day = at - timedelta(days=60)
    store.append(patient, 0, [new_event(
        "PatientEnrolled", {"birth_date": "2012-01-01", "sex": "female"},
        occurred=day, recorded=day)])
    settle(store)


def lab(store: EventStore, patient: str, analyte: str, value: float, unit: str,
        at: datetime = LAB_AT) -> str:
    event = new_event("LabResultRecorded", {"analyte": analyte, "value": value, "unit": unit},
                      occurred=at, recorded=at)
    store.append(patient, store.stream_version(patient), [event])
    settle(store)
    return event.event_id


def hypocalcaemia(store: EventStore, patient: str = "P0001", at: datetime = LAB_AT) -> str:
    """An urgent alert (ionized calcium < 1 mmol/L): returns the lab's event id."""
    enrol(store, patient, at)
    return lab(store, patient, "ionized_calcium", 0.9, "mmol/L", at)


def low_vitamin_d(store: EventStore, patient: str = "P0002", at: datetime = LAB_AT) -> str:
    """An info alert (supplement suggested): returns the vitamin D lab's event id."""
    enrol(store, patient, at)
    lab(store, patient, "urine_calcium_creatinine", 0.5, "mmol/mmol", at)
    return lab(store, patient, "vitamin_d_25oh", 40, "nmol/L", at)


def void(store: EventStore, patient: str, target: str, at: datetime) -> None:
    store.append(patient, store.stream_version(patient), [new_event(
        "EntryVoided", {"target_event_id": target, "reason": "entered in error"},
        occurred=at, recorded=at)])
    settle(store)


def worker(store: EventStore, clock: FixedClock, channels: Mapping[str, Channel], *,
           protocol: Protocol = DEFAULT_PROTOCOL, the_roster: Roster | None = None,
           worker_id: str = "w1", **kwargs: Any) -> AlertWorker:
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("rand", lambda: 0.5)
    return AlertWorker(store, protocol, clock, channels, the_roster or roster(),
                       worker_id=worker_id, **kwargs)


def alerts(store: EventStore) -> list[AlertRow]:
    with store.engine.connect() as conn:
        return Outbox(store, DEFAULT_PROTOCOL.zone).alerts(conn)


def deliveries(store: EventStore, alert_id: str | None = None) -> list[DeliveryRow]:
    with store.engine.connect() as conn:
        return Outbox(store, DEFAULT_PROTOCOL.zone).deliveries(
            conn, None if alert_id is None else [alert_id])


def stream_types(store: EventStore, alert_id: str) -> list[str]:
    return [e.type for e in store.read_stream(f"alert:{alert_id}")]


def stream(store: EventStore, alert_id: str) -> list[Any]:
    return store.read_stream(f"alert:{alert_id}")


def insert_due_row(store: EventStore, *, patient: str, kind: str, severity: str,
                   fires_on: date, key: str | None = None) -> str:
    """A due-item row as the projector writes it (for a patient with no events)."""
    key = key or f"{patient}:{kind}:{fires_on.isoformat()}:{uuid.uuid4()}:now"
    with store.engine.begin() as conn:
        conn.execute(insert(due_items).values(
            key=key, grp=key.rsplit(":", 1)[0], patient=patient, kind=kind, severity=severity,
            fires_on=fires_on, item_due_on=fires_on, item=kind,
            cause_event_ids=orjson.dumps([]).decode()))
    return key


def due_keys(store: EventStore) -> list[str]:
    with store.engine.connect() as conn:
        return [r[0] for r in conn.execute(select(due_items.c.key))]
