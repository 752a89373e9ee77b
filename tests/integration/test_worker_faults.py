"""The worker under faults, on SQLite and PostgreSQL, with the real local Twilio-compatible
and SMTP servers: refused credentials put a channel down (deliveries stay pending and go
out once the worker is restarted with good credentials), a permanent failure for one
person tries their other channel before escalating, and a dead worker's claims are taken
over on its heartbeat, not its lease."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from alerts.channels.smtp_email import SmtpEmailChannel
from alerts.channels.twilio_sms import TwilioSmsChannel
from alerts.health import worker_health
from events.store import EventStore
from tests.integration.alert_builders import (
    NOW,
    NURSE_PHONE,
    alerts,
    deliveries,
    hypocalcaemia,
    roster,
    stream_types,
    worker,
)
from tests.support.roster import CONSULTANT
from tests.support.smtp_server import TEST_SMTP_PASSWORD, TEST_SMTP_USER, SmtpTestServer
from tests.support.twilio_server import (
    TEST_ACCOUNT_SID,
    TEST_AUTH_TOKEN,
    TEST_FROM,
    TwilioTestServer,
)
from tracker.clock import FixedClock

pytest_plugins = ["tests.support.twilio_server", "tests.support.smtp_server"]

NURSE_EMAIL = "nurse.a@example.org"
BOTH_CHANNELS = f"""
[[staff]]
id = "nurse.a"
name = "Nurse A"
roles = ["nurse"]
phone = "{NURSE_PHONE}"
email = "{NURSE_EMAIL}"
on_call = true
preferred_channel = "PREFERRED"
""" + CONSULTANT + """
[routing]
default = ["nurse"]

[escalation]
chain = ["on_call_consultant"]
"""
WALL = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def sms(server: TwilioTestServer, token: str = TEST_AUTH_TOKEN) -> TwilioSmsChannel:
    return TwilioSmsChannel(TEST_ACCOUNT_SID, token, TEST_FROM, base_url=server.base_url,
                            timeout=3)


def email(server: SmtpTestServer, password: str | None = None) -> SmtpEmailChannel:
    return SmtpEmailChannel(server.host, server.port, sender="alerts@example.org",
                            security="none", timeout=3,
                            username=TEST_SMTP_USER if password else None, password=password)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def wall() -> FixedClock:
    return FixedClock(WALL)


def statuses(store: EventStore) -> list[tuple[str, str]]:
    return sorted((d.channel, d.status) for d in deliveries(store))


# ---------------------------------------------------------------- credentials refused
def test_wrong_twilio_token_puts_sms_down_and_a_restart_with_the_right_one_sends(
        store: EventStore, clock: FixedClock, wall: FixedClock,
        twilio_server: TwilioTestServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    the_roster = roster(BOTH_CHANNELS.replace("PREFERRED", "sms"))
    hypocalcaemia(store)
    wrong = "wrong-token-0123456789abcdef"
    with worker(store, clock, {"sms": sms(twilio_server, wrong)}, the_roster=the_roster,
                wall=wall, worker_id="bad-creds") as w:
        first = w.run_once()
        assert first.dispatch is not None and first.dispatch.dead == 0
        assert statuses(store) == [("sms", "pending")]
        [d] = deliveries(store)
        assert d.attempts == 0 and d.lease_owner is None
        assert len(twilio_server.requests) == 1
        # the next cycles claim nothing of the down channel, and say so once each
        caplog.clear()
        clock.advance(timedelta(minutes=5))
        w.run_once()
        w.run_once()
        assert len(twilio_server.requests) == 1
        down_lines = [r.getMessage() for r in caplog.records
                      if "event=config.channel_down" in r.getMessage()]
        assert len(down_lines) == 2 and all("channel=sms" in line for line in down_lines)
        assert all(r.levelno == logging.ERROR for r in caplog.records
                   if "config.channel_down" in r.getMessage())
        assert wrong not in caplog.text and TEST_AUTH_TOKEN not in caplog.text
        health = worker_health(store.engine, wall.now())
        assert list(health.channels_down) == ["sms"] and "20003" in health.channels_down["sms"]
        assert health.deliveries["sms"]["pending"] == 1 and not health.ok
        # the alert has not escalated: nobody was told, but nothing was dead-lettered
        assert w.run_once().escalated == 0
    [alert] = alerts(store)
    assert stream_types(store, alert.alert_id) == ["AlertRaised"]
    # credentials fixed, worker restarted: the pending SMS goes out, once
    with worker(store, clock, {"sms": sms(twilio_server)}, the_roster=the_roster,
                wall=wall, worker_id="good-creds") as w:
        assert w.run_once().dispatch.sent == 1  # type: ignore[union-attr]
    assert [m.to for m in twilio_server.messages] == [NURSE_PHONE]
    assert statuses(store) == [("sms", "sent")]
    assert stream_types(store, alert.alert_id) == ["AlertRaised", "AlertSent"]
    assert worker_health(store.engine, wall.now()).channels_down == {}


def test_wrong_smtp_password_puts_email_down_until_restarted(
        store: EventStore, clock: FixedClock, wall: FixedClock,
        smtp_auth_server: SmtpTestServer) -> None:
    the_roster = roster(BOTH_CHANNELS.replace("PREFERRED", "email"))
    hypocalcaemia(store)
    with worker(store, clock, {"email": email(smtp_auth_server, "wrong-password-1")},
                the_roster=the_roster, wall=wall, worker_id="bad-smtp") as w:
        w.run_once()
        assert statuses(store) == [("email", "pending")]
        assert w.dispatcher.down.keys() == {"email"}
        assert "535" in worker_health(store.engine, wall.now()).channels_down["email"]
    assert smtp_auth_server.messages == []
    with worker(store, clock, {"email": email(smtp_auth_server, TEST_SMTP_PASSWORD)},
                the_roster=the_roster, wall=wall, worker_id="good-smtp") as w:
        w.run_once()
    assert [m.rcpt_tos for m in smtp_auth_server.messages] == [(NURSE_EMAIL,)]
    assert statuses(store) == [("email", "sent")]


# ---------------------------------------------------------------- the person's other channel
@pytest.mark.parametrize("code", [21211, 21614])
def test_a_number_twilio_refuses_falls_back_to_the_persons_email(
        store: EventStore, clock: FixedClock, twilio_server: TwilioTestServer,
        smtp_server: SmtpTestServer, code: int) -> None:
    twilio_server.reject(NURSE_PHONE, code=code)
    the_roster = roster(BOTH_CHANNELS.replace("PREFERRED", "sms"))
    hypocalcaemia(store)
    with worker(store, clock, {"sms": sms(twilio_server), "email": email(smtp_server)},
                the_roster=the_roster) as w:
        w.run_once()
        assert statuses(store) == [("email", "pending"), ("sms", "dead")]
        report = w.run_once()
        assert report.escalated == 0  # the e-mail reached her: no escalation at once
    assert statuses(store) == [("email", "sent"), ("sms", "dead")]
    assert [m.rcpt_tos for m in smtp_server.messages] == [(NURSE_EMAIL,)]
    [alert] = alerts(store)
    assert stream_types(store, alert.alert_id) == ["AlertRaised", "AlertFailed", "AlertSent"]
    # and the escalation clock runs from the e-mail that went out
    assert alert.escalate_at is not None and alert.escalate_at > NOW


def test_an_smtp_550_falls_back_to_the_persons_phone(
        store: EventStore, clock: FixedClock, twilio_server: TwilioTestServer,
        smtp_server: SmtpTestServer) -> None:
    smtp_server.refuse_recipient(NURSE_EMAIL)
    the_roster = roster(BOTH_CHANNELS.replace("PREFERRED", "email"))
    hypocalcaemia(store)
    with worker(store, clock, {"sms": sms(twilio_server), "email": email(smtp_server)},
                the_roster=the_roster) as w:
        w.run_once()
        w.run_once()
    assert statuses(store) == [("email", "dead"), ("sms", "sent")]
    assert [m.to for m in twilio_server.messages] == [NURSE_PHONE]
    assert [a.level for a in alerts(store)] == [0]


def test_when_both_channels_fail_permanently_the_alert_escalates_at_once(
        store: EventStore, clock: FixedClock, twilio_server: TwilioTestServer,
        smtp_server: SmtpTestServer) -> None:
    twilio_server.reject(NURSE_PHONE, code=21211)
    smtp_server.refuse_recipient(NURSE_EMAIL)
    the_roster = roster(BOTH_CHANNELS.replace("PREFERRED", "sms"))
    hypocalcaemia(store)
    with worker(store, clock, {"sms": sms(twilio_server), "email": email(smtp_server)},
                the_roster=the_roster) as w:
        w.run_once()  # the SMS is refused: her e-mail is next
        w.run_once()  # the e-mail is refused too: nobody at level 0 can be told
        assert w.run_once().escalated == 1  # at once, not after the escalation delay
    assert statuses(store) == [("email", "dead"), ("sms", "dead"), ("sms", "sent")]
    [alert] = alerts(store)
    assert alert.level == 1


# ---------------------------------------------------------------- a dead worker's claims
@pytest.fixture
def claimed_by_a_dead_worker(store: EventStore, clock: FixedClock, wall: FixedClock,
                             twilio_server: TwilioTestServer) -> Iterator[str]:
    """An urgent delivery claimed (lease 120 s) by worker "dead", which then died: its
    heartbeat row stays as it last wrote it, its SQLite lock is dropped by the kernel."""
    hypocalcaemia(store)
    dead = worker(store, clock, {"sms": sms(twilio_server)}, worker_id="dead", wall=wall)
    dead.start()
    dead.catch_up()
    dead.evaluate()
    [claimed] = dead.outbox.claim(owner="dead", now=clock.now(), mode="immediate", limit=10,
                                  lease=timedelta(seconds=120))
    dead.beat()  # its last heartbeat, at WALL: fresh until WALL + 15 s
    if dead._lock is not None:
        dead._lock.release()  # what the kernel does when the process dies
    try:
        yield claimed.delivery_id
    finally:
        dead.projector.close()


def test_a_dead_workers_urgent_claim_is_taken_over_without_waiting_for_its_lease(
        store: EventStore, clock: FixedClock, wall: FixedClock,
        twilio_server: TwilioTestServer, claimed_by_a_dead_worker: str) -> None:
    with worker(store, clock, {"sms": sms(twilio_server)}, worker_id="next", wall=wall) as w:
        # several workers: "dead" is dead when its heartbeat expires
        if store.dialect == "postgresql":
            wall.advance(timedelta(seconds=15))  # the heartbeat's last fresh instant
            assert w.dispatch().sent == 0
            assert not w.outbox.abandoned("next", heartbeats_at=wall.now(), now=clock.now())
            wall.advance(timedelta(microseconds=1))
            assert w.outbox.abandoned("next", heartbeats_at=wall.now(), now=clock.now())
        # SQLite: the single-worker lock "next" holds proves "dead" dead: taken at once
        assert w.dispatch().sent == 1  # seconds after the death, not the lease's 120 s
    [d] = deliveries(store)
    assert d.status == "sent" and d.attempts == 2 and d.delivery_id == claimed_by_a_dead_worker
    assert len(twilio_server.messages) == 1
    health = worker_health(store.engine, wall.now())
    assert {w.worker_id: w.alive for w in health.workers} == {"dead": False, "next": False}


def test_a_live_workers_claim_is_not_taken_while_its_heartbeat_is_fresh(
        store: EventStore, clock: FixedClock, wall: FixedClock,
        twilio_server: TwilioTestServer) -> None:
    hypocalcaemia(store)
    # on SQLite "other" stands for a worker of another version (no lock): the rule is the
    # same on both databases
    with worker(store, clock, {"sms": sms(twilio_server)}, worker_id="slow",
                wall=wall) as slow:
        other = worker(store, clock, {"sms": sms(twilio_server)}, worker_id="other",
                       wall=wall)
        other._lock = None
        slow.catch_up()
        slow.evaluate()
        [claimed] = slow.outbox.claim(owner="slow", now=clock.now(), mode="immediate",
                                      limit=10, lease=timedelta(seconds=120))
        for _ in range(10):  # a long send: "slow" keeps beating, nobody takes it
            wall.advance(timedelta(seconds=5))
            slow.beat()
            assert other.dispatch().sent == 0
        [d] = deliveries(store)
        assert d.delivery_id == claimed.delivery_id
        assert (d.status, d.lease_owner) == ("sending", "slow")
        other.projector.close()
    assert twilio_server.messages == []
