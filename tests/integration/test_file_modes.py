"""Owner-only files (issue 9 item 7): the SQLite database with its WAL and SHM, the
worker's lock file and the alert log are created 0600, the folders made for them 0700,
whatever the umask. (SQLite only: PostgreSQL keeps no files of ours.)"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from alerts.channels.base import Message, Recipient
from alerts.channels.console import FileChannel
from alerts.worker import SingleWorkerLock
from tracker.bootstrap import bootstrap
from tracker.cli.main import cli
from tracker.settings import Settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # the usual default: new files world-readable
    try:
        yield
    finally:
        os.umask(previous)


def test_a_new_sqlite_database_and_its_wal_and_shm_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "cno.db"
    result = CliRunner().invoke(cli, [
        "record", "PatientEnrolled", "P0001", "--at", "2014-01-10",
        "--data", '{"birth_date": "2003-05-01", "sex": "female"}'],
        env={"CNO_TRACKER_DATABASE_URL": f"sqlite:///{path}"})
    assert result.exit_code == 0, result.output
    assert mode(path) == 0o600
    app = bootstrap(Settings(database_url=f"sqlite:///{path}"))
    try:
        with app.engine.connect() as conn:  # an open connection keeps its WAL and SHM
            conn.execute(text("SELECT count(*) FROM events")).scalar_one()
            wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
            assert wal.exists() and shm.exists()
            assert (mode(wal), mode(shm)) == (0o600, 0o600)
    finally:
        app.close()


def test_db_upgrade_creates_a_new_sqlite_database_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "release.db"
    result = CliRunner().invoke(cli, ["db", "upgrade"],
                                env={"CNO_TRACKER_DATABASE_URL": f"sqlite:///{path}"})
    assert result.exit_code == 0, result.output
    assert mode(path) == 0o600


def test_an_existing_database_keeps_the_mode_its_owner_gave_it(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    path.touch(mode=0o640)
    os.chmod(path, 0o640)
    app = bootstrap(Settings(database_url=f"sqlite:///{path}"))
    app.close()
    assert mode(path) == 0o640


def test_the_worker_lock_file_is_owner_only(tmp_path: Path) -> None:
    lock = SingleWorkerLock(tmp_path / "cno.db.worker.lock")
    lock.acquire()
    try:
        assert mode(tmp_path / "cno.db.worker.lock") == 0o600
    finally:
        lock.release()


def test_the_alert_log_and_its_new_folders_are_owner_only(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    log = tmp_path / "var" / "log" / "alerts.jsonl"
    message = Message(alert_id="a-1", patient_ref="P0007", kind="post_dose_labs_due",
                      severity="urgent", subject="[URGENT] P0007: labs overdue",
                      sms_text="URGENT: labs overdue for P0007.",
                      email_text="URGENT: labs overdue for P0007.\n", due_on=date(2015, 2, 5))
    FileChannel(log).send(message, Recipient(staff_id="nurse.lopez"))
    assert mode(log) == 0o600
    assert (mode(log.parent), mode(log.parent.parent)) == (0o700, 0o700)
    assert mode(tmp_path) == 0o755  # an existing folder is left as it was
