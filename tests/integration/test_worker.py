"""The alert worker end to end over real parts: SQLite and PostgreSQL, the official Twilio
client against a local Twilio-compatible server, smtplib against a real SMTP server.
Time is a FixedClock the tests move."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import update

from alerts.channels.base import Channel, DeliveryReceipt, Message, Recipient
from alerts.channels.console import ConsoleChannel
from alerts.channels.smtp_email import SmtpEmailChannel
from alerts.channels.twilio_sms import TwilioSmsChannel
from alerts.errors import WorkerAlreadyRunning, WorkerConfigurationError
from alerts.outbox import Outbox
from alerts.tables import deliveries as D
from alerts.worker import AlertWorker
from events.store import EventStore
from events.store.engine import make_engine
from tests.integration.alert_builders import (
    CONSULTANT_PHONE,
    NEXT_DIGEST,
    NOW,
    NURSE_PHONE,
    RHEUM_EMAIL,
    ROSTER_TOML,
    alerts,
    deliveries,
    hypocalcaemia,
    insert_due_row,
    low_vitamin_d,
    roster,
    stream,
    stream_types,
    void,
    worker,
)
from tests.support.smtp_server import SmtpTestServer
from tests.support.twilio_server import (
    TEST_ACCOUNT_SID,
    TEST_AUTH_TOKEN,
    TEST_FROM,
    TwilioTestServer,
)
from tracker.clock import FixedClock
from tracker.protocol import DEFAULT_PROTOCOL

pytest_plugins = ["tests.support.twilio_server", "tests.support.smtp_server"]


@pytest.fixture
def channels(twilio_server: TwilioTestServer, smtp_server: SmtpTestServer
             ) -> dict[str, Channel]:
    return {
        "sms": TwilioSmsChannel(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, TEST_FROM,
                                base_url=twilio_server.base_url, timeout=3),
        "email": SmtpEmailChannel(smtp_server.host, smtp_server.port,
                                  sender="alerts@example.org", security="none", timeout=3),
    }


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def w(store: EventStore, clock: FixedClock, channels: dict[str, Channel]
      ) -> Iterator[AlertWorker]:
    with worker(store, clock, channels) as running:
        yield running


def the_alert(store: EventStore, kind: str) -> str:
    return next(a.alert_id for a in alerts(store) if a.kind == kind)


# ---------------------------------------------------------------- raise, dedupe, route
def test_urgent_alert_goes_out_at_once_and_only_once(
        store: EventStore, w: AlertWorker, twilio_server: TwilioTestServer,
        clock: FixedClock) -> None:
    hypocalcaemia(store)
    report = w.run_once()
    assert report.evaluation is not None and len(report.evaluation.raised) == 1
    [sms] = twilio_server.messages
    assert sms.to == NURSE_PHONE
    assert "P0001" in sms.body and "calcium" not in sms.body.lower()
    alert_id = the_alert(store, "hypocalcaemia")
    events = stream(store, alert_id)
    assert [e.type for e in events] == ["AlertRaised", "AlertSent"]
    assert events[1].data.provider_id == sms.sid
    assert events[1].data.recipient == "nurse.a"
    # re-evaluating (same instant, an hour later, the next day) raises and sends nothing
    for step in (timedelta(0), timedelta(hours=1), timedelta(days=1)):
        clock.advance(step)
        again = w.run_once()
        assert again.evaluation is not None and again.evaluation.raised == []
    assert len(twilio_server.messages) == 1
    assert len(alerts(store)) == 1


def test_fires_on_its_instant_not_a_minute_before(
        store: EventStore, channels: dict[str, Channel], twilio_server: TwilioTestServer
) -> None:
    # fires on 2025-03-10: local midnight in Madrid (CET) is 2025-03-09 23:00 UTC
    insert_due_row(store, patient="P0009", kind="hypocalcaemia", severity="urgent",
                   fires_on=date(2025, 3, 10))
    clock = FixedClock(datetime(2025, 3, 9, 22, 59, tzinfo=UTC))  # 23:59 local
    with worker(store, clock, channels) as w:
        w.evaluate()
        assert alerts(store) == []
        clock.advance(timedelta(minutes=1))  # 00:00 local
        w.run_once()
    assert [a.kind for a in alerts(store)] == ["hypocalcaemia"]
    assert alerts(store)[0].fires_at == datetime(2025, 3, 9, 23, 0, tzinfo=UTC)
    assert len(twilio_server.messages) == 1


def test_history_beyond_the_lookback_raises_nothing(
        store: EventStore, channels: dict[str, Channel]) -> None:
    insert_due_row(store, patient="P0009", kind="hypocalcaemia", severity="urgent",
                   fires_on=date(2025, 2, 24))  # fired 2025-02-23 23:00 UTC
    fired = datetime(2025, 2, 23, 23, 0, tzinfo=UTC)
    clock = FixedClock(fired + timedelta(days=14, microseconds=1))
    with worker(store, clock, channels) as w:
        assert w.evaluate().too_old == 1
        assert alerts(store) == []
    clock.instant = fired + timedelta(days=14)
    with worker(store, clock, channels) as w:
        assert len(w.evaluate().raised) == 1


# ---------------------------------------------------------------- digest and cancel
def test_non_urgent_alerts_wait_for_one_digest_per_recipient(
        store: EventStore, w: AlertWorker, twilio_server: TwilioTestServer,
        clock: FixedClock) -> None:
    low_vitamin_d(store, "P0002")
    low_vitamin_d(store, "P0003")
    w.run_once()
    assert len(alerts(store)) == 2
    assert twilio_server.messages == []
    assert {d.not_before for d in deliveries(store)} == {NEXT_DIGEST}
    clock.instant = NEXT_DIGEST - timedelta(seconds=1)
    w.run_once()
    assert twilio_server.messages == []
    clock.instant = NEXT_DIGEST
    report = w.run_once()
    assert report.dispatch is not None and report.dispatch.digests == 1
    [digest] = twilio_server.messages
    assert digest.to == NURSE_PHONE and "2 open items for 2 patients" in digest.body
    for a in alerts(store):
        assert stream_types(store, a.alert_id) == ["AlertRaised", "AlertSent"]
    # the same digest date again: nothing more
    clock.advance(timedelta(minutes=5))
    w.run_once()
    assert len(twilio_server.messages) == 1


def test_item_satisfied_before_the_digest_cancels_its_alert(
        store: EventStore, w: AlertWorker, twilio_server: TwilioTestServer,
        clock: FixedClock) -> None:
    vitamin_d = low_vitamin_d(store, "P0002")
    w.run_once()
    alert_id = the_alert(store, "supplement_suggested")
    clock.advance(timedelta(hours=2))
    void(store, "P0002", vitamin_d, clock.instant)
    report = w.run_once()
    assert report.evaluation is not None and report.evaluation.cancelled == [alert_id]
    assert [d.status for d in deliveries(store, alert_id)] == ["cancelled"]
    clock.instant = NEXT_DIGEST
    w.run_once()
    assert twilio_server.messages == []
    assert stream_types(store, alert_id) == ["AlertRaised", "AlertCancelled"]
    [row] = alerts(store)
    assert row.status == "cancelled" and "before it went out" in (row.close_reason or "")


@pytest.mark.parametrize(("raised", "digest"), [
    # Saturday before the spring change: Sunday 08:00 CEST is 06:00 UTC
    (datetime(2025, 3, 29, 9, 0, tzinfo=UTC), datetime(2025, 3, 30, 6, 0, tzinfo=UTC)),
    # Saturday before the autumn change: Sunday 08:00 CET is 07:00 UTC
    (datetime(2025, 10, 25, 9, 0, tzinfo=UTC), datetime(2025, 10, 26, 7, 0, tzinfo=UTC)),
])
def test_digest_at_its_local_hour_across_dst(
        store: EventStore, channels: dict[str, Channel], twilio_server: TwilioTestServer,
        raised: datetime, digest: datetime) -> None:
    low_vitamin_d(store, "P0002", at=raised - timedelta(hours=1))
    clock = FixedClock(raised)
    with worker(store, clock, channels) as w:
        w.run_once()
        assert [d.not_before for d in deliveries(store)] == [digest]
        clock.instant = digest - timedelta(minutes=1)
        w.run_once()
        assert twilio_server.messages == []
        clock.instant = digest
        w.run_once()
        assert len(twilio_server.messages) == 1


# ---------------------------------------------------------------- escalation and ack
def test_escalation_after_exactly_the_configured_delay(
        store: EventStore, w: AlertWorker, twilio_server: TwilioTestServer,
        smtp_server: SmtpTestServer, clock: FixedClock) -> None:
    hypocalcaemia(store)
    w.run_once()
    alert_id = the_alert(store, "hypocalcaemia")
    sent_at = clock.instant
    clock.instant = sent_at + timedelta(minutes=119)
    assert w.run_once().escalated == 0
    assert smtp_server.messages == []
    clock.instant = sent_at + timedelta(minutes=120)
    assert w.run_once().escalated == 1
    [mail] = smtp_server.messages
    assert mail.rcpt_tos == (RHEUM_EMAIL,) and "Escalated (level 1)" in mail.subject
    # level 2 another 120 minutes later, then the chain is exhausted
    clock.advance(timedelta(minutes=119))
    assert w.run_once().escalated == 0
    clock.advance(timedelta(minutes=1))
    assert w.run_once().escalated == 1
    assert twilio_server.count(to=CONSULTANT_PHONE) == 1
    clock.advance(timedelta(days=1))
    assert w.run_once().escalated == 0
    events = stream(store, alert_id)
    assert [e.type for e in events] == [
        "AlertRaised", "AlertSent", "AlertEscalated", "AlertSent", "AlertEscalated",
        "AlertSent"]
    assert [(e.data.to_role, e.data.level) for e in events if e.type == "AlertEscalated"] \
        == [("rheumatologist", 1), ("on_call_consultant", 2)]


def test_the_rosters_delay_minutes_sets_the_escalation_instant(
        store: EventStore, channels: dict[str, Channel], smtp_server: SmtpTestServer,
        clock: FixedClock) -> None:
    shorter = roster(ROSTER_TOML.replace(
        'chain = ["rheumatologist", "on_call_consultant"]',
        'chain = ["rheumatologist", "on_call_consultant"]\ndelay_minutes = 45'))
    hypocalcaemia(store)
    with worker(store, clock, channels, the_roster=shorter) as w:
        w.run_once()
        sent_at = clock.instant
        [alert] = alerts(store)
        assert alert.escalate_at == sent_at + timedelta(minutes=45)
        clock.instant = sent_at + timedelta(minutes=44, seconds=59)
        assert w.run_once().escalated == 0
        clock.instant = sent_at + timedelta(minutes=45)
        assert w.run_once().escalated == 1
        [alert] = alerts(store)
        assert alert.escalate_at == clock.instant + timedelta(minutes=45)
    assert len(smtp_server.messages) == 1


def test_a_roster_delay_longer_than_the_protocols_refuses_to_start(
        store: EventStore, channels: dict[str, Channel], clock: FixedClock) -> None:
    longer = roster(ROSTER_TOML.replace(
        'chain = ["rheumatologist", "on_call_consultant"]',
        'chain = ["rheumatologist", "on_call_consultant"]\ndelay_minutes = 121'))
    with pytest.raises(WorkerConfigurationError, match=r"delay_minutes = 121 .* \(120\)"):
        worker(store, clock, channels, the_roster=longer)


def test_acknowledgement_stops_escalation(
        store: EventStore, w: AlertWorker, smtp_server: SmtpTestServer,
        clock: FixedClock) -> None:
    hypocalcaemia(store)
    w.run_once()
    alert_id = the_alert(store, "hypocalcaemia")
    clock.advance(timedelta(minutes=60))
    with w.outbox.transaction() as writer:
        w.outbox.acknowledge(writer, alert_id, by="dr.who", note="calcium given",
                             now=clock.instant)
    clock.advance(timedelta(minutes=600))
    assert w.run_once().escalated == 0
    assert smtp_server.messages == []
    events = stream(store, alert_id)
    assert [e.type for e in events] == ["AlertRaised", "AlertSent", "AlertAcknowledged"]
    assert events[-1].data.by == "dr.who" and events[-1].recorded_by == "dr.who"


# ---------------------------------------------------------------- failures
def test_unsubscribed_recipient_is_dead_lettered_not_retried(
        store: EventStore, w: AlertWorker, twilio_server: TwilioTestServer,
        clock: FixedClock) -> None:
    twilio_server.reject(NURSE_PHONE, code=21610)
    hypocalcaemia(store)
    w.run_once()
    alert_id = the_alert(store, "hypocalcaemia")
    [delivery] = deliveries(store, alert_id)
    assert delivery.status == "dead" and "21610" in (delivery.last_error or "")
    failed = stream(store, alert_id)[-1]
    assert failed.type == "AlertFailed" and failed.data.permanent
    requests = len(twilio_server.requests)
    clock.advance(timedelta(hours=1))
    w.dispatch()
    assert len(twilio_server.requests) == requests == 1
    # nobody at the first level could be told: the alert escalates at once
    assert w.run_once().escalated == 1


def test_twilio_server_errors_then_success_is_delivered_once(
        store: EventStore, w: AlertWorker, twilio_server: TwilioTestServer,
        clock: FixedClock) -> None:
    twilio_server.fail_next(2, status=500)
    hypocalcaemia(store)
    w.run_once()
    alert_id = the_alert(store, "hypocalcaemia")
    [d] = deliveries(store, alert_id)
    assert (d.status, d.attempts, d.not_before) == ("pending", 1, NOW + timedelta(seconds=30))
    clock.advance(timedelta(seconds=29))
    w.dispatch()
    assert len(twilio_server.requests) == 1  # not before its backoff
    clock.advance(timedelta(seconds=1))
    w.dispatch()
    [d] = deliveries(store, alert_id)
    assert (d.status, d.attempts, d.not_before) == (
        "pending", 2, clock.instant + timedelta(seconds=60))
    clock.advance(timedelta(seconds=60))
    w.dispatch()
    assert twilio_server.count(to=NURSE_PHONE) == 1
    [d] = deliveries(store, alert_id)
    assert d.status == "sent" and d.attempts == 3
    events = stream(store, alert_id)
    assert [e.type for e in events] == ["AlertRaised", "AlertFailed", "AlertFailed",
                                        "AlertSent"]
    assert [e.data.attempt for e in events[1:]] == [1, 2, 3]
    assert not any(e.data.permanent for e in events[1:3])


def test_transient_failures_end_dead_after_the_last_attempt(
        store: EventStore, w: AlertWorker, twilio_server: TwilioTestServer,
        clock: FixedClock) -> None:
    twilio_server.fail_next(10, status=503)
    hypocalcaemia(store)
    w.run_once()
    for _ in range(6):
        clock.advance(timedelta(minutes=15))
        w.dispatch()
    [d] = deliveries(store)
    assert (d.status, d.attempts) == ("dead", 4)
    assert len(twilio_server.requests) == 4


def test_smtp_down_then_up_is_retried_and_delivered(
        store: EventStore, clock: FixedClock, channels: dict[str, Channel],
        smtp_server: SmtpTestServer) -> None:
    by_email = roster().model_copy(update={"routing": roster().routing.model_copy(
        update={"default": ("rheumatologist",)})})
    smtp_server.stop()
    hypocalcaemia(store)
    with worker(store, clock, channels, the_roster=by_email) as w:
        w.run_once()
        [d] = deliveries(store)
        assert d.status == "pending" and "refused" in (d.last_error or "")
        smtp_server.start()
        clock.advance(timedelta(seconds=30))
        w.dispatch()
    [mail] = smtp_server.messages
    assert mail.rcpt_tos == (RHEUM_EMAIL,)
    [d] = deliveries(store)
    assert d.status == "sent" and d.provider_id == mail.message_id


def test_unknown_outcome_is_marked_and_not_repeated(
        store: EventStore, w: AlertWorker, twilio_server: TwilioTestServer,
        clock: FixedClock) -> None:
    twilio_server.drop_next(1)  # the server takes the message, then hangs up
    hypocalcaemia(store)
    w.run_once()
    alert_id = the_alert(store, "hypocalcaemia")
    [d] = deliveries(store, alert_id)
    assert d.status == "unknown"
    failed = stream(store, alert_id)[-1]
    assert failed.type == "AlertFailed" and failed.data.outcome_unknown
    clock.advance(timedelta(hours=1))
    w.dispatch()
    assert len(twilio_server.requests) == 1 and len(twilio_server.messages) == 1


# ---------------------------------------------------------------- workers
def test_second_sqlite_worker_is_refused(tmp_path: object, sqlite_template: object) -> None:
    import shutil
    from pathlib import Path

    target = Path(str(tmp_path)) / "one.db"
    shutil.copy(str(sqlite_template), target)
    stores = [EventStore(make_engine(f"sqlite:///{target}")) for _ in range(2)]
    channels = {"console": ConsoleChannel()}
    first = worker(stores[0], FixedClock(NOW), channels, worker_id="w1").start()
    try:
        with pytest.raises(WorkerAlreadyRunning, match="already running on this SQLite"):
            worker(stores[1], FixedClock(NOW), channels, worker_id="w2").start()
    finally:
        first.close()
    worker(stores[1], FixedClock(NOW), channels, worker_id="w2").start().close()
    for s in stores:
        s.engine.dispose()


def test_stop_releases_the_claims_not_yet_sent(
        store: EventStore, clock: FixedClock) -> None:
    class StopAfterOne(ConsoleChannel):
        """The console channel; the worker is asked to stop while it sends."""

        stop = threading.Event()

        def send(self, message: Message, recipient: Recipient) -> DeliveryReceipt:
            self.stop.set()
            return super().send(message, recipient)

    for i in range(3):
        hypocalcaemia(store, f"P000{i}")
    channel = StopAfterOne()
    w = worker(store, clock, {"console": channel}, batch_size=10)
    channel.stop = w.stop_event
    with w:
        w.catch_up()
        w.evaluate()
        report = w.dispatch()
    assert report.sent == 1 and report.released == 2
    statuses = sorted(d.status for d in deliveries(store))
    assert statuses == ["pending", "pending", "sent"]
    assert all(d.attempts == 0 for d in deliveries(store) if d.status == "pending")


def test_run_forever_stops_cleanly(store: EventStore, clock: FixedClock,
                                   twilio_server: TwilioTestServer,
                                   channels: dict[str, Channel]) -> None:
    hypocalcaemia(store)
    w = worker(store, clock, channels, poll_seconds=0.2)
    thread = threading.Thread(target=w.run_forever, kwargs={"install_signals": False})
    thread.start()
    for _ in range(100):
        if twilio_server.messages:
            break
        threading.Event().wait(0.1)
    w.request_stop()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(twilio_server.messages) == 1
    assert w.build_scheduler().get_job("digest") is not None


def test_a_database_outage_fails_the_job_not_the_worker(clock: FixedClock,
                                                        tmp_path: object) -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none",
                         connect_args={"connect_timeout": 1})
    w = AlertWorker(EventStore(engine), DEFAULT_PROTOCOL, clock,
                    {"console": ConsoleChannel()}, roster(), worker_id="w1")
    assert w._guarded("evaluate", w.evaluate)() is None  # logged, not raised
    engine.dispose()


def test_expired_lease_of_a_dead_worker_is_taken_over(
        store: EventStore, clock: FixedClock, channels: dict[str, Channel],
        twilio_server: TwilioTestServer) -> None:
    hypocalcaemia(store)
    with worker(store, clock, channels, worker_id="dead") as first:
        first.catch_up()
        first.evaluate()
        [claimed] = first.outbox.claim(owner="dead", now=clock.instant, mode="immediate",
                                       limit=10, lease=timedelta(seconds=120))
    # a worker without a heartbeat row (an older version) died holding its lease: only
    # the lease tells when its claim may be taken over
    with store.engine.begin() as conn:
        conn.execute(update(D).where(D.c.delivery_id == claimed.delivery_id)
                     .values(status="sending", lease_owner="ghost", attempts=1,
                             lease_until=claimed.lease_until))
    with worker(store, clock, channels, worker_id="alive") as second:
        assert second.dispatch().sent == 0  # lease still running
        clock.advance(timedelta(seconds=121))
        assert second.dispatch().sent == 1
    [d] = deliveries(store)
    assert d.status == "sent" and d.attempts == 2
    assert Outbox(store, DEFAULT_PROTOCOL.zone).release("dead", now=clock.instant) == 0
