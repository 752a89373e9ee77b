"""Every refusal is one line and a documented exit code, never a traceback (issue 9
item 2): the attacks and accidents of the issue, run through the real entry point."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy.exc import OperationalError, StatementError

from events.store import EventStore
from events.store.engine import make_engine
from tracker.cli.main import cli

CLI = str(Path(sys.executable).with_name("cno-tracker"))
ENROL = {"type": "PatientEnrolled", "patient": "P0007", "occurred_at": "2014-01-10",
         "data": {"birth_date": "2003-05-01", "sex": "female"}}


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNO_TRACKER_")}
    env["CNO_TRACKER_ERROR_LOG"] = str(tmp_path / "log" / "errors.log")
    env.update(extra)
    return env


def run(tmp_path: Path, db_url: str, *args: str, stdin: bytes | None = None,
        **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], input=stdin.decode() if stdin is not None else None, text=True,
        capture_output=True, timeout=120,
        env=clean_env(tmp_path, CNO_TRACKER_DATABASE_URL=db_url, **extra), check=False)


def assert_refused(result: subprocess.CompletedProcess[str] | Result, code: int) -> str:
    out = (result.stdout or "") + (result.stderr or "") if isinstance(
        result, subprocess.CompletedProcess) else result.output
    code_seen = result.returncode if isinstance(result, subprocess.CompletedProcess) \
        else result.exit_code
    assert code_seen == code, out
    assert "Traceback" not in out
    return out


def count(db_url: str) -> int:
    engine = make_engine(db_url)
    try:
        return EventStore(engine).count()
    finally:
        engine.dispose()


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_calendar_edge_datetimes_are_bad_input(db_url: str, tmp_path: Path, when: str) -> None:
    line = orjson.dumps({**ENROL, "occurred_at": when})
    out = assert_refused(run(tmp_path, db_url, "import", "-", stdin=line + b"\n"), 2)
    assert "line 1: occurred_at" in out
    assert count(db_url) == 0


@pytest.mark.parametrize("option", ["--at", "--known-at"])
def test_calendar_edge_instants_on_the_command_line_are_bad_input(
        db_url: str, tmp_path: Path, option: str) -> None:
    out = assert_refused(run(tmp_path, db_url, "status", "P0007", option, "0001-01-01"), 2)
    assert option in out


@pytest.mark.parametrize("field", ["recorded_by", "idempotency_key"])
def test_a_nul_character_is_bad_input_on_both_databases(db_url: str, tmp_path: Path,
                                                        field: str) -> None:
    line = orjson.dumps({**ENROL, field: "nurse\x00lopez"})
    out = assert_refused(run(tmp_path, db_url, "import", "-", stdin=line + b"\n"), 2)
    assert f"line 1: {field}: contains a control character" in out
    assert count(db_url) == 0


def test_a_nul_character_in_by_is_bad_input(db_url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["visit", "P0007", "--at", "2015-03-10", "--by", "a\x00b"],
                                env={"CNO_TRACKER_DATABASE_URL": db_url})
    assert "--by" in assert_refused(result, 2)
    assert count(db_url) == 0


def test_import_dash_with_standard_input_closed_is_bad_input(db_url: str,
                                                             tmp_path: Path) -> None:
    result = subprocess.run(["sh", "-c", 'exec "$0" import - <&-', CLI], text=True,
                            capture_output=True, timeout=120, check=False,
                            env=clean_env(tmp_path, CNO_TRACKER_DATABASE_URL=db_url))
    assert "standard input is closed" in assert_refused(result, 2)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_database_is_configuration_and_masks_the_password(
        tmp_path: Path) -> None:
    url = f"postgresql://cno:hunter2secret@127.0.0.1:{_closed_port()}/cno"
    out = assert_refused(run(tmp_path, url, "status", "P0007"), 5)
    assert "hunter2secret" not in out and "cno:***@127.0.0.1" in out
    assert out.count("\n") == 1


def test_a_missing_postgresql_database_is_configuration(pg_url: str, tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(pg_url).set(database="cno_test_missing_i9", password="s3cr3tpass")
    out = assert_refused(run(tmp_path, url.render_as_string(hide_password=False),
                             "due"), 5)
    assert "cno_test_missing_i9" in out and "s3cr3tpass" not in out


def test_a_missing_sqlite_folder_is_configuration_and_creates_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "nowhere"
    out = assert_refused(run(tmp_path, f"sqlite:///{folder}/cno.db", "import", "-",
                             stdin=orjson.dumps(ENROL) + b"\n"), 5)
    assert f"its folder {folder} does not exist" in out
    assert not folder.exists()


def test_chart_into_a_missing_folder_is_bad_input(db_url: str, tmp_path: Path) -> None:
    assert run(tmp_path, db_url, "import", "-", stdin=orjson.dumps(ENROL) + b"\n"
               ).returncode == 0
    target = tmp_path / "missing" / "course.png"
    out = assert_refused(run(tmp_path, db_url, "chart", "P0007", "-o", str(target)), 2)
    assert str(target) in out


def test_cohort_report_into_a_missing_folder_is_bad_input(db_url: str, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "table4.md"
    assert str(target) in assert_refused(
        run(tmp_path, db_url, "cohort-report", "-o", str(target)), 2)


def test_generate_cohort_into_a_missing_folder_is_bad_input(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "cohort.jsonl"
    assert str(target) in assert_refused(
        run(tmp_path, "sqlite:///unused.db", "generate-cohort", "--patients", "2",
            "-o", str(target)), 2)


# ------------------------------------------------------------ the unexpected
@pytest.fixture
def broken_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug deep inside a command; its SQL carries a patient's data as a parameter."""
    def read_stream(self: EventStore, stream: str, **_: object) -> list[object]:
        raise StatementError("boom", "SELECT * FROM events WHERE stream = ?",
                             {"stream": "P0007-birth-2003-05-01"}, KeyError("x"))
    monkeypatch.setattr(EventStore, "read_stream", read_stream)


def test_an_unexpected_error_is_one_line_with_an_id_and_exit_70(
        broken_status: None, db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "state" / "errors.log"
    result = CliRunner().invoke(cli, ["status", "P0007"], env={
        "CNO_TRACKER_DATABASE_URL": db_url, "CNO_TRACKER_ERROR_LOG": str(log)})
    out = assert_refused(result, 70)
    [line] = out.strip().splitlines()
    assert line.startswith("error: unexpected StatementError (error id ")
    error_id = line.split("error id ")[1].split(")")[0]
    text = log.read_text()
    assert f"--- error {error_id}" in text and "Traceback" in text
    assert "P0007-birth-2003-05-01" not in text + out  # SQL parameters stay hidden
    assert (log.stat().st_mode & 0o777, log.parent.stat().st_mode & 0o777) == (0o600, 0o700)


def test_debug_also_prints_the_traceback(broken_status: None, db_url: str,
                                         tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--debug", "status", "P0007"], env={
        "CNO_TRACKER_DATABASE_URL": db_url,
        "CNO_TRACKER_ERROR_LOG": str(tmp_path / "errors.log")})
    assert result.exit_code == 70
    assert "Traceback" in result.output and "error id" in result.output
    assert "P0007-birth-2003-05-01" not in result.output


def test_losing_the_database_mid_command_is_configuration(
        monkeypatch: pytest.MonkeyPatch, db_url: str, tmp_path: Path) -> None:
    def read_stream(self: EventStore, stream: str, **_: object) -> list[object]:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    monkeypatch.setattr(EventStore, "read_stream", read_stream)
    result = CliRunner().invoke(cli, ["status", "P0007"], env={
        "CNO_TRACKER_DATABASE_URL": db_url,
        "CNO_TRACKER_ERROR_LOG": str(tmp_path / "errors.log")})
    assert "server closed the connection" in assert_refused(result, 5)


@pytest.mark.parametrize("args", [("status",), ("timeline",), ("explain", "remission_since"),
                                  ("chart", "-o", "c.png")])
@pytest.mark.parametrize("ref", ["P0007\n", " P0007", "P00\x0007"])
def test_a_reference_with_surrounding_or_control_characters_is_bad_input(
        db_url: str, args: tuple[str, ...], ref: str) -> None:
    command, *rest = args
    result = CliRunner().invoke(cli, [command, ref, *rest],
                                env={"CNO_TRACKER_DATABASE_URL": db_url})
    assert "is not a patient reference" in assert_refused(result, 2)


def test_a_well_formed_unknown_reference_is_still_not_found(db_url: str) -> None:
    result = CliRunner().invoke(cli, ["timeline", "P9999"],
                                env={"CNO_TRACKER_DATABASE_URL": db_url})
    assert_refused(result, 4)


@pytest.mark.parametrize("args", [
    ["alerts", "ack", "0000", "--by", "dr.x\x00"],
    ["enroll", "P0008", "--born", "2006-01-01", "--sex", "female", "--by", "a\x00b"],
    ["users", "disable", "lopez", "--by", "admin\n"],
    ["fhir", "import", "-", "--by", " fhir"],
    ["hl7", "import", "x.hl7", "--by", "lab\x07"],
], ids=["alerts-ack", "enroll", "users", "fhir", "hl7"])
def test_every_by_option_refuses_control_characters_and_spaces(args: list[str],
                                                                 db_url: str) -> None:
    """Every command that records who acted checks ``--by`` like ``recorded_by`` (exit 2,
    never a database error): before, ``alerts ack --by`` with NUL ended as exit 70 on
    PostgreSQL."""
    result = CliRunner().invoke(cli, args, input="", env={"CNO_TRACKER_DATABASE_URL": db_url})
    assert "--by" in assert_refused(result, 2)
