"""SQLite's WAL checkpoints, taken off the committing thread.

With ``journal_mode=WAL`` and ``synchronous=NORMAL`` a commit appends its pages to the
write-ahead log without an fsync; the log is synced, copied into the database file and
the file synced at a *checkpoint*. SQLite's default runs one inside the commit that takes
the log past 1,000 pages: that commit waits for the copy and both fsyncs. Measured on the
single-append benchmark, those checkpoints were a third of an append's time, and the
reason a schema with more indexes (more pages a commit) fell behind one with fewer.

Here every connection an engine opens has ``wal_autocheckpoint=0``, and a
:class:`Checkpointer` thread per engine (and process) runs ``PRAGMA
wal_checkpoint(PASSIVE)`` every :data:`INTERVAL` seconds on its own connection. A passive
checkpoint never blocks writers or readers; one with nothing to copy costs a few
microseconds and no fsync.

Durability is not weakened, it is bounded by time instead of by log size: what was
committed is synced within about :data:`INTERVAL` seconds, where SQLite's default left a
quiet ward's last commits unsynced until 1,000 more pages had been written (a power cut
could lose them; an application crash never loses a commit in either case).

The thread stops when its engine is disposed (a later connection starts another) or
garbage-collected, and does not survive a fork (a child's engine starts its own). It only
ever calls SQLite, so a process forked beside it (the import's decoding workers, which
never call SQLite) inherits no lock it needs: ``FORK_SAFE`` marks it for
``tracker.import_pool``."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

#: seconds between two checkpoints
INTERVAL = 0.1
#: the attribute that marks a thread a fork may leave behind (see the module's notes)
FORK_SAFE = "cno_fork_safe"


class Checkpointer:
    """The background checkpoints of one SQLite database file for one engine."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = os.getpid()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sqlite-checkpoint",
                                       daemon=True)
        setattr(self.thread, FORK_SAFE, True)
        self.thread.start()

    @property
    def running(self) -> bool:
        return self.pid == os.getpid() and self.thread.is_alive() and not self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(INTERVAL):
                try:
                    if conn is None:  # read-write, never create: a file moved or
                        conn = sqlite3.connect(  # deleted meanwhile is not made again
                            f"{Path(self.path).absolute().as_uri()}?mode=rw", uri=True,
                            isolation_level=None, check_same_thread=False)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    # the file is gone or locked past the busy timeout: try again later
                    if conn is not None:
                        with contextlib.suppress(sqlite3.Error):
                            conn.close()
                    conn = None
        finally:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()


#: each engine's checkpointer (an engine that is gone takes its entry with it)
_RUNNING: weakref.WeakKeyDictionary[Engine, Checkpointer] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def checkpoint_in_background(engine: Engine, path: str) -> None:
    """Run ``engine``'s checkpoints of ``path`` in a :class:`Checkpointer` (call on each
    new connection, after setting ``wal_autocheckpoint=0`` on it)."""
    with _LOCK:
        current = _RUNNING.get(engine)
        if current is not None and current.running:
            return
        checkpointer = Checkpointer(path)
        _RUNNING[engine] = checkpointer
    weakref.finalize(engine, checkpointer.stop)


def watch_disposal(engine: Engine) -> None:
    """Stop ``engine``'s checkpointer when the engine is disposed."""

    @event.listens_for(engine, "engine_disposed")
    def _disposed(disposed: Any) -> None:
        with _LOCK:
            checkpointer = _RUNNING.pop(disposed, None)
        if checkpointer is not None:
            checkpointer.stop()
