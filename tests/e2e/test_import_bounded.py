"""A streamed import (issue 9 item 3): overlong lines refused with their number, checks
that span batches, all-or-nothing under kill -9, and concurrent imports on PostgreSQL as
a conflict (exit 3), never a traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from datetime import date
from pathlib import Path
from typing import IO

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from events.store import EventStore
from events.store.engine import make_engine
from tests.support.events import line
from tests.support.processes import wait_until
from tracker import importing
from tracker.cli.main import cli
from tracker.synthetic import generate_cohort

CLI = str(Path(sys.executable).parent / "cno-tracker")
REPO = Path(__file__).resolve().parents[2]
ENROL = line("PatientEnrolled", "P0007", "2014-01-10",
             {"birth_date": "2003-05-01", "sex": "female"}, idempotency_key="enrol-P0007")
VISIT = {"pain": True, "swelling": False, "functional_limitation": True}


def visit(day: int, key: str | None = None, pain: bool = True) -> bytes:
    extra = {"idempotency_key": key} if key else {}
    return line("VisitRecorded", "P0007", f"2015-03-{day:02d}", {**VISIT, "pain": pain},
                **extra)


def run(db_url: str, tmp_path: Path, *lines: bytes, args: tuple[str, ...] = (),
        env: dict[str, str] | None = None) -> Result:
    f = tmp_path / "in.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    return CliRunner().invoke(cli, ["import", str(f), *args],
                              env={"CNO_TRACKER_DATABASE_URL": db_url, **(env or {})})


def count(db_url: str) -> int:
    engine = make_engine(db_url)
    try:
        return EventStore(engine).count()
    finally:
        engine.dispose()


def test_a_line_over_the_limit_is_refused_with_its_number(db_url: str, tmp_path: Path) -> None:
    long_visit = line("VisitRecorded", "P0007", "2015-03-10", {**VISIT},
                      recorded_by="n" * 120)
    limit = str(len(ENROL) + 10)
    assert len(long_visit) > len(ENROL) + 10
    result = run(db_url, tmp_path, ENROL, long_visit, visit(11), args=("--max-line-bytes", limit))
    assert result.exit_code == 2, result.output
    assert f"line 2: line: longer than {limit} bytes; the import stops here" in result.output
    assert "nothing was written" in result.output and count(db_url) == 0
    by_env = run(db_url, tmp_path, ENROL, long_visit, env={"CNO_TRACKER_MAX_LINE_BYTES": limit})
    assert by_env.exit_code == 2 and f"line 2: line: longer than {limit} bytes" in by_env.output
    exactly = run(db_url, tmp_path, ENROL, args=("--max-line-bytes", str(len(ENROL))))
    assert exactly.exit_code == 0, exactly.output


def test_dev_zero_ends_with_the_line_error(db_url: str) -> None:
    result = subprocess.run([CLI, "import", "/dev/zero"], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=False,
                            env={**os.environ, "CNO_TRACKER_DATABASE_URL": db_url})
    assert result.returncode == 2, result.stderr
    assert "line 1: line: longer than 1048576 bytes; the import stops here" in result.stderr
    assert "Traceback" not in result.stderr and count(db_url) == 0


def test_stdin_is_bounded_too(db_url: str) -> None:
    result = CliRunner().invoke(cli, ["import", "-", "--max-line-bytes", "64"],
                                input=ENROL + b"\n", env={"CNO_TRACKER_DATABASE_URL": db_url})
    assert result.exit_code == 2 and "line 1: line: longer than 64 bytes" in result.output


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importing, "BATCH_LINES", 2)


@pytest.mark.usefixtures("small_batches")
def test_checks_span_batches(db_url: str, tmp_path: Path) -> None:
    # enrolment in the first batch, a key reused with new content three batches later
    lines = [ENROL, visit(1, "k1"), visit(2), visit(3), visit(4), visit(5, "k1", pain=False)]
    result = run(db_url, tmp_path, *lines)
    assert result.exit_code == 2, result.output
    assert "line 6: idempotency_key: 'k1' was already used for different content" in result.output
    assert count(db_url) == 0  # earlier batches were written, then rolled back
    # the same key with the same content later in the file is a duplicate
    ok = run(db_url, tmp_path, ENROL, visit(1, "k1"), visit(2), visit(3), visit(1, "k1"))
    assert ok.exit_code == 0, ok.output
    assert "wrote 4 event(s) for 1 patient(s), skipped 1 duplicate(s)" in ok.output
    assert count(db_url) == 4


@pytest.mark.usefixtures("small_batches")
@pytest.mark.parametrize("before", [0, 2], ids=["first-and-second", "inside-the-transaction"])
def test_a_key_of_the_batch_just_before_is_known(db_url: str, tmp_path: Path,
                                                 before: int) -> None:
    """A key reused in the very next batch (lines 2 + before and 3 + before sit in two
    adjacent batches of two lines): the first of them outside the transaction, or both
    inside it."""
    early = [visit(10 + i) for i in range(before)]
    same = [ENROL, *early, visit(1, "k1"), visit(1, "k1"), visit(2)]
    ok = run(db_url, tmp_path, *same)
    assert ok.exit_code == 0, ok.output
    assert f"wrote {3 + before} event(s) for 1 patient(s), skipped 1 duplicate(s)" in ok.output
    other = [ENROL, *early, visit(1, "k2"), visit(1, "k2", pain=False)]
    refused = run(db_url, tmp_path, *other)
    assert refused.exit_code == 2, refused.output
    assert (f"line {3 + before}: idempotency_key: 'k2' was already used for different "
            "content") in refused.output
    assert count(db_url) == 3 + before


@pytest.mark.usefixtures("small_batches")
def test_dry_run_over_many_batches_writes_nothing(db_url: str, tmp_path: Path) -> None:
    result = run(db_url, tmp_path, ENROL, *(visit(d) for d in range(1, 8)),
                 args=("--dry-run",))
    assert result.exit_code == 0, result.output
    assert "would write 8 event(s) for 1 patient(s)" in result.output
    assert count(db_url) == 0


@pytest.mark.usefixtures("small_batches")
def test_a_void_and_a_correction_in_different_batches(db_url: str, tmp_path: Path) -> None:
    assert run(db_url, tmp_path, ENROL, visit(1)).exit_code == 0
    engine = make_engine(db_url)
    target = EventStore(engine).read_stream("P0007")[1].event_id
    engine.dispose()
    void = line("EntryVoided", "P0007", "2015-04-01",
                {"target_event_id": target, "reason": "entered in error"})
    fix = line("EntryCorrected", "P0007", "2015-04-02",
               {"target_event_id": target, "reason": "typo", "data": {**VISIT, "pain": False}})
    result = run(db_url, tmp_path, void, visit(2), visit(3), visit(4), fix)
    assert result.exit_code == 2, result.output
    assert "line 5: data.target_event_id:" in result.output
    assert "is voided on line 1 of this file" in result.output
    assert count(db_url) == 2


def cohort_file(path: Path, patients: int) -> Path:
    with path.open("wb") as fh:
        for entry in generate_cohort(patients, 11, date(2020, 12, 31), start_year=2015):
            fh.write(orjson.dumps(entry) + b"\n")
    return path


def _writing(db_url: str, tmp_path: Path) -> bool:
    """Whether an import is inside its transaction and has written rows."""
    if db_url.startswith("sqlite"):
        wal = tmp_path / "cno.db-wal"
        return wal.exists() and wal.stat().st_size > 256 * 1024
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return bool(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()")).scalar())
    finally:
        engine.dispose()


def _feed(pipe: IO[bytes], data: bytes) -> None:
    """Write data into a child's standard input and leave the pipe open."""
    with contextlib.suppress(BrokenPipeError):
        pipe.write(data)
        pipe.flush()


#: patients in a file for :func:`start_fed_import` big enough that the import writes
#: several batches before it waits for the rest: it reads about six batches ahead of its
#: writes (four being decoded, one read ahead, one written once the next is decoded), and
#: SQLite keeps a transaction's first 2 MB in its page cache, not in the WAL `_writing`
#: watches
FED_PATIENTS = 600


def start_fed_import(big: Path, env: dict[str, str]
                     ) -> tuple[subprocess.Popen[bytes], threading.Thread]:
    """``cno-tracker import -`` fed the first two thirds of ``big`` through a pipe that is
    never closed: the import streams them into its transaction, then waits for the rest,
    and can be killed there however fast the machine is (a file of any size can be
    finished before a timed kill)."""
    data = big.read_bytes()
    prefix = data[: data.index(b"\n", len(data) * 2 // 3) + 1]
    proc = subprocess.Popen([CLI, "import", "-"], cwd=REPO, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    assert proc.stdin is not None
    feeder = threading.Thread(target=_feed, args=(proc.stdin, prefix), daemon=True)
    feeder.start()
    return proc, feeder


def test_kill_9_mid_import_leaves_nothing(db_url: str, tmp_path: Path) -> None:
    big = cohort_file(tmp_path / "big.jsonl", FED_PATIENTS)
    assert run(db_url, tmp_path, ENROL).exit_code == 0
    env = {**os.environ, "CNO_TRACKER_DATABASE_URL": db_url}
    proc, feeder = start_fed_import(big, env)
    assert proc.stdin is not None
    try:
        wait_until(lambda: _writing(db_url, tmp_path) or proc.poll() is not None, 120,
                   "the import began writing")
        assert proc.poll() is None, "the import ended before it could be killed"
        feeder.join(60)
        assert not feeder.is_alive(), "the import stopped reading its input"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdin.close()
    assert count(db_url) == 1
    engine = make_engine(db_url)
    try:
        assert EventStore(engine).verify() == []
    finally:
        engine.dispose()
    again = subprocess.run([CLI, "import", str(big)], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=600, check=False)
    assert again.returncode == 0, again.stderr
    assert count(db_url) > 1000


def test_two_concurrent_imports_on_postgres_one_wins_the_other_is_told_to_retry(
        pg_url: str, tmp_path: Path) -> None:
    big = cohort_file(tmp_path / "big.jsonl", 150)
    env = {**os.environ, "CNO_TRACKER_DATABASE_URL": pg_url}
    procs = [subprocess.Popen([CLI, "import", str(big)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outcomes = [(p.wait(600), *p.communicate(timeout=600)) for p in procs]
    codes = sorted(code for code, _, _ in outcomes)
    for _, _out, err in outcomes:
        assert "Traceback" not in err and "UniqueViolation" not in err, err
    loser = next((err for code, _, err in outcomes if code == 3), "")
    # both at once (each takes seconds): one commits, the other's rows collide with it
    assert codes == [0, 3], outcomes
    assert "re-read and retry" in loser, loser
    lines = sum(1 for _ in big.open("rb"))
    assert count(pg_url) == lines
