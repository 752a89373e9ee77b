"""Imports decoded by worker processes (tracker.import_pool): the same outcome as decoding
in-process, line for line and problem for problem; workers forked only when it is safe,
never left behind (not even when the importer is killed with -9), and a worker that dies
costs nothing but time."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from events.store import EventStore
from events.store.engine import make_engine
from tests.conftest import create_pg_database, drop_pg_database
from tests.e2e.test_import_bounded import (
    FED_PATIENTS,
    _writing,
    cohort_file,
    start_fed_import,
)
from tests.support.events import line
from tests.support.processes import wait_until
from tracker import importing
from tracker.cli.main import cli
from tracker.clock import FixedClock
from tracker.errors import ImportRefused
from tracker.import_pool import MAX_WORKERS, default_workers
from tracker.importing import ImportReport, import_lines
from tracker.protocol import DEFAULT_PROTOCOL

NOW = datetime(2021, 1, 15, 12, 0, tzinfo=UTC)
VISIT = {"pain": True, "swelling": False, "functional_limitation": True}


FORKS = [0]
os.register_at_fork(before=lambda: FORKS.__setitem__(0, FORKS[0] + 1))  # forks from here


#: live children the test found when it began (servers a session fixture started)
_THERE_BEFORE: set[int] = set()


@pytest.fixture(autouse=True)
def _not_workers() -> None:
    _THERE_BEFORE.clear()
    _THERE_BEFORE.update(_live_children())


def children() -> set[int]:
    """This process's live child processes started since the test began (zombies are not
    alive): its workers, not another test's servers."""
    return _live_children() - _THERE_BEFORE


def _live_children() -> set[int]:
    return {pid for pid in _children_of(os.getpid()) if _alive(pid)}


def _children_of(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return set()
    return {int(p) for p in text.split()}


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importing, "BATCH_LINES", 40)


def cohort_lines(tmp_path: Path, patients: int = 25) -> list[bytes]:
    return cohort_file(tmp_path / "cohort.jsonl", patients).read_bytes().splitlines()


def run(db_url: str, lines: list[bytes], workers: int, *,
        on_line: Callable[[int], None] | None = None, **kwargs: Any) -> ImportReport:
    engine = make_engine(db_url)
    try:
        return import_lines(lines, EventStore(engine), clock=FixedClock(NOW),
                            protocol=DEFAULT_PROTOCOL, workers=workers, on_line=on_line,
                            **kwargs)
    finally:
        engine.dispose()


def stored(db_url: str) -> list[tuple[Any, ...]]:
    """The log without what differs by design between two imports (ids, positions, and
    the chain hashes that cover the ids)."""
    engine = make_engine(db_url)
    try:
        return [(e.stream, e.version, e.type, e.schema_version, e.occurred_at, e.occurred_on,
                 e.recorded_at, e.recorded_by, e.idempotency_key, e.payload)
                for e in EventStore(engine).read_all()]
    finally:
        engine.dispose()


@pytest.fixture
def other_url(db_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A second migrated, empty database of the same kind (the log is append-only: a
    comparison writes the same file into two databases)."""
    if db_url.startswith("sqlite"):
        target = tmp_path / "other.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
        yield f"sqlite:///{target}"
        return
    url = create_pg_database(template=request.getfixturevalue("pg_template"))
    try:
        yield url
    finally:
        drop_pg_database(url)


def refusal(db_url: str, lines: list[bytes], workers: int, **kwargs: Any) -> list[str]:
    with pytest.raises(ImportRefused) as caught:
        run(db_url, lines, workers, **kwargs)
    return [str(p) for p in caught.value.problems]


def watching(seen: set[int]) -> Callable[[int], None]:
    def on_line(number: int) -> None:
        if number % 20 == 0:
            seen.update(children())
    return on_line


@pytest.mark.usefixtures("small_batches")
def test_workers_write_exactly_what_in_process_decoding_writes(
        db_url: str, other_url: str, tmp_path: Path) -> None:
    lines = cohort_lines(tmp_path)
    assert len(lines) > 10 * importing.BATCH_LINES
    lines.insert(300, lines[299])  # a repeated line: a duplicate (the cohort has keys)
    alone = run(other_url, lines, 0)
    seen: set[int] = set()
    pooled = run(db_url, lines, 2, on_line=watching(seen))
    assert len(seen) == 2, "two workers decoded the batches"
    assert stored(db_url) == stored(other_url)
    assert (pooled.lines, pooled.written, pooled.duplicates, pooled.patients) == \
        (alone.lines, alone.written, alone.duplicates, alone.patients)
    assert alone.duplicates == 1 and alone.written == len(lines) - 1
    assert children() == set(), "the workers are gone once the import returns"
    engine = make_engine(db_url)
    try:
        assert EventStore(engine).verify() == []
    finally:
        engine.dispose()


@pytest.mark.usefixtures("small_batches")
def test_problems_in_many_batches_are_the_same_with_workers(db_url: str,
                                                            tmp_path: Path) -> None:
    lines = cohort_lines(tmp_path)
    first = orjson.loads(lines[0])
    patient = first["patient"]
    bad = {
        45: b'{"type": "VisitRecorded", "patient": ',  # malformed JSON
        130: line("VisitRecorded", patient, "2016-01-01", {**VISIT, "pain": "often"}),
        210: line("VisitRecorded", patient, "2031-01-01", VISIT),  # in the future
        333: line("VisitRecorded", "P9999", "2016-01-01", VISIT),  # not enrolled
        401: line("VisitRecorded", patient, "2016-01-01", VISIT, recorded_by=" x"),
        520: line("EntryVoided", patient, "2016-02-01",
                  {"target_event_id": "00000000-0000-4000-8000-000000000000",
                   "reason": "entered in error"}),
    }
    for at, raw in sorted(bad.items()):
        lines.insert(at, raw)
    expected = refusal(db_url, lines, 0)
    assert len(expected) == len(bad), expected
    seen: set[int] = set()
    assert refusal(db_url, lines, 2, on_line=watching(seen)) == expected
    assert seen, "the workers decoded the batches"
    for number in bad:
        assert any(p.startswith(f"line {number + 1}: ") for p in expected), (number, expected)
    assert stored(db_url) == [] and children() == set()
    # a line too long stops the reading: refused after every problem before it
    overlong = [*lines[:700], b'{"x": "' + b"y" * 5000 + b'"}', *lines[700:]]
    expected = refusal(db_url, overlong, 0, max_line_bytes=4096)
    assert expected[-1] == "line 701: line: longer than 4096 bytes; the import stops here"
    assert refusal(db_url, overlong, 2, max_line_bytes=4096) == expected


@pytest.mark.usefixtures("small_batches")
def test_a_worker_killed_mid_import_costs_nothing(db_url: str, other_url: str,
                                                  tmp_path: Path) -> None:
    lines = cohort_lines(tmp_path)
    run(other_url, lines, 0)
    killed: list[int] = []

    def kill_one(number: int) -> None:
        if number == 400 and not killed:
            victim = min(children())
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    report = run(db_url, lines, 2, on_line=kill_one)
    assert killed, "a worker was running and was killed"
    assert report.written == len(lines)
    assert stored(db_url) == stored(other_url)
    assert children() == set()


@pytest.mark.usefixtures("small_batches")
@pytest.mark.usefixtures("small_batches")
def test_a_worker_that_dies_between_two_batches_costs_nothing(
        db_url: str, other_url: str, tmp_path: Path) -> None:
    """Killed as the importer reads the batch it will send that worker next: the send
    finds the pipe closed (a flaky failure of the test above, once in a few runs)."""
    lines = cohort_lines(tmp_path)
    run(other_url, lines, 0)
    killed: list[int] = []

    def kill_both(number: int) -> None:  # every worker, one batch after the other
        if number % importing.BATCH_LINES == 0 and number > 200:
            for victim in children() - set(killed):
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

    report = run(db_url, lines, 2, on_line=kill_both)
    assert len(killed) == 2
    assert report.written == len(lines)
    assert stored(db_url) == stored(other_url)
    assert children() == set()


def test_no_worker_is_forked_beside_another_thread_nor_for_one_batch(
        db_url: str, tmp_path: Path) -> None:
    lines = cohort_lines(tmp_path, 10)
    # (dry runs: each checks the whole file and writes nothing, so the next starts empty)
    assert run(db_url, lines, 2, dry_run=True).written == len(lines)
    forks = FORKS[0]
    assert forks >= 2, "workers are forked for this file, when nothing prevents it"
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)  # as in the web application
    other.start()
    try:
        assert run(db_url, lines, 2, dry_run=True).written == len(lines)
    finally:
        stop.set()
        other.join()
    one_batch = lines[:importing.BATCH_LINES - 1]
    assert run(db_url, one_batch, 2, dry_run=True).written == len(one_batch)
    assert run(db_url, lines, 0, dry_run=True).written == len(lines)
    assert FORKS[0] == forks, "beside a thread, for one batch, with workers=0: in-process"


@pytest.mark.usefixtures("small_batches")
def test_when_no_process_can_be_forked_the_import_decodes_in_process(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = cohort_lines(tmp_path, 10)
    real_fork = os.fork
    calls = [0]

    def fork_once() -> int:  # the system gives one process, then no more (EAGAIN)
        calls[0] += 1
        if calls[0] > 1:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real_fork()

    monkeypatch.setattr(os, "fork", fork_once)
    calls[0] = 1  # none at all
    seen: set[int] = set()
    assert run(db_url, lines, 2, on_line=watching(seen), dry_run=True).written == len(lines)
    assert seen == set() and calls[0] == 2
    calls[0] = 0  # one, then no more
    assert run(db_url, lines, 3, on_line=watching(seen)).written == len(lines)
    assert len(seen) == 1 and calls[0] == 2, "one worker decoded beside the importer"
    assert children() == set()


def test_default_workers_follow_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    for cores, expected in ((1, 0), (2, 2), (3, 3), (16, MAX_WORKERS)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        assert default_workers() == expected


def test_the_cli_option_and_its_environment_variable(db_url: str, tmp_path: Path) -> None:
    path = cohort_file(tmp_path / "c.jsonl", 3)
    env = {"CNO_TRACKER_DATABASE_URL": db_url}
    refused = CliRunner().invoke(cli, ["import", str(path), "--workers", "9"], env=env)
    assert refused.exit_code == 2 and "'--workers'" in refused.output
    by_env = CliRunner().invoke(cli, ["import", str(path)],
                                env={**env, "CNO_TRACKER_IMPORT_WORKERS": "x"})
    assert by_env.exit_code == 2 and "'--workers'" in by_env.output
    ok = CliRunner().invoke(cli, ["import", str(path), "--workers", "0"], env=env)
    assert ok.exit_code == 0, ok.output


def _cli_children(pid: int) -> set[int]:
    return {c for c in _children_of(pid) if _alive(c)}


def test_kill_9_of_the_importer_takes_its_workers_with_it(db_url: str,
                                                          tmp_path: Path) -> None:
    big = cohort_file(tmp_path / "big.jsonl", FED_PATIENTS)
    env = {**os.environ, "CNO_TRACKER_DATABASE_URL": db_url,
           "CNO_TRACKER_IMPORT_WORKERS": "2"}
    proc, _feeder = start_fed_import(big, env)
    assert proc.stdin is not None
    workers: set[int] = set()
    try:
        wait_until(lambda: _writing(db_url, tmp_path) or proc.poll() is not None, 120,
                   "the import began writing")
        assert proc.poll() is None, "the import ended before it could be killed"
        workers = _cli_children(proc.pid)
        assert len(workers) == 2, workers
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
        wait_until(lambda: not any(_alive(w) for w in workers), 10,
                   "the workers died with the importer")
    finally:
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdin.close()
    engine = make_engine(db_url)
    try:
        assert EventStore(engine).count() == 0
    finally:
        engine.dispose()
