"""SQLite's WAL checkpoints run in a background thread (events.store.checkpoint): no
commit checkpoints, what was committed reaches the database file within moments, and the
thread ends with its engine."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from events.store import EventStore, checkpoint
from events.store.engine import make_engine
from tests.support.events import enrol, visit
from tests.support.processes import wait_until


@pytest.fixture
def sqlite_file(sqlite_template: Path, tmp_path: Path) -> Path:
    target = tmp_path / "cno.db"
    shutil.copy(sqlite_template, target)
    return target


def checkpointers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sqlite-checkpoint"]


def fill(store: EventStore, events: int) -> None:
    """``events`` single appends: one commit each, as the web and the CLI write."""
    store.append("P0001", 0, [enrol()])
    for version in range(1, events):
        store.append("P0001", version, [visit()])


def test_commits_never_checkpoint_and_the_thread_does(sqlite_file: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint, "INTERVAL", 3600.0)  # this engine's thread: asleep
    before = sqlite_file.stat().st_size
    engine = make_engine(f"sqlite:///{sqlite_file}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        fill(EventStore(engine), 600)  # ~2,500 log pages: SQLite's default checkpoints twice
        wal = Path(f"{sqlite_file}-wal").stat().st_size
        assert wal > 1000 * 4096, "the commits left every page in the log"
        assert sqlite_file.stat().st_size == before, "no commit copied pages into the file"
    finally:
        engine.dispose()
    monkeypatch.setattr(checkpoint, "INTERVAL", 0.05)
    engine = make_engine(f"sqlite:///{sqlite_file}")
    try:
        store = EventStore(engine)
        assert store.count() == 600  # a connection: this engine's thread starts
        wait_until(lambda: sqlite_file.stat().st_size > before, 10,
                   "the background checkpoint copied the log into the database file")
        store.append("P0001", 600, [visit()])
        assert store.count() == 601
    finally:
        engine.dispose()


def test_the_thread_ends_with_its_engine_and_a_new_connection_starts_another(
        sqlite_file: Path) -> None:
    engine = make_engine(f"sqlite:///{sqlite_file}")
    started = len(checkpointers())
    store = EventStore(engine)
    fill(store, 3)
    assert len(checkpointers()) == started + 1
    engine.dispose()
    wait_until(lambda: len(checkpointers()) == started, 5, "the thread ended on dispose")
    assert store.count() == 3  # the engine still works: its next connection restarts it
    assert len(checkpointers()) == started + 1
    engine.dispose()
    wait_until(lambda: len(checkpointers()) == started, 5, "the thread ended on dispose")


def test_memory_databases_have_no_checkpointer() -> None:
    started = len(checkpointers())
    engine = make_engine("sqlite://")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        assert len(checkpointers()) == started
    finally:
        engine.dispose()


def test_a_database_file_gone_is_not_made_again(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint, "INTERVAL", 0.01)
    gone = tmp_path / "moved-away.db"
    checkpointer = checkpoint.Checkpointer(str(gone))
    try:
        wait_until(lambda: checkpointer.thread.is_alive(), 5, "the thread started")
        threading.Event().wait(0.3)  # some 30 attempts to connect
        assert not gone.exists()
    finally:
        checkpointer.stop()
        checkpointer.thread.join(5)
    assert not checkpointer.thread.is_alive()
