"""Acknowledging by SMS reply and by one-time e-mail link, SMS opt-outs, /metrics and
/readyz — over the real web application (FastAPI TestClient), the real alert worker, the
official ``twilio`` client against the local Twilio-compatible server and smtplib against
aiosmtpd, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from alerts.channels.smtp_email import SmtpEmailChannel
from alerts.channels.twilio_sms import TwilioSmsChannel
from alerts.health import Heartbeat
from alerts.links import LinkSigner
from alerts.outbox import Outbox
from alerts.roster import Roster, parse_roster
from alerts.tables import alerts as alerts_table
from alerts.tables import deliveries as deliveries_table
from alerts.tables import sms_opt_outs
from alerts.wiring import build_links
from alerts.worker import AlertWorker
from tests.integration.alert_builders import FAST_RETRY, NOW, alerts, hypocalcaemia
from tests.support.smtp_server import SmtpTestServer
from tests.support.twilio_inbound import PUBLIC_URL, inbound_params, post_inbound, signature
from tests.support.twilio_server import (
    TEST_ACCOUNT_SID,
    TEST_AUTH_TOKEN,
    TEST_FROM,
    TwilioTestServer,
)
from tests.web.conftest import PASSWORD, csrf_of
from tracker.accounts import Accounts
from tracker.bootstrap import App, bootstrap
from tracker.clock import FixedClock
from tracker.settings import Settings
from web.app import create_app
from web.settings import WebSettings

pytest_plugins = ["tests.support.twilio_server", "tests.support.smtp_server"]

NURSE_PHONE, NURSE_EMAIL = "+34600000001", "nurse.a@example.org"
OWNER_EMAIL = "owner.b@example.org"
STRANGER = "+34600000077"
LINK_KEY = "k" * 40
METRICS_TOKEN = "m" * 40
ROSTER = f"""
owner = "owner.b"

[[staff]]
id = "nurse.a"
name = "Nurse A"
roles = ["nurse"]
phone = "{NURSE_PHONE}"
email = "{NURSE_EMAIL}"
on_call = true
preferred_channel = "sms"

[[staff]]
id = "owner.b"
name = "Roster owner B"
roles = ["rheumatologist"]
email = "{OWNER_EMAIL}"
preferred_channel = "email"

[routing]
default = ["nurse"]
"""
CODE_RE = re.compile(r"Reply OK ([A-Z0-9]{4})")
LINK_RE = re.compile(re.escape(PUBLIC_URL) + r"(/a/[A-Za-z0-9_.-]+)")


@dataclass
class Env:
    core: App
    clock: FixedClock
    worker: AlertWorker
    client: TestClient
    accounts: Accounts
    roster: Roster
    twilio: TwilioTestServer
    smtp: SmtpTestServer

    def outbox(self) -> Outbox:
        return Outbox(self.core.store, self.core.protocol.zone)

    def staff_events(self, staff_id: str) -> list[str]:
        return [e.type for e in self.core.store.read_stream(f"staff:{staff_id}")]

    def logged_in(self, username: str = "nurse", role: str = "nurse") -> TestClient:
        if self.accounts.get(username) is None:
            self.accounts.add(username, role, PASSWORD, member="nurse.a", by="test")
        client = TestClient(self.client.app, base_url="https://testserver")  # secure cookies
        form = client.get("/login")
        done = client.post("/login", data={"username": username, "password": PASSWORD,
                                           "csrf_token": csrf_of(form.text), "next": "/"},
                           follow_redirects=False)
        assert done.status_code == 303
        return client


@pytest.fixture
def env(db_url: str, twilio_server: TwilioTestServer, smtp_server: SmtpTestServer
        ) -> Iterator[Env]:
    clock = FixedClock(NOW)
    settings = Settings(database_url=db_url, twilio_auth_token=SecretStr(TEST_AUTH_TOKEN),
                        public_url=PUBLIC_URL, link_key=SecretStr(LINK_KEY))
    core = bootstrap(settings, clock=clock)
    roster = parse_roster(ROSTER)
    channels = {
        "sms": TwilioSmsChannel(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, TEST_FROM,
                                base_url=twilio_server.base_url, timeout=3),
        "email": SmtpEmailChannel(smtp_server.host, smtp_server.port,
                                  sender="alerts@example.org", security="none", timeout=3),
    }
    worker = AlertWorker(core.store, core.protocol, clock, channels, roster, worker_id="w1",
                         retry=FAST_RETRY, rand=lambda: 0.5, links=build_links(settings),
                         public_url=PUBLIC_URL)
    accounts = Accounts(core.engine, core.store, clock,
                        hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    app = create_app(core, WebSettings(public_url=PUBLIC_URL,
                                       metrics_token=SecretStr(METRICS_TOKEN)),
                     accounts=accounts, roster=roster)
    with worker, TestClient(app) as client:
        yield Env(core, clock, worker, client, accounts, roster, twilio_server, smtp_server)
    core.close()


def _urgent_sms(env: Env, patient: str = "P0001") -> tuple[str, str]:
    """Raise an urgent alert for ``patient``; its id and the code its SMS carries."""
    hypocalcaemia(env.core.store, patient)
    env.worker.run_once()
    alert = next(a for a in alerts(env.core.store) if a.patient == patient)
    sms = [m for m in env.twilio.messages if patient in m.body][-1]
    found = CODE_RE.search(sms.body)
    assert found, sms.body
    assert found.group(1) == alert.ack_code
    return alert.alert_id, found.group(1)


def _acks(env: Env, alert_id: str) -> list[object]:
    return [e.data for e in env.core.store.read_stream(f"alert:{alert_id}")
            if e.type == "AlertAcknowledged"]


def test_the_sms_carries_the_alerts_short_link_which_opens_it_after_login(env: Env) -> None:
    alert_id, code = _urgent_sms(env)
    sms = [m for m in env.twilio.messages if "P0001" in m.body][-1]
    link = f"{PUBLIC_URL}/a/{alert_id[:8]}"
    assert sms.body.endswith(f"Reply OK {code} or open {link}.") and len(sms.body) < 160
    anonymous = TestClient(env.client.app, base_url="https://testserver")
    assert anonymous.get(f"/a/{alert_id[:8]}", follow_redirects=False).status_code in (302, 303)
    page = env.logged_in().get(f"/a/{alert_id[:8]}")
    assert page.status_code == 200 and alert_id in page.text


# ---------------------------------------------------------------- ack by reply
def test_a_signed_reply_ok_code_acknowledges_as_the_member_once(env: Env) -> None:
    alert_id, code = _urgent_sms(env)
    params = inbound_params(NURSE_PHONE, f"  ok {code.lower()} ")
    answer = post_inbound(env.client, params)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/xml")
    assert "<Message>" not in answer.text and answer.text.endswith("<Response></Response>")
    [ack] = _acks(env, alert_id)
    assert ack.by == "nurse.a" and ack.via == "sms"  # type: ignore[attr-defined]
    assert ack.provider_id == params["MessageSid"]  # type: ignore[attr-defined]
    with env.core.engine.connect() as conn:
        assert env.outbox().get_alerts(conn, [alert_id])[alert_id].status == "acknowledged"
    # Twilio retries the webhook: nothing is recorded twice
    assert post_inbound(env.client, params).status_code == 200
    assert len(_acks(env, alert_id)) == 1


def test_unsigned_or_wrongly_signed_replies_are_refused_and_record_nothing(env: Env) -> None:
    alert_id, code = _urgent_sms(env)
    params = inbound_params(NURSE_PHONE, f"OK {code}")
    assert post_inbound(env.client, params, sign=False).status_code == 403
    assert post_inbound(env.client, params, token="0" * 32).status_code == 403
    assert post_inbound(env.client, params,
                        public_url="https://elsewhere.example.org").status_code == 403
    # signed, then the body changed on the way: the signature no longer validates
    tampered = env.client.post("/twilio/inbound", data=dict(params, Body="STOP"),
                               headers={"X-Twilio-Signature": signature(params)})
    assert tampered.status_code == 403
    assert env.staff_events("nurse.a") == []
    assert _acks(env, alert_id) == []


def test_replies_from_unknown_numbers_are_ignored_and_answer_nothing(env: Env) -> None:
    alert_id, code = _urgent_sms(env)
    answer = post_inbound(env.client, inbound_params(STRANGER, f"OK {code}"))
    assert answer.status_code == 200 and "<Message>" not in answer.text
    answer = post_inbound(env.client, inbound_params(STRANGER, "STOP"))
    assert answer.status_code == 200
    assert _acks(env, alert_id) == []
    with env.core.engine.connect() as conn:
        assert conn.execute(select(sms_opt_outs)).all() == []
    # a member's reply with a code no open alert has changes nothing either
    post_inbound(env.client, inbound_params(NURSE_PHONE, "OK ZZZZ"))
    assert _acks(env, alert_id) == []


def test_stop_moves_the_person_to_their_other_channel_and_tells_the_owner(env: Env) -> None:
    _urgent_sms(env, "P0001")
    stop = inbound_params(NURSE_PHONE, "Stop")
    assert post_inbound(env.client, stop).status_code == 200
    assert post_inbound(env.client, stop).status_code == 200  # a retry: recorded once
    assert env.staff_events("nurse.a") == ["SmsOptedOut"]
    sent_before = len(env.twilio.messages)
    # the next urgent alert goes to the nurse by e-mail, and the owner is told once
    hypocalcaemia(env.core.store, "P0003")
    env.worker.run_once()
    assert len(env.twilio.messages) == sent_before
    to_nurse = [m for m in env.smtp.messages if NURSE_EMAIL in m.rcpt_tos]
    assert len(to_nurse) == 1 and "P0003" in to_nurse[0].subject
    notices = [m for m in env.smtp.messages if OWNER_EMAIL in m.rcpt_tos]
    assert len(notices) == 1 and "nurse.a replied STOP" in notices[0].body
    assert env.staff_events("nurse.a") == ["SmsOptedOut", "RosterOwnerTold"]
    env.worker.run_once()
    assert len([m for m in env.smtp.messages if OWNER_EMAIL in m.rcpt_tos]) == 1
    # START: SMS again, and the owner is told that too
    assert post_inbound(env.client, inbound_params(NURSE_PHONE, "start")).status_code == 200
    hypocalcaemia(env.core.store, "P0004")
    env.worker.run_once()
    assert any("P0004" in m.body for m in env.twilio.messages[sent_before:])
    assert env.staff_events("nurse.a") == ["SmsOptedOut", "RosterOwnerTold", "SmsOptedIn",
                                           "RosterOwnerTold"]


def test_an_sms_queued_before_stop_goes_by_the_other_channel(env: Env) -> None:
    from tests.integration.alert_builders import NEXT_DIGEST, low_vitamin_d

    low_vitamin_d(env.core.store, "P0002")
    env.worker.run_once()  # a digest delivery by SMS, waiting for 08:00
    with env.core.engine.connect() as conn:
        assert [d.channel for d in env.outbox().deliveries(conn)] == ["sms"]
    post_inbound(env.client, inbound_params(NURSE_PHONE, "STOP"))
    env.clock.instant = NEXT_DIGEST
    env.worker.run_once()  # the SMS fails at once: the e-mail digest is due now
    env.clock.advance(timedelta(seconds=30))
    env.worker.run_once()  # the next poll sends it
    assert env.twilio.messages == []
    [digest] = [m for m in env.smtp.messages if NURSE_EMAIL in m.rcpt_tos]
    assert "Daily summary" in digest.subject
    alert = alerts(env.core.store)[0]
    failed = [e.data for e in env.core.store.read_stream(f"alert:{alert.alert_id}")
              if e.type == "AlertFailed"]
    assert [(f.channel, f.permanent) for f in failed] == [("sms", True)]
    assert "replied STOP" in failed[0].error


@pytest.mark.parametrize("word", ["STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"])
def test_every_twilio_opt_out_word_is_recorded(env: Env, word: str) -> None:
    post_inbound(env.client, inbound_params(NURSE_PHONE, word.lower()))
    [event] = env.core.store.read_stream("staff:nurse.a")
    assert event.type == "SmsOptedOut" and event.data.word == word


# ---------------------------------------------------------------- e-mail links
def _email_link(env: Env) -> tuple[str, str]:
    """An urgent alert to the nurse by e-mail (she replied STOP): its id and link path."""
    post_inbound(env.client, inbound_params(NURSE_PHONE, "STOP"))
    hypocalcaemia(env.core.store, "P0005")
    env.worker.run_once()
    [mail] = [m for m in env.smtp.messages if NURSE_EMAIL in m.rcpt_tos]
    found = LINK_RE.search(mail.body)
    assert found, mail.body
    alert = next(a for a in alerts(env.core.store) if a.patient == "P0005")
    assert "P0005" not in found.group(1)  # ids only, no patient reference
    return alert.alert_id, found.group(1)


def test_the_email_link_opens_the_alert_after_login_once(env: Env) -> None:
    alert_id, path = _email_link(env)
    anonymous = TestClient(env.client.app, base_url="https://testserver")
    first = anonymous.get(path, follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"].startswith("/login?next=")
    client = env.logged_in()
    page = client.get(path)
    assert page.status_code == 200 and f'action="/alerts/{alert_id}/ack"' in page.text
    done = client.post(f"/alerts/{alert_id}/ack", data={
        "note": "", "via": "link", "csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert done.status_code == 303
    [ack] = _acks(env, alert_id)
    assert ack.by == "nurse" and ack.via == "link"  # type: ignore[attr-defined]
    again = client.get(path)
    assert again.status_code == 410 and "already used" in again.text


def test_expired_and_tampered_links_show_a_clear_page_and_acknowledge_nothing(env: Env
                                                                            ) -> None:
    alert_id, path = _email_link(env)
    client = env.logged_in()
    token = path.removeprefix("/a/")
    payload, _, sig = token.partition(".")
    forged = client.get(f"/a/{payload}.{sig[:-2]}xx")
    assert forged.status_code == 400 and "not valid" in forged.text
    other_key = LinkSigner(b"x" * 40, PUBLIC_URL).token(alert_id, "nurse.a", env.clock.now())
    assert client.get(f"/a/{other_key}").status_code == 400
    # valid for exactly 24 hours: a second before it works, on the instant it is refused
    signer = LinkSigner(LINK_KEY.encode(), PUBLIC_URL)
    early, late = (signer.token(alert_id, "nurse.a", env.clock.now()) for _ in range(2))
    env.clock.advance(timedelta(hours=24) - timedelta(seconds=1))
    client = env.logged_in()  # the earlier session has long expired
    assert client.get(f"/a/{early}", follow_redirects=False).status_code == 200
    env.clock.advance(timedelta(seconds=1))
    expired = client.get(f"/a/{late}", follow_redirects=False)
    assert expired.status_code == 410 and "expired" in expired.text
    assert _acks(env, alert_id) == []


# ---------------------------------------------------------------- metrics, readyz
def test_metrics_need_the_bearer_token_and_report_the_outbox(env: Env) -> None:
    _urgent_sms(env)
    env.client.get("/healthz")
    assert env.client.get("/metrics").status_code == 401
    assert env.client.get("/metrics", headers={"Authorization": "Bearer nope"}
                          ).status_code == 401
    answer = env.client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status_code == 200
    text = answer.text
    assert 'tracker_alert_deliveries{channel="sms",status="sent"} 1.0' in text
    assert 'tracker_alerts_open{severity="urgent"} 1.0' in text
    assert "tracker_worker_heartbeat_age_seconds" in text
    assert 'tracker_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' \
        in text
    assert "P0001" not in text and NURSE_PHONE not in text


def test_metrics_are_off_without_a_token(db_url: str) -> None:
    core = bootstrap(Settings(database_url=db_url), clock=FixedClock(NOW))
    try:
        app = create_app(core, WebSettings(), roster=parse_roster(ROSTER))
        with TestClient(app) as client:
            assert client.get("/metrics").status_code == 404
    finally:
        core.close()


def test_readyz_fails_once_the_heartbeat_is_stale(db_url: str) -> None:
    clock = FixedClock(NOW)
    core = bootstrap(Settings(database_url=db_url), clock=clock)
    try:
        app = create_app(core, WebSettings(heartbeat_max_age_seconds=300),
                         roster=parse_roster(ROSTER))
        with TestClient(app) as client:
            assert client.get("/readyz").json()["checks"]["worker"] == "not reported"
            Heartbeat(core.engine, "w9").beat(clock.now(), {})
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["checks"]["worker"] == "ok"
            clock.advance(timedelta(seconds=300))
            assert client.get("/readyz").status_code == 200  # exactly the maximum age
            clock.advance(timedelta(seconds=1))
            stale = client.get("/readyz")
            assert stale.status_code == 503
            assert stale.json()["checks"]["worker"] == "stale: last heartbeat 301 s ago"
    finally:
        core.close()


def test_worker_status_lists_who_replied_stop(env: Env) -> None:
    import orjson
    from click.testing import CliRunner

    from tracker.cli.main import cli

    def status(*flags: str) -> str:
        return CliRunner().invoke(cli, ["worker", "status", *flags], env={
            "CNO_TRACKER_DATABASE_URL": env.core.settings.database_url}).output

    assert orjson.loads(status("--json"))["sms_opted_out"] == []
    post_inbound(env.client, inbound_params(NURSE_PHONE, "STOP"))
    assert orjson.loads(status("--json"))["sms_opted_out"] == ["nurse.a"]
    assert "SMS off (replied STOP; their other channel is used): nurse.a" in status()


# ---------------------------------------------------------------- webhook bodies
def _asgi_post(app: object, path: str, chunks: int, *, declared: int | None = None
               ) -> tuple[int, int]:
    """POST ``chunks`` chunks of 16 KiB to ``path`` straight through ASGI (TestClient
    reads a body whole before the app sees it): the answer's status and how many chunks
    the app pulled."""
    import asyncio

    chunk = b"a" * 16384
    pulled = 0

    async def receive() -> dict[str, object]:
        nonlocal pulled
        pulled += 1
        more = pulled < chunks
        return {"type": "http.request", "body": chunk, "more_body": more}

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    headers = [(b"host", b"testserver"),
               (b"content-type", b"application/x-www-form-urlencoded"),
               (b"x-twilio-signature", b"bm90IGEgc2lnbmF0dXJl")]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "https", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": headers,
             "client": ("203.0.113.9", 4000), "server": ("testserver", 443)}
    asyncio.run(app(scope, receive, send))  # type: ignore[operator]
    start = next(m for m in sent if m["type"] == "http.response.start")
    return int(start["status"]), pulled  # type: ignore[call-overload]


@pytest.mark.parametrize("path", ["/twilio/inbound", "/twilio/status"])
def test_an_oversized_unsigned_webhook_body_is_refused_without_reading_it_all(
        env: Env, path: str) -> None:
    from web.twilio_signature import MAX_BODY

    # 16 MiB streamed by an anonymous client: refused having read at most MAX_BODY of it
    status, pulled = _asgi_post(env.client.app, path, chunks=1024)
    assert status == 403
    assert (pulled - 1) * 16384 <= MAX_BODY
    # a declared length over the limit is refused before a byte is read
    status, pulled = _asgi_post(env.client.app, path, chunks=1024, declared=1024 * 16384)
    assert status == 403
    assert pulled == 0


def test_metrics_keep_one_series_for_every_unknown_request_method(env: Env) -> None:
    # the method is the client's to choose: each new one must not be a new series
    for n in range(50):
        env.client.request(f"X{n}EVIL", "/healthz")
    text = env.client.get("/metrics",
                          headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert "EVIL" not in text
    assert 'tracker_http_requests_total{method="OTHER",route="/healthz",status="405"} 50.0' \
        in text


def test_a_blank_auth_token_is_no_auth_token(db_url: str) -> None:
    # outside production a blank CNO_TRACKER_TWILIO_AUTH_TOKEN is accepted as a setting:
    # an HMAC keyed by '' is one anybody can compute, so it must verify nothing
    core = bootstrap(Settings(database_url=db_url, twilio_auth_token=SecretStr(""),
                              public_url=PUBLIC_URL), clock=FixedClock(NOW))
    try:
        app = create_app(core, WebSettings(public_url=PUBLIC_URL), roster=parse_roster(ROSTER))
        with TestClient(app) as client:
            params = inbound_params(NURSE_PHONE, "STOP")
            assert post_inbound(client, params, token="").status_code == 403
            assert client.post("/twilio/status", data={"MessageSid": "SMx",
                               "MessageStatus": "delivered"}, headers={
                "X-Twilio-Signature": signature({"MessageSid": "SMx",
                                                 "MessageStatus": "delivered"},
                                                url=PUBLIC_URL + "/twilio/status",
                                                token="")}).status_code == 403
            assert core.store.read_stream("staff:nurse.a") == []
    finally:
        core.close()


def test_a_blank_metrics_token_leaves_metrics_off(db_url: str) -> None:
    # CNO_TRACKER_METRICS_TOKEN= (set, empty) must not make "Bearer " the password
    core = bootstrap(Settings(database_url=db_url), clock=FixedClock(NOW))
    try:
        app = create_app(core, WebSettings(metrics_token=SecretStr(" ")),
                         roster=parse_roster(ROSTER))
        with TestClient(app) as client:
            for header in ("Bearer  ", "Bearer "):
                assert client.get("/metrics", headers={"Authorization": header}
                                  ).status_code == 404
    finally:
        core.close()


def test_a_replayed_signed_stop_changes_nothing(env: Env) -> None:
    # Twilio's signature has no timestamp: a STOP captured once (a proxy's log) and sent
    # again after START must not silence the person's SMS alerts a second time
    stop = inbound_params(NURSE_PHONE, "STOP")
    assert post_inbound(env.client, stop).status_code == 200
    assert post_inbound(env.client, inbound_params(NURSE_PHONE, "START")).status_code == 200
    assert post_inbound(env.client, stop).status_code == 200
    assert env.staff_events("nurse.a") == ["SmsOptedOut", "SmsOptedIn"]


def test_a_replayed_ok_reply_never_acknowledges_a_later_alert_given_the_same_code(
        env: Env) -> None:
    first, code = _urgent_sms(env, "P0001")
    reply = inbound_params(NURSE_PHONE, f"OK {code}")
    assert post_inbound(env.client, reply).status_code == 200
    assert len(_acks(env, first)) == 1
    later, _ = _urgent_sms(env, "P0002")
    # codes are unique among *open* alerts: once the first is closed its code may come back
    with env.core.engine.begin() as conn:
        conn.execute(alerts_table.update().where(alerts_table.c.alert_id == later)
                     .values(ack_code=code))
    assert post_inbound(env.client, reply).status_code == 200  # the captured reply again
    assert _acks(env, later) == []
    with env.core.engine.connect() as conn:
        assert env.outbox().get_alerts(conn, [later])[later].status == "open"
    # a new reply (its own MessageSid) with that code does acknowledge it
    assert post_inbound(env.client, inbound_params(NURSE_PHONE, f"OK {code}")).status_code == 200
    assert len(_acks(env, later)) == 1


def test_a_reply_acknowledges_only_an_alert_sent_to_its_sender(env: Env) -> None:
    alert_id, code = _urgent_sms(env, "P0001")
    with env.core.engine.begin() as conn:  # as if the alert had gone to someone else
        conn.execute(deliveries_table.update().where(deliveries_table.c.alert_id == alert_id)
                     .values(recipient="owner.b"))
    assert post_inbound(env.client, inbound_params(NURSE_PHONE, f"OK {code}")).status_code == 200
    assert _acks(env, alert_id) == []


def test_two_open_alerts_sent_with_one_code_are_both_left_open(env: Env) -> None:
    first, code = _urgent_sms(env, "P0001")
    second, _ = _urgent_sms(env, "P0002")
    with env.core.engine.begin() as conn:  # two workers drew the same code at one instant
        conn.execute(alerts_table.update().where(alerts_table.c.alert_id == second)
                     .values(ack_code=code))
    assert post_inbound(env.client, inbound_params(NURSE_PHONE, f"OK {code}")).status_code == 200
    assert _acks(env, first) == [] and _acks(env, second) == []
