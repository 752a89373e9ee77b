"""Delivery receipts end to end, on SQLite and PostgreSQL: the real alert worker sends
through the official Twilio client to the local Twilio-compatible server, which posts
signed status callbacks to the real web application (FastAPI TestClient) and answers the
worker's polls (message fetch and list). Time is a FixedClock the tests move."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from alerts.channels.base import Channel
from alerts.channels.smtp_email import SmtpEmailChannel
from alerts.channels.twilio_sms import TwilioSmsChannel
from alerts.roster import Roster
from alerts.tables import deliveries as D
from alerts.worker import AlertWorker
from events.store import EventStore
from events.store.tables import events as E
from tests.integration.alert_builders import (
    NOW,
    NURSE_PHONE,
    ROSTER_TOML,
    alerts,
    deliveries,
    hypocalcaemia,
    roster,
    stream,
    stream_types,
    worker,
)
from tests.support.smtp_server import SmtpTestServer
from tests.support.twilio_server import (
    TEST_ACCOUNT_SID,
    TEST_AUTH_TOKEN,
    TEST_FROM,
    TwilioTestServer,
)
from tracker.bootstrap import App, bootstrap
from tracker.clock import FixedClock
from tracker.settings import Settings
from web.app import create_app
from web.settings import WebSettings

pytest_plugins = ["tests.support.twilio_server", "tests.support.smtp_server"]

PUBLIC = "https://cno.example.org"
CALLBACK = PUBLIC + "/twilio/status"
#: what the application sees behind a proxy that rewrote the Host header
BEHIND_PROXY = "http://testserver/twilio/status"
NURSE_EMAIL = "nurse.a@example.org"
#: the nurse can also be reached by e-mail: an undelivered SMS goes there
ROSTER_WITH_NURSE_EMAIL = ROSTER_TOML.replace(
    f'phone = "{NURSE_PHONE}"', f'phone = "{NURSE_PHONE}"\nemail = "{NURSE_EMAIL}"', 1)


@dataclass
class Rig:
    core: App
    clock: FixedClock
    twilio: TwilioSmsChannel
    server: TwilioTestServer
    smtp: SmtpTestServer
    client: TestClient
    worker: AlertWorker

    @property
    def store(self) -> EventStore:
        return self.core.store

    def send_urgent(self) -> tuple[str, str]:
        """An urgent alert sent by SMS to the nurse: (alert id, message SID)."""
        hypocalcaemia(self.store)
        self.worker.run_once()
        alert_id = alerts(self.store)[0].alert_id
        sms = [d for d in deliveries(self.store, alert_id) if d.channel == "sms"]
        assert len(sms) == 1 and sms[0].status == "sent" and sms[0].provider_id
        return alert_id, sms[0].provider_id

    def cycle_without_poll(self) -> None:
        self.worker.catch_up()
        self.worker.evaluate()
        self.worker.dispatch()

    def callback(self, sid: str, status: str, code: int | None = None, **kw: object) -> int:
        kw.setdefault("to_url", BEHIND_PROXY)
        return self.server.post_status(sid, status, code, via=self.client, **kw)  # type: ignore[arg-type]

    def event_count(self) -> int:
        with self.store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(E)).scalar_one())


def make_rig(db_url: str, server: TwilioTestServer, smtp: SmtpTestServer,
             the_roster: Roster, *, public_url: str | None = PUBLIC) -> Iterator[Rig]:
    clock = FixedClock(NOW)
    server.use_clock(clock.now)
    core = bootstrap(Settings(database_url=db_url, twilio_account_sid=TEST_ACCOUNT_SID,
                              twilio_auth_token=TEST_AUTH_TOKEN,  # type: ignore[arg-type]
                              twilio_from_number=TEST_FROM, public_url=public_url),
                     clock=clock)
    sms = TwilioSmsChannel(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, TEST_FROM,
                           base_url=server.base_url, timeout=3,
                           status_callback=(public_url + "/twilio/status") if public_url
                           else None)
    channels: dict[str, Channel] = {
        "sms": sms,
        "email": SmtpEmailChannel(smtp.host, smtp.port, sender="alerts@example.org",
                                  security="none", timeout=3)}
    app = create_app(core, WebSettings(public_url=public_url), roster=the_roster)
    client = TestClient(app)
    with worker(core.store, clock, channels, the_roster=the_roster,
                receipt_poll_seconds=60) as running:
        yield Rig(core, clock, sms, server, smtp, client, running)
    client.close()
    core.close()


@pytest.fixture
def rig(db_url: str, twilio_server: TwilioTestServer, smtp_server: SmtpTestServer
        ) -> Iterator[Rig]:
    yield from make_rig(db_url, twilio_server, smtp_server, roster())


@pytest.fixture
def rig_email(db_url: str, twilio_server: TwilioTestServer, smtp_server: SmtpTestServer
              ) -> Iterator[Rig]:
    yield from make_rig(db_url, twilio_server, smtp_server, roster(ROSTER_WITH_NURSE_EMAIL))


def receipt_events(store: EventStore, alert_id: str) -> list[str]:
    return [t for t in stream_types(store, alert_id)
            if t in ("AlertDelivered", "AlertUndelivered")]


# ----------------------------------------------------------------- callbacks
def test_each_sms_asks_for_a_status_callback_at_the_public_url(rig: Rig) -> None:
    _, sid = rig.send_urgent()
    assert rig.server.message(sid).status_callback == CALLBACK


def test_unsigned_or_wrongly_signed_callbacks_are_refused_and_record_nothing(rig: Rig) -> None:
    alert_id, sid = rig.send_urgent()
    before = rig.event_count()
    assert rig.callback(sid, "delivered", signature="") == 403
    assert rig.callback(sid, "delivered", signature="c2lnbmF0dXJl") == 403
    # signed over the address the request arrived at, not the public URL Twilio was given
    params = rig.server.status_params(sid, "delivered")
    assert rig.server.post_signed(BEHIND_PROXY, params, via=rig.client) == 403
    # signed right, but a value changed on the way
    good = rig.server.sign(CALLBACK, params)
    forged = {**params, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert rig.server.post_signed(CALLBACK, forged, to_url=BEHIND_PROXY, via=rig.client,
                                  signature=good) == 403
    assert rig.event_count() == before
    assert receipt_events(rig.store, alert_id) == []
    assert [d.receipt for d in deliveries(rig.store, alert_id)] == [None]


def test_without_a_public_url_no_callback_is_asked_for_nor_accepted(
        db_url: str, twilio_server: TwilioTestServer, smtp_server: SmtpTestServer) -> None:
    for r in make_rig(db_url, twilio_server, smtp_server, roster(), public_url=None):
        _, sid = r.send_urgent()
        assert r.server.message(sid).status_callback is None
        assert r.server.post_status(sid, "delivered", url=CALLBACK, to_url=BEHIND_PROXY,
                                    via=r.client) == 403


def test_a_retried_callback_records_one_delivered_event(rig: Rig) -> None:
    alert_id, sid = rig.send_urgent()
    answers = rig.server.post_statuses(sid, ["sent", "delivered", "delivered", "delivered"],
                                       to_url=BEHIND_PROXY, via=rig.client)
    assert answers == [204, 204, 204, 204]
    assert receipt_events(rig.store, alert_id) == ["AlertDelivered"]
    event = next(e for e in stream(rig.store, alert_id) if e.type == "AlertDelivered")
    assert (event.data.provider_id, event.data.recipient, event.data.source) == (
        sid, "nurse.a", "callback")
    assert event.recorded_by == "twilio:status-callback"
    assert event.idempotency_key.startswith(f"receipt:{sid}:delivered:")
    (d,) = deliveries(rig.store, alert_id)
    assert (d.status, d.receipt, d.receipt_code) == ("sent", "delivered", None)


def test_out_of_order_callbacks_never_regress_the_outcome(rig: Rig) -> None:
    alert_id, sid = rig.send_urgent()
    assert rig.server.post_statuses(sid, ["delivered", "sent", "queued", ("undelivered", 30003)],
                                    to_url=BEHIND_PROXY, via=rig.client) == [204] * 4
    assert receipt_events(rig.store, alert_id) == ["AlertDelivered"]
    (d,) = deliveries(rig.store, alert_id)
    assert (d.status, d.receipt) == ("sent", "delivered")
    assert alerts(rig.store)[0].level == 0  # nothing escalated


def test_a_progress_status_is_kept_without_an_event(rig: Rig) -> None:
    alert_id, sid = rig.send_urgent()
    assert rig.callback(sid, "sent") == 204
    assert receipt_events(rig.store, alert_id) == []
    assert deliveries(rig.store, alert_id)[0].receipt == "sent"


def test_a_signed_callback_for_an_unknown_message_is_acknowledged_and_ignored(rig: Rig) -> None:
    rig.send_urgent()
    before = rig.event_count()
    params = {"MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered",
              "AccountSid": TEST_ACCOUNT_SID, "To": NURSE_PHONE, "From": TEST_FROM}
    assert rig.server.post_signed(CALLBACK, params, to_url=BEHIND_PROXY, via=rig.client) == 204
    assert rig.event_count() == before


@pytest.mark.parametrize("code", [30003, 30005, 30006])
def test_an_undelivered_urgent_sms_goes_to_the_other_channel_at_once(
        rig_email: Rig, code: int) -> None:
    rig = rig_email
    alert_id, sid = rig.send_urgent()
    assert rig.callback(sid, "undelivered", code) == 204
    assert rig.callback(sid, "undelivered", code) == 204  # Twilio retries: still one
    assert receipt_events(rig.store, alert_id) == ["AlertUndelivered"]
    event = next(e for e in stream(rig.store, alert_id) if e.type == "AlertUndelivered")
    assert (event.data.status, event.data.error_code, event.data.source) == (
        "undelivered", code, "callback")
    rows = {d.channel: d for d in deliveries(rig.store, alert_id)}
    assert rows["sms"].status == "dead" and rows["sms"].receipt_code == code
    assert str(code) in (rows["sms"].last_error or "")
    assert rows["email"].status == "pending" and rows["email"].not_before == NOW
    # the worker's next dispatch, at the same instant: no waiting for the escalation delay
    report = rig.worker.dispatch()
    assert report.sent == 1
    assert [m.rcpt_tos for m in rig.smtp.messages] == [(NURSE_EMAIL,)]
    assert alerts(rig.store)[0].level == 0


def test_an_undelivered_urgent_sms_with_no_other_channel_escalates_at_once(rig: Rig) -> None:
    alert_id, sid = rig.send_urgent()
    before = alerts(rig.store)[0].escalate_at
    assert before == NOW + timedelta(minutes=120)
    assert rig.callback(sid, "failed", 30005) == 204
    assert alerts(rig.store)[0].escalate_at == NOW
    assert rig.worker.escalate() == 1
    rig.worker.dispatch()
    assert "AlertEscalated" in stream_types(rig.store, alert_id)
    assert [m.rcpt_tos for m in rig.smtp.messages] == [("rheum.b@example.org",)]


def test_an_undelivered_sms_of_an_acknowledged_alert_is_recorded_only(rig: Rig) -> None:
    alert_id, sid = rig.send_urgent()
    from alerts.outbox import Outbox

    outbox = Outbox(rig.store, rig.core.protocol.zone)
    with outbox.transaction() as writer:
        outbox.acknowledge(writer, alert_id, by="nurse.a", note=None, now=NOW)
    assert rig.callback(sid, "undelivered", 30003) == 204
    assert receipt_events(rig.store, alert_id) == ["AlertUndelivered"]
    assert alerts(rig.store)[0].escalate_at is None
    assert [d.channel for d in deliveries(rig.store, alert_id)] == ["sms"]


# ----------------------------------------------------------------- polling
def test_polling_settles_a_sent_sms_and_a_late_callback_agrees(rig: Rig) -> None:
    alert_id, sid = rig.send_urgent()
    rig.server.set_status(sid, "delivered")
    rig.clock.advance(timedelta(seconds=30))
    report = rig.worker.poll_receipts()
    assert report is not None and report.checked == 0  # too young: a callback may come
    rig.clock.advance(timedelta(seconds=31))
    report = rig.worker.poll_receipts()
    assert report is not None and (report.checked, report.delivered) == (1, 1)
    assert any(r.method == "GET" and r.path.endswith(f"/Messages/{sid}.json")
               for r in rig.server.requests)
    assert rig.callback(sid, "delivered") == 204  # the callback arrives after the poll
    assert receipt_events(rig.store, alert_id) == ["AlertDelivered"]
    delivered = next(e for e in stream(rig.store, alert_id) if e.type == "AlertDelivered")
    assert delivered.data.source == "poll"
    rig.clock.advance(timedelta(minutes=5))
    report = rig.worker.poll_receipts()
    assert report is not None and report.checked == 0  # final: never asked again


def test_a_callback_first_then_a_poll_records_one_event(rig_email: Rig) -> None:
    rig = rig_email
    alert_id, sid = rig.send_urgent()
    assert rig.callback(sid, "undelivered", 30003) == 204
    rig.clock.advance(timedelta(minutes=2))
    report = rig.worker.poll_receipts()
    assert report is not None and report.undelivered == 0
    assert receipt_events(rig.store, alert_id) == ["AlertUndelivered"]
    assert sorted(d.channel for d in deliveries(rig.store, alert_id)) == ["email", "sms"]


def test_polling_finds_an_undelivered_sms_and_falls_back(rig_email: Rig) -> None:
    rig = rig_email
    alert_id, sid = rig.send_urgent()
    rig.server.set_status(sid, "undelivered", 30006)  # no callback reaches the hospital
    rig.clock.advance(timedelta(seconds=61))
    rig.worker.run_once()  # polls after dispatch; the fallback goes out in the next one
    event = next(e for e in stream(rig.store, alert_id) if e.type == "AlertUndelivered")
    assert (event.data.error_code, event.data.source) == (30006, "poll")
    rig.worker.dispatch()
    assert [m.rcpt_tos for m in rig.smtp.messages] == [(NURSE_EMAIL,)]


def test_polling_settles_an_unknown_outcome_by_the_list_api(rig: Rig) -> None:
    hypocalcaemia(rig.store)
    rig.server.drop_next(1)  # Twilio takes the message, the answer is lost
    rig.cycle_without_poll()
    alert_id = alerts(rig.store)[0].alert_id
    (d,) = deliveries(rig.store, alert_id)
    assert d.status == "unknown" and d.provider_id is None
    (sms,) = rig.server.messages
    rig.server.set_status(sms.sid, "delivered")
    rig.clock.advance(timedelta(seconds=10))
    report = rig.worker.poll_receipts()
    assert report is not None and (report.resolved, report.delivered) == (1, 1)
    listed = [r for r in rig.server.requests if r.method == "GET"
              and r.path.split("?")[0].endswith("/Messages.json")]
    assert listed and listed[0].form["To"] == NURSE_PHONE
    assert listed[0].form["From"] == TEST_FROM and listed[0].form["DateSent"] == "2025-03-10"
    (d,) = deliveries(rig.store, alert_id)
    assert (d.status, d.provider_id, d.receipt) == ("sent", sms.sid, "delivered")
    types = stream_types(rig.store, alert_id)
    assert types.count("AlertSent") == 1 and types.count("AlertDelivered") == 1
    assert types.index("AlertSent") < types.index("AlertDelivered")
    assert len(rig.server.messages) == 1  # not sent twice


def test_an_unknown_outcome_twilio_never_had_is_sent_again(rig: Rig) -> None:
    hypocalcaemia(rig.store)
    rig.server.drop_next(1)
    rig.cycle_without_poll()
    (lost,) = rig.server.messages
    rig.server.lose(lost.sid)  # the request never reached Twilio after all
    alert_id = alerts(rig.store)[0].alert_id
    rig.clock.advance(timedelta(minutes=1))
    report = rig.worker.poll_receipts()
    assert report is not None and report.resent == 0  # within the grace: not yet
    rig.clock.advance(timedelta(minutes=5))
    report = rig.worker.poll_receipts()
    assert report is not None and report.resent == 1
    assert deliveries(rig.store, alert_id)[0].status == "pending"
    rig.worker.dispatch()
    assert rig.server.count(to=NURSE_PHONE) == 1
    (d,) = deliveries(rig.store, alert_id)
    assert d.status == "sent" and d.provider_id == rig.server.messages[0].sid


def test_a_failed_lookup_is_tried_at_the_next_interval(rig: Rig) -> None:
    alert_id, sid = rig.send_urgent()
    rig.server.set_status(sid, "delivered")
    rig.clock.advance(timedelta(seconds=61))
    rig.server.fail_next(1, status=503)
    report = rig.worker.poll_receipts()
    assert report is not None and report.failed_lookups == 1
    rig.clock.advance(timedelta(seconds=59))
    report = rig.worker.poll_receipts()
    assert report is not None and report.checked == 0
    rig.clock.advance(timedelta(seconds=1))
    report = rig.worker.poll_receipts()
    assert report is not None and report.delivered == 1
    assert receipt_events(rig.store, alert_id) == ["AlertDelivered"]


def test_polling_is_bounded_per_cycle(db_url: str, twilio_server: TwilioTestServer,
                                      smtp_server: SmtpTestServer) -> None:
    for r in make_rig(db_url, twilio_server, smtp_server, roster()):
        r.worker.poller.batch = 2  # type: ignore[union-attr]
        for p in ("P0001", "P0002", "P0003"):
            hypocalcaemia(r.store, p)
        r.worker.run_once()
        r.clock.advance(timedelta(seconds=61))
        first = r.worker.poll_receipts()
        second = r.worker.poll_receipts()
        assert first is not None and second is not None
        assert (first.checked, second.checked) == (2, 1)
        with r.store.engine.connect() as conn:
            assert conn.execute(select(func.count()).where(
                D.c.checked_at.is_not(None))).scalar_one() == 3


# ----------------------------------------------------------------- batches (group commit)
def test_a_batch_of_receipts_records_each_outcome_once_in_order(rig: Rig) -> None:
    from alerts.receipts import Receipt, ReceiptResult

    hypocalcaemia(rig.store, "P0001")
    hypocalcaemia(rig.store, "P0002")
    rig.worker.run_once()
    by_patient = {a.patient: a.alert_id for a in alerts(rig.store)}
    sid = {p: deliveries(rig.store, a)[0].provider_id for p, a in by_patient.items()}
    outcomes = rig.worker.receipts.record_many([
        Receipt(sid["P0001"], "sent"), Receipt(sid["P0001"], "delivered"),
        Receipt(sid["P0001"], "delivered"), Receipt("SM" + "e" * 32, "delivered"),
        Receipt(sid["P0002"], "undelivered", 30003), Receipt(sid["P0002"], "delivered"),
        Receipt(sid["P0002"], "bogus")], now=NOW, by="test", source="callback")
    assert [o.result for o in outcomes] == [
        ReceiptResult.PROGRESS, ReceiptResult.DELIVERED, ReceiptResult.STALE,
        ReceiptResult.UNKNOWN_MESSAGE, ReceiptResult.UNDELIVERED, ReceiptResult.STALE,
        ReceiptResult.IGNORED]
    assert receipt_events(rig.store, by_patient["P0001"]) == ["AlertDelivered"]
    assert receipt_events(rig.store, by_patient["P0002"]) == ["AlertUndelivered"]
    assert deliveries(rig.store, by_patient["P0001"])[0].receipt == "delivered"
    (d,) = deliveries(rig.store, by_patient["P0002"])
    assert (d.receipt, d.receipt_code, d.status) == ("undelivered", 30003, "dead")
    assert outcomes[4].escalate_now == [by_patient["P0002"]]


def test_alerts_show_tells_the_receipt(rig: Rig) -> None:
    from alerts.cli import _history_line

    alert_id, sid = rig.send_urgent()
    rig.callback(sid, "undelivered", 30005)
    lines = [_history_line(e, rig.core.protocol.zone) for e in stream(rig.store, alert_id)]
    assert any(f"undelivered: nurse.a by sms (provider id {sid}, code 30005, by callback)"
               in line for line in lines)


def test_concurrent_callbacks_batched_by_several_threads_record_once_each(rig: Rig) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from alerts.receipts import Receipt
    from web.receipt_batches import ReceiptBatcher

    for p in ("P0001", "P0002", "P0003", "P0004"):
        hypocalcaemia(rig.store, p)
    rig.worker.run_once()
    sids = [d.provider_id for d in deliveries(rig.store) if d.provider_id]
    assert len(sids) == 4
    batcher = ReceiptBatcher(rig.worker.receipts, rig.clock, by="test", threads=3,
                             idle_seconds=0.5)
    receipts = [Receipt(sid, status) for _ in range(5) for sid in sids
                for status in ("sent", "delivered")]
    with ThreadPoolExecutor(8) as pool:
        futures = list(pool.map(batcher.submit, receipts))
    outcomes = [f.result(timeout=60) for f in futures]
    assert sum(o.result == "delivered" for o in outcomes) == 4
    for a in alerts(rig.store):
        assert receipt_events(rig.store, a.alert_id) == ["AlertDelivered"]
        assert deliveries(rig.store, a.alert_id)[0].receipt == "delivered"
