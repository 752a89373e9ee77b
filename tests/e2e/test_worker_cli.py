"""The worker and ``alerts list|ack`` as a user runs them: the CLI over SQLite with the
console channel, the bundled example, a real process stopped by SIGTERM, and a run with
Twilio settings whose output carries no secret and no phone number."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from alerts.worker import SingleWorkerLock
from events.store import EventStore
from events.store.engine import make_engine
from tests.support.events import line
from tests.support.twilio_server import (
    TEST_ACCOUNT_SID,
    TEST_AUTH_TOKEN,
    TEST_FROM,
    TwilioTestServer,
)
from tracker.cli.main import cli

pytest_plugins = ["tests.support.twilio_server"]

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("cno-tracker"))
NOW = "2025-03-10T10:00:00+01:00"
LINES = [
    line("PatientEnrolled", "P0007", "2025-01-10", {"birth_date": "2012-05-01", "sex": "female"}),
    line("LabResultRecorded", "P0007", "2025-03-10T09:00:00+01:00",
         {"analyte": "ionized_calcium", "value": 0.9, "unit": "mmol/L"}),
    line("LabResultRecorded", "P0007", "2025-03-10T09:00:00+01:00",
         {"analyte": "urine_calcium_creatinine", "value": 0.5, "unit": "mmol/mmol"}),
    line("LabResultRecorded", "P0007", "2025-03-10T09:00:00+01:00",
         {"analyte": "vitamin_d_25oh", "value": 40, "unit": "nmol/L"}),
]


@pytest.fixture
def db(tmp_path: Path, sqlite_template: Path) -> str:
    target = tmp_path / "cno.db"
    shutil.copy(sqlite_template, target)
    return f"sqlite:///{target}"


def run(db: str, *args: str, **env: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"CNO_TRACKER_DATABASE_URL": db, **env},
                              catch_exceptions=False)


def imported(db: str, tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    f.write_bytes(b"\n".join(LINES) + b"\n")
    assert run(db, "import", str(f)).exit_code == 0


def listed(db: str, *flags: str) -> list[dict[str, Any]]:
    result = run(db, "alerts", "list", "--json", *flags)
    assert result.exit_code == 0, result.output
    return list(orjson.loads(result.stdout))


def test_once_through_the_cli_then_list_and_ack(db: str, tmp_path: Path) -> None:
    imported(db, tmp_path)
    result = run(db, "worker", "--once", "--now", NOW)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "[urgent] to duty.desk: URGENT: urgent review for P0007, 2025-03-10. "
        "Open the tracker for details."]
    alerts = {a["kind"]: a for a in listed(db)}
    assert set(alerts) == {"hypocalcaemia", "supplement_suggested"}
    urgent, info = alerts["hypocalcaemia"], alerts["supplement_suggested"]
    assert [(d["channel"], d["status"]) for d in urgent["deliveries"]] == [("console", "sent")]
    assert [(d["mode"], d["status"], d["not_before"]) for d in info["deliveries"]] == [
        ("digest", "pending", "2025-03-11T07:00:00.000000+00:00")]
    # a second cycle at the same instant repeats nothing
    again = run(db, "worker", "--once", "--now", NOW)
    assert again.exit_code == 0 and again.stdout == ""

    ack = run(db, "alerts", "ack", urgent["alert_id"][:8], "--by", "dr.who", "--note", "done")
    assert ack.exit_code == 0 and "acknowledged by dr.who" in ack.stdout
    assert [a["kind"] for a in listed(db, "--open")] == ["supplement_suggested"]
    twice = run(db, "alerts", "ack", urgent["alert_id"], "--by", "dr.x")
    assert twice.exit_code == 0 and "already acknowledged by dr.who" in twice.stdout
    missing = run(db, "alerts", "ack", "no-such-alert", "--by", "dr.x")
    assert missing.exit_code == 4
    human = run(db, "alerts", "list")
    assert "acknowledged by dr.who" in human.stdout and "1 pending" in human.stdout

    # the digest goes out at 08:00 the next morning, listing the open item
    digest = run(db, "worker", "--once", "--now", "2025-03-11T08:00:00+01:00")
    assert "Daily summary 2025-03-11: 1 open item for 1 patient" in digest.stdout

    store = EventStore(make_engine(db))
    assert [e.type for e in store.read_stream(f"alert:{urgent['alert_id']}")] == [
        "AlertRaised", "AlertSent", "AlertAcknowledged"]
    assert [e.type for e in store.read_stream(f"alert:{info['alert_id']}")] == [
        "AlertRaised", "AlertSent"]
    store.engine.dispose()


def test_the_bundled_example_on_sqlite_with_the_console(db: str) -> None:
    assert run(db, "import", str(ROOT / "examples" / "cohort-12.jsonl")).exit_code == 0
    result = run(db, "worker", "--once", "--now", "2016-12-11T08:00:00+01:00")
    assert result.exit_code == 0, result.output
    assert "Daily summary 2016-12-11: 1 open item for 1 patient" in result.stdout
    [alert] = listed(db)
    assert (alert["patient"], alert["kind"], alert["status"]) == (
        "G7-0007", "remission_reached", "open")


def test_second_worker_on_sqlite_is_refused(db: str) -> None:
    database = Path(db.removeprefix("sqlite:///"))
    lock = SingleWorkerLock(database.with_name(database.name + ".worker.lock"))
    lock.acquire()
    try:
        result = CliRunner().invoke(cli, ["worker", "--once"],
                                    env={"CNO_TRACKER_DATABASE_URL": db})
    finally:
        lock.release()
    assert result.exit_code == 5
    assert "another alert worker is already running on this SQLite database" in result.stderr


def test_now_needs_once(db: str) -> None:
    result = CliRunner().invoke(cli, ["worker", "--now", NOW],
                                env={"CNO_TRACKER_DATABASE_URL": db})
    assert result.exit_code == 2 and "--now is only allowed with --once" in result.output


def _env(db: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNO_TRACKER_")}
    env.update({"CNO_TRACKER_DATABASE_URL": db, "PYTHONPATH": str(ROOT), **extra})
    return env


def test_sigterm_stops_the_worker_cleanly(db: str, tmp_path: Path) -> None:
    err = (tmp_path / "stderr.log").open("w+")
    proc = subprocess.Popen(
        [CLI, "worker", "--poll-seconds", "0.2",
         "--worker-id", "w-term"], env=_env(db), stdout=subprocess.DEVNULL, stderr=err,
        cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while "event=worker.started" not in (tmp_path / "stderr.log").read_text():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)  # a few scheduled ticks
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "stderr.log").read_text()
    assert "event=worker.stopping worker=w-term signal=SIGTERM" in log
    assert "event=worker.stopped worker=w-term" in log


def test_twilio_run_logs_no_secret_and_no_phone(db: str, tmp_path: Path,
                                                twilio_server: TwilioTestServer) -> None:
    imported(db, tmp_path)
    env = _env(db, CNO_TRACKER_ROSTER_FILE=str(ROOT / "examples" / "roster.toml"),
               CNO_TRACKER_TWILIO_ACCOUNT_SID=TEST_ACCOUNT_SID,
               CNO_TRACKER_TWILIO_AUTH_TOKEN=TEST_AUTH_TOKEN,
               CNO_TRACKER_TWILIO_FROM_NUMBER=TEST_FROM,
               CNO_TRACKER_TWILIO_BASE_URL=twilio_server.base_url)
    done = subprocess.run([CLI, "worker", "--once", "--now", NOW], env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # urgent: the nurse and the on-call rheumatologist, by SMS
    assert sorted(m.to for m in twilio_server.messages) == ["+34600000001", "+34600000004"]
    output = done.stdout + done.stderr
    assert "event=alert.sent" in done.stderr and "provider_id=SM" in done.stderr
    for secret in (TEST_AUTH_TOKEN, "+34600000001", "+34600000004", "example.org"):
        assert secret not in output
