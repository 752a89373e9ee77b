"""``cno-tracker worker status [--json]`` as an operator runs it, on SQLite and PostgreSQL:
exit 1 without a fresh heartbeat, exit 0 while a real worker process runs, the channel a
running worker found down (wrong Twilio token), and exit 1 again once it stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from click.testing import CliRunner, Result

from tests.support.events import line
from tests.support.twilio_server import (
    TEST_ACCOUNT_SID,
    TEST_FROM,
    TwilioTestServer,
)
from tracker.cli.main import cli

pytest_plugins = ["tests.support.twilio_server"]

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("cno-tracker"))


def urgent_lines() -> list[bytes]:
    """An ionized calcium under 1 mmol/L an hour ago: an urgent alert for the worker now."""
    lab_at = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    return [
        line("PatientEnrolled", "P0007", (lab_at - timedelta(days=60)).date().isoformat(),
             {"birth_date": "2012-05-01", "sex": "female"}),
        line("LabResultRecorded", "P0007", lab_at.isoformat(),
             {"analyte": "ionized_calcium", "value": 0.9, "unit": "mmol/L"}),
    ]


def env_for(db: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNO_TRACKER_")}
    env.update({"CNO_TRACKER_DATABASE_URL": db, **extra})
    return env


def status(db: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["worker", "status", *args],
                              env={"CNO_TRACKER_DATABASE_URL": db}, catch_exceptions=False)


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_status_follows_a_real_worker_process(db_url: str, tmp_path: Path,
                                              twilio_server: TwilioTestServer) -> None:
    nobody = status(db_url)
    assert nobody.exit_code == 1
    assert "NO FRESH HEARTBEAT" in nobody.output
    source = tmp_path / "urgent.jsonl"
    source.write_bytes(b"".join(x + b"\n" for x in urgent_lines()))
    imported = subprocess.run([CLI, "import", str(source)], env=env_for(db_url),
                              capture_output=True, text=True, check=False)
    assert imported.returncode == 0, imported.stderr
    wrong = "wrong-token-0000000000000000"
    env = env_for(db_url, CNO_TRACKER_ROSTER_FILE=str(ROOT / "examples" / "roster.toml"),
                  CNO_TRACKER_TWILIO_ACCOUNT_SID=TEST_ACCOUNT_SID,
                  CNO_TRACKER_TWILIO_AUTH_TOKEN=wrong,
                  CNO_TRACKER_TWILIO_FROM_NUMBER=TEST_FROM,
                  CNO_TRACKER_TWILIO_BASE_URL=twilio_server.base_url)
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([CLI, "worker", "--poll-seconds", "0.5", "--worker-id",
                                 "w-status"], env=env, stdout=subprocess.DEVNULL,
                                stderr=log, start_new_session=True)
    try:
        wait_for(lambda: "sms" in orjson.loads(status(db_url, "--json").output)
                 ["channels_down"], 60, "the SMS channel reported down")
        report = orjson.loads(status(db_url, "--json").output)
        assert report["alive"] == 1 and report["ok"] is False
        [me] = [w for w in report["workers"] if w["worker_id"] == "w-status"]
        assert me["alive"] and me["pid"] == proc.pid and me["cycle_ended_at"]
        assert "20003" in report["channels_down"]["sms"]
        assert report["deliveries"]["sms"]["pending"] >= 1
        assert report["lag_positions"] == 0
        text = status(db_url)
        assert text.exit_code == 1
        assert "workers: 1 alive" in text.output and "CHANNEL DOWN sms" in text.output
        assert wrong not in text.output + log_path.read_text()
        # the configuration error is logged once per cycle, not once per delivery
        time.sleep(2.0)  # a few 0.5 s cycles
        downs = log_path.read_text().count("event=config.channel_down")
        assert 2 <= downs <= 2.0 / 0.5 + 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    after = status(db_url)
    assert after.exit_code == 1 and "w-status  stopped" in after.output


def test_status_is_ok_with_a_live_worker_and_no_channel_down(db_url: str,
                                                             tmp_path: Path) -> None:
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([CLI, "worker", "--poll-seconds", "0.5", "--worker-id",
                                 "w-ok"], env=env_for(db_url), stdout=subprocess.DEVNULL,
                                stderr=log, start_new_session=True)
    try:
        wait_for(lambda: status(db_url).exit_code == 0, 60, "a fresh heartbeat")
        ok = status(db_url)
        assert ok.exit_code == 0, ok.output
        assert "workers: 1 alive" in ok.output and "w-ok  alive" in ok.output
        assert orjson.loads(status(db_url, "--json").output)["ok"] is True
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert status(db_url).exit_code == 1
