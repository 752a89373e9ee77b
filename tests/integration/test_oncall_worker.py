"""The worker routes by the on-call schedule at the alert's instant (raising, the digest's
instant, each escalation's instant); a Messaging Service SID stands in for the from
number and urgent SMS carry a validity period; ``alerts test-send`` — on SQLite and
PostgreSQL, the official twilio client against the local Twilio-compatible server,
smtplib against aiosmtpd, an injected clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from click.testing import CliRunner

from alerts.channels.base import Channel
from alerts.channels.smtp_email import SmtpEmailChannel
from alerts.channels.twilio_sms import TwilioSmsChannel
from alerts.worker import AlertWorker
from events.store import EventStore
from tests.integration.alert_builders import (
    CONSULTANT_PHONE,
    NEXT_DIGEST,
    NOW,
    NURSE_PHONE,
    RHEUM_EMAIL,
    hypocalcaemia,
    low_vitamin_d,
    roster,
    worker,
)
from tests.support.roster import CONSULTANT, NURSE_AND_RHEUMATOLOGIST
from tests.support.smtp_server import SmtpTestServer
from tests.support.twilio_server import (
    TEST_ACCOUNT_SID,
    TEST_AUTH_TOKEN,
    TEST_FROM,
    TwilioTestServer,
)
from tracker.cli.main import cli
from tracker.clock import FixedClock

pytest_plugins = ["tests.support.twilio_server", "tests.support.smtp_server"]

NURSE_B_PHONE, CONSULTANT_D_PHONE = "+34600000005", "+34600000006"
SERVICE = "MG" + "0" * 31 + "7"
# NOW is Monday 2025-03-10 09:00 UTC = 10:00 in Madrid (CET): the nurses' weekly turn
# changes exactly then; the digest (08:00 local on the 11th) falls in nurse.a's shift;
# the second escalation (NOW + 4 h = 14:00 local) in consult.d's override.
SCHEDULED = NURSE_AND_RHEUMATOLOGIST + CONSULTANT + f"""
[[staff]]
id = "nurse.b"
name = "Nurse B"
roles = ["nurse"]
phone = "{NURSE_B_PHONE}"
preferred_channel = "sms"

[[staff]]
id = "consult.d"
name = "Consultant D"
roles = ["on_call_consultant"]
phone = "{CONSULTANT_D_PHONE}"
preferred_channel = "sms"

[routing]
default = ["nurse"]

[escalation]
chain = ["rheumatologist", "on_call_consultant"]

[[rotation]]
role = "nurse"
start = 2025-03-03T10:00:00
members = ["nurse.a", "nurse.b"]

[[shift]]
role = "nurse"
member = "nurse.a"
start = 2025-03-11T00:00:00
end = 2025-03-11T12:00:00

[[override]]
role = "on_call_consultant"
member = "consult.d"
start = 2025-03-10T12:00:00
end = 2025-03-10T16:00:00
"""


@pytest.fixture
def channels(twilio_server: TwilioTestServer, smtp_server: SmtpTestServer
             ) -> dict[str, Channel]:
    return {
        "sms": TwilioSmsChannel(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, None,
                                messaging_service_sid=SERVICE,
                                base_url=twilio_server.base_url, timeout=3),
        "email": SmtpEmailChannel(smtp_server.host, smtp_server.port,
                                  sender="alerts@example.org", security="none", timeout=3),
    }


@pytest.fixture
def scheduled(store: EventStore, channels: dict[str, Channel]
              ) -> Iterator[tuple[AlertWorker, FixedClock]]:
    clock = FixedClock(NOW - timedelta(seconds=1))
    with worker(store, clock, channels, the_roster=roster(SCHEDULED)) as running:
        yield running, clock


def _posted(twilio_server: TwilioTestServer) -> list[dict[str, str]]:
    return [r.form for r in twilio_server.requests if r.status == 201]


def test_an_alert_goes_to_who_is_on_call_at_its_instant(
        store: EventStore, scheduled: tuple[AlertWorker, FixedClock],
        twilio_server: TwilioTestServer) -> None:
    w, clock = scheduled
    hypocalcaemia(store, "P0001")
    w.run_once()  # 09:59:59 local: nurse.a's turn
    clock.instant = NOW
    hypocalcaemia(store, "P0003")
    w.run_once()  # 10:00:00 local: nurse.b's
    assert [(m.to, "P0001" in m.body) for m in twilio_server.messages] == [
        (NURSE_PHONE, True), (NURSE_B_PHONE, False)]


def test_the_digest_goes_to_who_is_on_call_at_the_digest(
        store: EventStore, scheduled: tuple[AlertWorker, FixedClock],
        twilio_server: TwilioTestServer) -> None:
    w, clock = scheduled
    clock.instant = NOW  # nurse.b's turn when it is raised; nurse.a's shift at 08:00
    low_vitamin_d(store, "P0002")
    w.run_once()
    clock.instant = NEXT_DIGEST
    w.run_once()
    [digest] = twilio_server.messages
    assert digest.to == NURSE_PHONE and "Daily summary" in digest.body
    # a digest is not urgent: no validity period
    assert "ValidityPeriod" not in _posted(twilio_server)[0]


def test_escalation_goes_to_who_is_on_call_when_it_escalates(
        store: EventStore, scheduled: tuple[AlertWorker, FixedClock],
        twilio_server: TwilioTestServer, smtp_server: SmtpTestServer) -> None:
    w, clock = scheduled
    clock.instant = NOW
    hypocalcaemia(store, "P0001")
    w.run_once()
    clock.advance(timedelta(minutes=120))
    assert w.run_once().escalated == 1
    assert [m.rcpt_tos for m in smtp_server.messages] == [(RHEUM_EMAIL,)]
    clock.advance(timedelta(minutes=120))  # 14:00 local: consult.d's override
    assert w.run_once().escalated == 1
    assert twilio_server.count(to=CONSULTANT_D_PHONE) == 1
    assert twilio_server.count(to=CONSULTANT_PHONE) == 0


def test_messaging_service_and_validity_period_for_urgent_sms(
        store: EventStore, scheduled: tuple[AlertWorker, FixedClock],
        twilio_server: TwilioTestServer) -> None:
    w, _ = scheduled
    hypocalcaemia(store, "P0001")
    w.run_once()
    [form] = _posted(twilio_server)
    assert form["MessagingServiceSid"] == SERVICE and "From" not in form
    assert form["ValidityPeriod"] == "900"


def test_a_messaging_service_or_a_from_number_not_both() -> None:
    with pytest.raises(ValueError, match="either"):
        TwilioSmsChannel(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, TEST_FROM,
                         messaging_service_sid=SERVICE)
    with pytest.raises(ValueError, match="Messaging Service SID"):
        TwilioSmsChannel(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, None, messaging_service_sid="MGx")
    with pytest.raises(ValueError, match="validity"):
        TwilioSmsChannel(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, TEST_FROM,
                         urgent_validity_seconds=36001)


# ---------------------------------------------------------------- alerts test-send
ROSTER_FILE = NURSE_AND_RHEUMATOLOGIST + """
[routing]
default = ["nurse"]
"""


def _test_send(db_url: str, tmp_path: object, twilio_server: TwilioTestServer,
               smtp_server: SmtpTestServer, *args: str) -> object:
    from pathlib import Path

    path = Path(str(tmp_path)) / "roster.toml"
    path.write_text(ROSTER_FILE, encoding="utf-8")
    env = {"CNO_TRACKER_DATABASE_URL": db_url, "CNO_TRACKER_ROSTER_FILE": str(path),
           "CNO_TRACKER_TWILIO_ACCOUNT_SID": TEST_ACCOUNT_SID,
           "CNO_TRACKER_TWILIO_AUTH_TOKEN": TEST_AUTH_TOKEN,
           "CNO_TRACKER_TWILIO_MESSAGING_SERVICE_SID": SERVICE,
           "CNO_TRACKER_TWILIO_BASE_URL": twilio_server.base_url,
           "CNO_TRACKER_SMTP_HOST": smtp_server.host,
           "CNO_TRACKER_SMTP_PORT": str(smtp_server.port),
           "CNO_TRACKER_SMTP_SECURITY": "none",
           "CNO_TRACKER_SMTP_SENDER": "alerts@example.org"}
    return CliRunner().invoke(cli, ["alerts", "test-send", *args], env=env,
                              catch_exceptions=False)


def test_test_send_sends_a_neutral_message_and_records_it(
        db_url: str, store: EventStore, tmp_path: object, twilio_server: TwilioTestServer,
        smtp_server: SmtpTestServer) -> None:
    done = _test_send(db_url, tmp_path, twilio_server, smtp_server, "nurse.a")
    assert done.exit_code == 0, done.output  # type: ignore[attr-defined]
    [sms] = twilio_server.messages
    assert sms.to == NURSE_PHONE and "no action is needed" in sms.body
    assert sms.sid in done.output  # type: ignore[attr-defined]
    mailed = _test_send(db_url, tmp_path, twilio_server, smtp_server, "rheum.b",
                        "--channel", "email")
    assert mailed.exit_code == 0, mailed.output  # type: ignore[attr-defined]
    assert [m.rcpt_tos for m in smtp_server.messages] == [(RHEUM_EMAIL,)]
    [sent] = store.read_stream("staff:nurse.a")
    assert sent.type == "TestMessageSent"
    assert (sent.data.channel, sent.data.outcome, sent.data.provider_id) == (
        "sms", "sent", sms.sid)
    assert store.read_stream("staff:rheum.b")[0].data.channel == "email"


def test_test_send_refusals_have_their_exit_codes(
        db_url: str, store: EventStore, tmp_path: object, twilio_server: TwilioTestServer,
        smtp_server: SmtpTestServer) -> None:
    unknown = _test_send(db_url, tmp_path, twilio_server, smtp_server, "nobody")
    assert unknown.exit_code == 4 and "no staff member 'nobody'" in unknown.output  # type: ignore[attr-defined]
    no_address = _test_send(db_url, tmp_path, twilio_server, smtp_server, "rheum.b",
                            "--channel", "sms")
    assert no_address.exit_code == 2 and "no sms address" in no_address.output  # type: ignore[attr-defined]
    twilio_server.reject(NURSE_PHONE, code=21610)
    refused = _test_send(db_url, tmp_path, twilio_server, smtp_server, "nurse.a")
    assert refused.exit_code == 1  # type: ignore[attr-defined]
    [event] = store.read_stream("staff:nurse.a")
    assert event.data.outcome == "failed" and "21610" in (event.data.error or "")
    assert store.read_stream("staff:rheum.b") == []
