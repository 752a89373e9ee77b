"""Proof that a reader following the global order never skips or repeats an event, with
several writer processes whose transactions commit out of order (PostgreSQL)."""

from __future__ import annotations

import multiprocessing as mp
import random
import time

import pytest
from sqlalchemy import select

from events.store import START, Checkpoint, EventStore
from events.store.engine import make_engine
from events.store.tables import events as T
from tests.support.events import enrol, visit

pytestmark = pytest.mark.slow

WRITERS = 4
APPENDS_PER_WRITER = 60


def _writer(url: str, writer: int, seed: int) -> None:
    rng = random.Random(seed)
    store = EventStore(make_engine(url))
    for i in range(APPENDS_PER_WRITER):
        stream = f"W{writer}-{i % 5}"
        version = store.stream_version(stream)
        with store.transaction() as w:
            w.append(stream, version, [enrol() if version == 0 else visit()])
            # hold the transaction open after its position was taken, so that later
            # positions from other writers commit first
            time.sleep(rng.choice([0, 0, 0.001, 0.004, 0.012]))
    store.engine.dispose()


def test_tailing_reader_never_skips_or_repeats(pg_url: str) -> None:
    store = EventStore(make_engine(pg_url))
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(pg_url, n, n)) for n in range(WRITERS)]
    for p in procs:
        p.start()

    seen: list[str] = []
    checkpoint = START
    naive_seen: set[str] = set()
    naive_last = 0  # a reader that follows the bare position, to show the hazard is real
    naive_skipped = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for e in store.read_batch(checkpoint, 50):
            seen.append(e.event_id)
            checkpoint = Checkpoint(e.tx, e.position)
        with store.engine.connect() as conn:
            rows = conn.execute(select(T.c.position, T.c.event_id)
                                .where(T.c.position > naive_last).order_by(T.c.position)).all()
        for position, event_id in rows:
            naive_seen.add(event_id)
            naive_last = position
        if all(not p.is_alive() for p in procs) and not store.read_batch(checkpoint, 1):
            break
    for p in procs:
        p.join(10)
        assert p.exitcode == 0

    every = {e.event_id for e in store.read_all()}
    assert len(every) == WRITERS * APPENDS_PER_WRITER
    assert len(seen) == len(set(seen)), "the reader saw an event twice"
    assert set(seen) == every, f"the reader skipped {len(every - set(seen))} event(s)"
    naive_skipped = len(every - naive_seen)
    # the scenario really produced out-of-order commits: a bare-position reader missed some
    assert naive_skipped > 0


def test_a_transaction_open_in_another_database_does_not_stall_readers(pg_url: str) -> None:
    """pg_snapshot_xmin is server-wide; the read bound leaves other databases out."""
    from sqlalchemy import create_engine, text

    from tests.conftest import PG_ADMIN_URL

    store = EventStore(make_engine(pg_url))
    other = create_engine(PG_ADMIN_URL)
    with other.connect() as conn:
        conn.execute(text("CREATE TEMP TABLE hold (i int)"))
        conn.execute(text("INSERT INTO hold VALUES (1)"))  # an xid, held open
        store.append("P0001", 0, [enrol(), visit()])
        assert len(store.read_batch(START, 10)) == 2
        # and a transaction of our own database still holds readers back (never skips)
        with store.engine.connect() as mine:
            mine.execute(text("SELECT pg_current_xact_id()"))
            store.append("P0002", 0, [enrol()])
            assert len(store.read_batch(START, 10)) == 2
            mine.rollback()
        assert len(store.read_batch(START, 10)) == 3
        conn.rollback()
    other.dispose()
    store.engine.dispose()
