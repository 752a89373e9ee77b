"""The alert worker as real processes (``cno-tracker worker``) on PostgreSQL, with
the official Twilio client against the local Twilio-compatible server and smtplib against
the local SMTP server, configured only through ``CNO_TRACKER_*`` variables.

Alerts come the way production makes them: patients and lab results imported with
``import_lines``; the workers' projector folds them into the due-item schedule, the
workers raise the alerts (racing: the dedupe key makes it once) and deliver them.

Covered here and not in tests/integration/test_worker.py (in-process, FixedClock):
three workers sharing 1,000 alerts, a worker SIGKILLed mid-send, PostgreSQL restarted
under a running worker, and the retry / dead-letter paths through the subprocess's own
wiring (settings → channels → error classification). The in-process tests keep the exact
backoff instants; here ``--once --now`` moves the worker's clock past the backoff instead
of waiting 30 s of real time.

The PostgreSQL restart test is last in the file and always starts the server again.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select, text

from alerts.outbox import AlertRow, DeliveryRow
from alerts.rules import next_digest_instant
from alerts.tables import deliveries as D
from events.store import EventStore
from events.store.engine import make_engine
from tests.conftest import IN_CI
from tests.integration.alert_builders import alerts, deliveries, settle
from tests.support.processes import (
    PostgresCluster,
    WorkerProcess,
    run_worker_once,
    running_workers,
    stop_all,
    wait_until,
    worker_env,
)
from tests.support.roster import (
    CONSULTANT,
    NURSE_AND_RHEUMATOLOGIST,
    NURSE_PHONE,
    RHEUM_EMAIL,
)
from tests.support.smtp_server import SmtpTestServer
from tests.support.twilio_server import TwilioTestServer
from tracker.clock import SystemClock
from tracker.importing import import_lines
from tracker.protocol import DEFAULT_PROTOCOL

pytest_plugins = ["tests.support.twilio_server", "tests.support.smtp_server"]
pytestmark = [pytest.mark.slow, pytest.mark.postgres]



def write_roster(path: Path, urgent: list[str]) -> Path:
    """nurse.a by SMS, rheum.b by e-mail, consult.c by SMS; urgent alerts to ``urgent``."""
    roles = ", ".join(f'"{r}"' for r in urgent)
    path.write_text(NURSE_AND_RHEUMATOLOGIST + CONSULTANT + f"""
[routing]
default = ["nurse"]

[routing.severity]
urgent = [{roles}]

[escalation]
chain = ["rheumatologist", "on_call_consultant"]
""", encoding="utf-8")
    return path


def _line(etype: str, patient: str, when: str, data: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": etype, "patient": patient, "occurred_at": when,
                         "recorded_by": "lab.import", "data": data})


def import_patients(store: EventStore, urgent: list[str], info: tuple[str, ...] | list[str] = ()
                    ) -> None:
    """Import, in one transaction, each ``urgent`` patient with an ionized calcium of
    0.9 mmol/L an hour ago (an urgent hypocalcaemia alert: out at once) and each ``info``
    patient with a low vitamin D (an info alert: waits for the morning digest)."""
    now = datetime.now(UTC)
    enrolled = (now - timedelta(days=60)).date().isoformat()
    lab_at = (now - timedelta(hours=1)).isoformat()
    lines: list[bytes] = []
    for ref in [*urgent, *info]:
        lines.append(_line("PatientEnrolled", ref, enrolled,
                           {"birth_date": "2012-01-01", "sex": "female"}))
    for ref in urgent:
        lines.append(_line("LabResultRecorded", ref, lab_at,
                           {"analyte": "ionized_calcium", "value": 0.9, "unit": "mmol/L"}))
    for ref in info:
        lines.append(_line("LabResultRecorded", ref, lab_at, {
            "analyte": "urine_calcium_creatinine", "value": 0.5, "unit": "mmol/mmol"}))
        lines.append(_line("LabResultRecorded", ref, lab_at,
                           {"analyte": "vitamin_d_25oh", "value": 40, "unit": "nmol/L"}))
    report = import_lines(lines, store, clock=SystemClock(), protocol=DEFAULT_PROTOCOL)
    assert report.written == len(lines)
    settle(store)  # the workers' projector will see every imported event


def count_by_status(store: EventStore) -> Counter[str]:
    with store.engine.connect() as conn:
        return Counter({s: int(n) for s, n in conn.execute(
            select(D.c.status, func.count()).group_by(D.c.status))})


def alert_events(store: EventStore, rows: list[AlertRow]) -> dict[str, list[Any]]:
    """alert id -> the events of its stream ``alert:<id>``."""
    streams = store.read_streams(f"alert:{a.alert_id}" for a in rows)
    return {a.alert_id: streams.get(f"alert:{a.alert_id}", []) for a in rows}


def patient_of_sms(body: str, refs: set[str]) -> str:
    """The patient reference an SMS names (messages carry it as ``for <ref>,``)."""
    found = [w.rstrip(",") for w in body.split() if w.rstrip(",") in refs]
    assert len(found) == 1, f"no single patient reference in {body!r}"
    return found[0]


def logs(workers: list[WorkerProcess]) -> str:
    return "\n".join(f"--- {w.worker_id} (exit {w.returncode})\n{w.log_tail()}"
                     for w in workers)


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[EventStore]:
    engine = make_engine(pg_url)
    yield EventStore(engine)
    engine.dispose()


# ---------------------------------------------------------------- three workers
def test_three_workers_deliver_1000_alerts_exactly_once(
        pg_url: str, pg_store: EventStore, tmp_path: Path,
        twilio_server: TwilioTestServer, smtp_server: SmtpTestServer) -> None:
    started = time.monotonic()
    urgent = [f"P{i:05d}" for i in range(1000)]
    info = [f"Q{i:03d}" for i in range(20)]
    import_patients(pg_store, urgent, info)
    env = worker_env(pg_url, roster_file=write_roster(tmp_path / "roster.toml",
                                                      ["nurse", "rheumatologist"]),
                     twilio=twilio_server, smtp=smtp_server)
    workers = [WorkerProcess(f"w{i}", env, tmp_path / f"w{i}.log", batch_size=50,
                             poll_seconds=0.5) for i in range(3)]
    expected = 2 * len(urgent)  # one SMS to nurse.a and one e-mail to rheum.b per alert
    with running_workers(workers):
        def done() -> bool:
            counts = count_by_status(pg_store)
            if counts["dead"] or counts["unknown"] or not all(w.alive for w in workers):
                raise AssertionError(f"deliveries {dict(counts)}\n{logs(workers)}")
            return counts["sent"] >= expected
        try:
            wait_until(done, 55 - (time.monotonic() - started), "2,000 deliveries sent",
                       interval=0.25)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {dict(count_by_status(pg_store))}\n"
                                 f"{logs(workers)}") from None
        delivered_at = time.monotonic()
        time.sleep(1.0)  # a duplicate, if any, has time to arrive
        for w in workers:
            w.signal(signal.SIGTERM)
        codes = [w.wait(20) for w in workers]
    assert codes == [0, 0, 0], logs(workers)
    assert delivered_at - started <= 60

    rows = alerts(pg_store)
    by_patient = {a.patient: a for a in rows}
    assert len(rows) == len(by_patient) == len(urgent) + len(info)  # one alert each
    urgent_rows = [by_patient[p] for p in urgent]
    sent = [d for d in deliveries(pg_store) if d.status == "sent"]
    assert len(sent) == expected
    assert {(d.alert_id, d.recipient, d.channel) for d in sent} == {
        (a.alert_id, r, c) for a in urgent_rows for r, c in (("nurse.a", "sms"),
                                                              ("rheum.b", "email"))}

    # the Twilio server: one SMS per alert, to the nurse, naming its patient
    sms = twilio_server.messages
    assert len(sms) == len(urgent) and {m.to for m in sms} == {NURSE_PHONE}
    assert Counter(patient_of_sms(m.body, set(urgent)) for m in sms) == Counter(urgent)
    # the SMTP server: one e-mail per alert (its Message-ID is derived from the alert id)
    mails = smtp_server.messages
    assert len(mails) == len(urgent) and {m.rcpt_tos for m in mails} == {(RHEUM_EMAIL,)}
    assert len({m.message_id for m in mails}) == len(urgent)
    assert Counter(next(line.split(": ", 1)[1] for line in m.body.splitlines()
                        if line.startswith("Alert: ")) for m in mails) \
        == Counter(a.alert_id for a in urgent_rows)

    # the audit log: exactly one AlertSent per delivery, carrying the provider's id
    provider = {(d.alert_id, d.recipient): d.provider_id for d in sent}
    sids = {m.sid for m in sms} | {m.message_id for m in mails}
    events = alert_events(pg_store, urgent_rows)
    senders: Counter[str] = Counter()
    for a in urgent_rows:
        kinds = [e.type for e in events[a.alert_id]]
        assert kinds[0] == "AlertRaised" and sorted(kinds[1:]) == ["AlertSent", "AlertSent"]
        for e in events[a.alert_id][1:]:
            assert e.data.provider_id == provider[(a.alert_id, e.data.recipient)]
            assert e.data.provider_id in sids and e.data.attempt == 1
            senders[e.recorded_by] += 1
    assert len(senders) >= 2, f"one worker did everything: {senders}"
    print(f"delivered {expected} in {delivered_at - started:.1f} s (import included); "
          f"AlertSent by worker: {dict(senders)}")

    # info alerts wait for the morning digest (unless this test ran across it)
    digest_at = next_digest_instant(min(a.raised_at for a in rows), DEFAULT_PROTOCOL.zone,
                                    DEFAULT_PROTOCOL.digest_hour)
    if digest_at > datetime.now(UTC):
        waiting = [d for d in deliveries(pg_store, None) if d.mode == "digest"]
        assert len(waiting) == len(info)
        assert {(d.status, d.not_before) for d in waiting} == {("pending", digest_at)}


# ---------------------------------------------------------------- faults
def test_worker_killed_mid_send_loses_nothing_and_repeats_only_its_in_flight_send(
        pg_url: str, pg_store: EventStore, tmp_path: Path,
        twilio_server: TwilioTestServer) -> None:
    urgent = [f"K{i:03d}" for i in range(30)]
    import_patients(pg_store, urgent)
    env = worker_env(pg_url, roster_file=write_roster(tmp_path / "roster.toml", ["nurse"]),
                     twilio=twilio_server)
    twilio_server.delay_next(1, seconds=5.0)  # the first SMS is taken, its answer waits
    victim = WorkerProcess("victim", env, tmp_path / "victim.log", batch_size=5,
                           lease_seconds=6, poll_seconds=0.3)
    rescuer = WorkerProcess("rescuer", env, tmp_path / "rescuer.log", batch_size=5,
                            lease_seconds=6, poll_seconds=0.3)
    try:
        victim.start()
        wait_until(lambda: bool(twilio_server.messages) or not victim.alive, 40,
                   "the victim sent its first SMS")
        with pg_store.engine.connect() as conn:
            held = {r[0]: r[1] for r in conn.execute(
                select(D.c.delivery_id, D.c.alert_id).where(
                    D.c.lease_owner == "victim", D.c.status == "sending"))}
        assert victim.kill() == -signal.SIGKILL
        [in_flight] = twilio_server.messages
        assert 1 <= len(held) <= 5, held
        print(f"victim killed holding {len(held)} claim(s)")
        rescuer.start()
        wait_until(lambda: count_by_status(pg_store)["sent"] >= len(urgent)
                   or not rescuer.alive, 40, "every alert delivered after the kill")
        time.sleep(0.5)
        assert rescuer.terminate() == 0
    finally:
        stop_all([victim, rescuer])

    rows = {a.alert_id: a for a in alerts(pg_store)}
    assert len(rows) == len(urgent)
    got = Counter(patient_of_sms(m.body, set(urgent)) for m in twilio_server.messages)
    assert set(got) == set(urgent), "an alert was lost"
    repeated = {p for p, n in got.items() if n > 1}
    assert sum(got.values()) - len(urgent) <= len(held)
    held_patients = {rows[a].patient for a in held.values()}
    assert repeated <= held_patients
    assert repeated == {patient_of_sms(in_flight.body, set(urgent))}
    assert all(n <= 2 for n in got.values())

    final = {d.delivery_id: d for d in deliveries(pg_store)}
    assert {d.status for d in final.values()} == {"sent"}
    for delivery_id in held:  # taken over after the lease: one more attempt, recorded once
        assert final[delivery_id].attempts == 2
    events = alert_events(pg_store, list(rows.values()))
    for alert_id, evs in events.items():
        sent_events = [e for e in evs if e.type == "AlertSent"]
        assert len(sent_events) == 1, (alert_id, [e.type for e in evs])
        assert sent_events[0].data.attempt == (2 if alert_id in held.values() else 1)
    assert "event=outbox.reclaimed" in rescuer.log()


def test_urgent_claims_of_a_killed_worker_go_out_within_30_seconds_not_the_lease(
        pg_url: str, pg_store: EventStore, tmp_path: Path,
        twilio_server: TwilioTestServer) -> None:
    """Production timings (lease 120 s, poll 30 s): the restarted worker takes the dead
    one's claims when its heartbeat expires (15 s), not when its lease does."""
    urgent = [f"H{i:03d}" for i in range(8)]
    import_patients(pg_store, urgent)
    env = worker_env(pg_url, roster_file=write_roster(tmp_path / "roster.toml", ["nurse"]),
                     twilio=twilio_server)
    twilio_server.delay_next(1, seconds=8.0)  # the first SMS is taken, its answer waits
    victim = WorkerProcess("victim", env, tmp_path / "victim.log", batch_size=4,
                           lease_seconds=120, poll_seconds=0.3)
    restarted = WorkerProcess("restarted", env, tmp_path / "restarted.log", batch_size=4,
                              lease_seconds=120, poll_seconds=30)
    try:
        victim.start()
        wait_until(lambda: bool(twilio_server.messages) or not victim.alive, 40,
                   "the victim sent its first SMS")
        with pg_store.engine.connect() as conn:
            held = {r[0] for r in conn.execute(select(D.c.delivery_id).where(
                D.c.lease_owner == "victim", D.c.status == "sending"))}
        assert victim.kill() == -signal.SIGKILL
        killed = time.monotonic()
        assert len(held) == 4, held
        restarted.start()
        wait_until(lambda: count_by_status(pg_store)["sent"] >= len(urgent)
                   or not restarted.alive, 30, "every urgent alert sent after the kill")
        elapsed = time.monotonic() - killed
        print(f"the dead worker's {len(held)} claims went out {elapsed:.1f} s after the kill")
        assert restarted.terminate() == 0
    finally:
        stop_all([victim, restarted])
    got = Counter(patient_of_sms(m.body, set(urgent)) for m in twilio_server.messages)
    assert set(got) == set(urgent)
    assert sum(got.values()) == len(urgent) + 1  # only the SMS in flight went twice
    assert "event=worker.taking_over" in restarted.log()
    final = {d.delivery_id: d for d in deliveries(pg_store)}
    assert all(final[i].status == "sent" for i in held)


def _delivery(store: EventStore, channel: str) -> DeliveryRow:
    [d] = [d for d in deliveries(store) if d.channel == channel]
    return d


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def test_smtp_down_and_twilio_500s_are_retried_by_the_worker_process(
        pg_url: str, pg_store: EventStore, tmp_path: Path,
        twilio_server: TwilioTestServer, smtp_server: SmtpTestServer) -> None:
    import_patients(pg_store, ["R001"])
    env = worker_env(pg_url, roster_file=write_roster(tmp_path / "roster.toml",
                                                      ["nurse", "rheumatologist"]),
                     twilio=twilio_server, smtp=smtp_server, smtp_timeout=3)
    smtp_server.stop()
    twilio_server.fail_next(2, status=500)
    t0 = datetime.now(UTC).replace(microsecond=0)

    first = run_worker_once(env, now=_iso(t0))
    assert first.returncode == 0, first.stderr
    sms, mail = _delivery(pg_store, "sms"), _delivery(pg_store, "email")
    for d in (sms, mail):  # transient: back to pending after the backoff (30 s ± 20 %)
        assert (d.status, d.attempts) == ("pending", 1), d
        assert t0 + timedelta(seconds=24) <= d.not_before <= t0 + timedelta(seconds=36)
    assert "refused" in (mail.last_error or "") and "500" in (sms.last_error or "")

    smtp_server.start()  # the mail server is back
    second = run_worker_once(env, now=_iso(t0 + timedelta(seconds=40)))
    assert second.returncode == 0, second.stderr
    sms, mail = _delivery(pg_store, "sms"), _delivery(pg_store, "email")
    assert (mail.status, mail.attempts) == ("sent", 2)
    assert (sms.status, sms.attempts) == ("pending", 2)  # the second 500
    assert sms.not_before <= t0 + timedelta(seconds=40 + 72)

    third = run_worker_once(env, now=_iso(t0 + timedelta(seconds=40 + 75)))
    assert third.returncode == 0, third.stderr
    sms = _delivery(pg_store, "sms")
    assert (sms.status, sms.attempts) == ("sent", 3)

    assert twilio_server.count(to=NURSE_PHONE) == 1
    assert [r.status for r in twilio_server.requests] == [500, 500, 201]
    [received] = smtp_server.messages
    assert received.message_id == mail.provider_id
    [alert] = alerts(pg_store)
    evs = alert_events(pg_store, [alert])[alert.alert_id]
    outcomes = [(e.type, e.data.channel, e.data.attempt) for e in evs[1:]]
    assert sorted(outcomes) == [
        ("AlertFailed", "email", 1), ("AlertFailed", "sms", 1), ("AlertFailed", "sms", 2),
        ("AlertSent", "email", 2), ("AlertSent", "sms", 3)]
    assert not any(e.data.permanent for e in evs if e.type == "AlertFailed")


def test_unsubscribed_number_is_dead_lettered_once_and_escalated_by_the_worker_process(
        pg_url: str, pg_store: EventStore, tmp_path: Path,
        twilio_server: TwilioTestServer, smtp_server: SmtpTestServer) -> None:
    import_patients(pg_store, ["U001"])
    env = worker_env(pg_url, roster_file=write_roster(tmp_path / "roster.toml", ["nurse"]),
                     twilio=twilio_server, smtp=smtp_server)
    twilio_server.reject(NURSE_PHONE, code=21610)
    t0 = datetime.now(UTC).replace(microsecond=0)

    first = run_worker_once(env, now=_iso(t0))
    assert first.returncode == 0, first.stderr
    [d] = deliveries(pg_store)
    assert (d.status, d.attempts) == ("dead", 1) and "21610" in (d.last_error or "")
    [alert] = alerts(pg_store)
    failed = alert_events(pg_store, [alert])[alert.alert_id][-1]
    assert failed.type == "AlertFailed" and failed.data.permanent
    assert not failed.data.outcome_unknown

    # an hour later: never retried; nobody at level 0 was told, so it went up the chain
    later = run_worker_once(env, now=_iso(t0 + timedelta(hours=1)))
    assert later.returncode == 0, later.stderr
    assert [r.status for r in twilio_server.requests] == [400]
    assert twilio_server.messages == []
    [mail] = smtp_server.messages
    assert mail.rcpt_tos == (RHEUM_EMAIL,) and "Escalated (level 1)" in mail.subject
    types = [e.type for e in alert_events(pg_store, [alert])[alert.alert_id]]
    assert types == ["AlertRaised", "AlertFailed", "AlertEscalated", "AlertSent"]


# ---------------------------------------------------------------- PostgreSQL restart (last)
def _other_clients(url: str) -> list[str]:
    """Client sessions of other databases on the server (other people's work)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [f"{r[0]} ({r[1]})" for r in conn.execute(text(
                "SELECT datname, coalesce(application_name, '') FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
                "AND datname IS DISTINCT FROM current_database()"))]
    finally:
        engine.dispose()


def test_worker_carries_on_after_postgresql_restarts(
        pg_url: str, pg_store: EventStore, tmp_path: Path,
        twilio_server: TwilioTestServer) -> None:
    cluster = PostgresCluster.for_url(pg_url)
    if cluster is None:
        pytest.skip("no local pg_ctlcluster cluster (as root) behind the test URL")
    others = _other_clients(pg_url)
    if others and not IN_CI and os.environ.get("CNO_TEST_PG_RESTART") != "1":
        pytest.skip(f"other sessions use this PostgreSQL server ({', '.join(others[:5])}): "
                    "not restarting it under them (CNO_TEST_PG_RESTART=1 forces it)")
    env = worker_env(pg_url, roster_file=write_roster(tmp_path / "roster.toml", ["nurse"]),
                     twilio=twilio_server)
    before = [f"B{i:03d}" for i in range(5)]
    after = [f"A{i:03d}" for i in range(5)]
    import_patients(pg_store, before)
    twilio_server.delay_next(1, seconds=4.0)  # the server goes down while this SMS is out
    w = WorkerProcess("survivor", env, tmp_path / "survivor.log", batch_size=5,
                      lease_seconds=5, poll_seconds=0.5)
    with running_workers([w]):
        wait_until(lambda: bool(twilio_server.messages) or not w.alive, 40,
                   "the first SMS sent")
        [in_flight] = twilio_server.messages
        with pg_store.engine.connect() as conn:
            held = {r[0] for r in conn.execute(select(D.c.delivery_id).where(
                D.c.lease_owner == "survivor", D.c.status == "sending"))}
        pid = w.pid
        try:
            cluster.stop()
            # down for at least three ticks of the worker: each fails, none kills it
            wait_until(lambda: w.log().count("event=job.database_unavailable job=dispatch")
                       >= 3 or not w.alive, 30, "the worker noticed the outage")
            assert w.alive, w.log_tail()
        finally:
            cluster.start()  # always: the rest of the suite needs the server
        pg_store.engine.dispose()  # this process's pooled connections died with the server
        import_patients(pg_store, after)
        wait_until(lambda: count_by_status(pg_store)["sent"] >= 10 or not w.alive, 40,
                   "every alert sent after the restart")
        time.sleep(0.5)
        assert w.alive and w.pid == pid, w.log_tail()
        assert w.terminate() == 0, w.log_tail()
    refs = set(before + after)
    got = Counter(patient_of_sms(m.body, refs) for m in twilio_server.messages)
    assert set(got) == refs, "an alert was lost"
    # the SMS out when the server went down could not be recorded: it went again once its
    # lease ran out (at most the in-flight send repeats); everything else went once
    assert {p for p, n in got.items() if n > 1} <= {patient_of_sms(in_flight.body, refs)}
    assert sum(got.values()) - len(refs) <= 1 <= len(held) <= 5
    assert count_by_status(pg_store) == Counter({"sent": 10})
    rows = alerts(pg_store)
    for alert_id, evs in alert_events(pg_store, rows).items():
        assert [e.type for e in evs] == ["AlertRaised", "AlertSent"], alert_id
    assert cluster.ready()


def test_postgresql_is_up_after_this_file() -> None:
    """Guard for the tests after this file: the server answers (started again if not)."""
    from tests.conftest import PG_ADMIN_URL, require_postgres

    cluster = PostgresCluster.for_url(PG_ADMIN_URL)
    if cluster is not None and not cluster.ready():
        cluster.start()
    require_postgres()
    engine = make_engine(PG_ADMIN_URL)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()

