"""The outbox on SQLite and PostgreSQL: insert-if-absent raising, claims with leases
(SKIP LOCKED on PostgreSQL), release, acknowledgement and cancellation, each change
written with its event in the alert's stream."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from alerts.outbox import IMMEDIATE, Outbox, Route
from alerts.rules import AlertSpec
from alerts.tables import deliveries as D
from events.store import EventStore
from events.store.engine import make_engine
from tests.integration.alert_builders import deliveries, stream, stream_types
from tracker.protocol import DEFAULT_PROTOCOL

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=120)
ROUTES = [Route("nurse.a", "sms"), Route("rheum.b", "email"), Route("nurse.a", "sms")]


def spec(key: str = "P1:hypocalcaemia:2025-03-10:e1:now", severity: str = "urgent"
         ) -> AlertSpec:
    return AlertSpec(dedupe_key=key, group=key.rsplit(":", 1)[0], patient="P1",
                     kind="hypocalcaemia", severity=severity, item="hypocalcaemia",
                     due_on=date(2025, 3, 10), fires_at=NOW - timedelta(hours=10),
                     cause_event_ids=("e1",))


def raise_one(outbox: Outbox, s: AlertSpec | None = None) -> str | None:
    with outbox.transaction() as writer:
        return outbox.raise_alert(writer, s or spec(), ROUTES, now=NOW, not_before=NOW,
                                  by="test")


@pytest.fixture
def outbox(store: EventStore) -> Outbox:
    return Outbox(store, DEFAULT_PROTOCOL.zone)


def test_raising_is_insert_if_absent(store: EventStore, outbox: Outbox) -> None:
    alert_id = raise_one(outbox)
    assert alert_id is not None
    assert raise_one(outbox) is None
    rows = deliveries(store, alert_id)
    assert sorted((d.recipient, d.channel, d.status) for d in rows) == [
        ("nurse.a", "sms", "pending"), ("rheum.b", "email", "pending")]
    [raised] = stream(store, alert_id)
    assert raised.type == "AlertRaised" and raised.data.dedupe_key == spec().dedupe_key
    assert raised.data.due_at == NOW - timedelta(hours=10)


def test_racing_workers_raise_an_alert_once(db_url: str) -> None:
    engines = [make_engine(db_url) for _ in range(4)]
    boxes = [Outbox(EventStore(e), DEFAULT_PROTOCOL.zone) for e in engines]
    results: list[str | None] = []
    barrier = threading.Barrier(len(boxes))

    def race(box: Outbox) -> None:
        barrier.wait()
        results.append(raise_one(box))

    threads = [threading.Thread(target=race, args=(b,)) for b in boxes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r is not None]
    assert len(results) == 4 and len(winners) == 1
    assert stream_types(boxes[0].store, winners[0]) == ["AlertRaised"]
    for e in engines:
        e.dispose()


def test_claims_do_not_overlap_and_expired_leases_are_reclaimed(outbox: Outbox) -> None:
    for i in range(3):
        raise_one(outbox, spec(f"P1:hypocalcaemia:2025-03-10:e{i}:now"))
    first = outbox.claim(owner="a", now=NOW, mode=IMMEDIATE, limit=4, lease=LEASE)
    second = outbox.claim(owner="b", now=NOW, mode=IMMEDIATE, limit=4, lease=LEASE)
    assert len(first) == 4 and len(second) == 2
    assert not {d.delivery_id for d in first} & {d.delivery_id for d in second}
    assert all(d.status == "sending" and d.attempts == 1 for d in first)
    assert outbox.claim(owner="c", now=NOW + LEASE, mode=IMMEDIATE, limit=9, lease=LEASE) == []
    late = outbox.claim(owner="c", now=NOW + LEASE + timedelta(microseconds=1),
                        mode=IMMEDIATE, limit=9, lease=LEASE)
    assert len(late) == 6 and all(d.attempts == 2 and d.lease_owner == "c" for d in late)


def test_not_before_is_respected(outbox: Outbox) -> None:
    with outbox.transaction() as writer:
        outbox.raise_alert(writer, spec(severity="info"), ROUTES, now=NOW,
                           not_before=NOW + timedelta(hours=1), by="test")
    assert outbox.claim(owner="a", now=NOW, mode="digest", limit=9, lease=LEASE) == []
    assert len(outbox.claim(owner="a", now=NOW + timedelta(hours=1), mode="digest", limit=9,
                            lease=LEASE)) == 2


def test_release_gives_back_unsent_claims_without_counting_an_attempt(
        store: EventStore, outbox: Outbox) -> None:
    raise_one(outbox)
    claimed = outbox.claim(owner="a", now=NOW, mode=IMMEDIATE, limit=9, lease=LEASE)
    assert outbox.release("b", now=NOW) == 0
    assert outbox.release("a", now=NOW, delivery_ids=[claimed[0].delivery_id]) == 1
    assert outbox.release("a", now=NOW) == 1
    assert {(d.status, d.attempts, d.lease_owner) for d in deliveries(store)} == {
        ("pending", 0, None)}


def test_skip_locked_on_postgresql(pg_url: str) -> None:
    engine = make_engine(pg_url)
    box = Outbox(EventStore(engine), DEFAULT_PROTOCOL.zone)
    raise_one(box)
    with engine.connect() as holder, holder.begin():
        locked = holder.execute(select(D.c.delivery_id).limit(1).with_for_update()).scalar()
        got = box.claim(owner="a", now=NOW, mode=IMMEDIATE, limit=9, lease=LEASE)
        assert [d.delivery_id for d in got] != [] and locked not in {
            d.delivery_id for d in got}
    engine.dispose()


def test_every_outcome_is_an_event_in_the_alert_stream(store: EventStore,
                                                       outbox: Outbox) -> None:
    alert_id = raise_one(outbox)
    assert alert_id is not None
    sms, email = sorted(outbox.claim(owner="a", now=NOW, mode=IMMEDIATE, limit=9, lease=LEASE),
                        key=lambda d: d.channel, reverse=True)
    with outbox.transaction() as writer:
        outbox.record_sent(writer, sms, provider_id="SM1", channel="sms", now=NOW, by="w",
                           escalate_at=NOW + timedelta(minutes=120))
    with outbox.transaction() as writer:
        status = outbox.record_failure(writer, email, error="mail server deferred (SMTP 451)",
                                       permanent=False, unknown=False,
                                       retry_at=NOW + timedelta(seconds=30), now=NOW, by="w",
                                       escalate_at=NOW)
    assert status == "pending"
    later = NOW + timedelta(minutes=5)
    with outbox.transaction() as writer:
        before = outbox.acknowledge(writer, alert_id, by="dr.who", note=None, now=later)
    assert before.status == "open"
    with outbox.transaction() as writer:
        assert outbox.acknowledge(writer, alert_id, by="dr.x", note=None,
                                  now=later).status == "acknowledged"
        assert not outbox.cancel(writer, alert_id, "item no longer due", now=later, by="w")
    events = stream(store, alert_id)
    assert [e.type for e in events] == ["AlertRaised", "AlertSent", "AlertFailed",
                                        "AlertAcknowledged"]
    assert events[1].data.provider_id == "SM1" and events[2].data.recipient == "rheum.b"
    assert events[3].recorded_by == "dr.who"
    assert {d.channel: d.status for d in deliveries(store, alert_id)} == {
        "sms": "sent", "email": "cancelled"}
    with store.engine.connect() as conn:
        [row] = outbox.alerts(conn)
    assert row.first_sent_at == NOW and row.escalate_at is None and row.closed_by == "dr.who"


def test_cancel_before_anything_went_out(store: EventStore, outbox: Outbox) -> None:
    alert_id = raise_one(outbox)
    assert alert_id is not None
    with outbox.transaction() as writer:
        assert outbox.cancel(writer, alert_id, "item no longer due", now=NOW, by="w")
    assert {d.status for d in deliveries(store, alert_id)} == {"cancelled"}
    assert stream_types(store, alert_id) == ["AlertRaised", "AlertCancelled"]
    assert outbox.claim(owner="a", now=NOW, mode=IMMEDIATE, limit=9, lease=LEASE) == []
