"""A bulk write refreshes PostgreSQL's statistics as it commits, so a scan of a freshly
loaded log reads by index: before, the planner of a never-analysed table estimated fewer
rows than a page, sorted everything after the checkpoint for every page, and a 50k-event
``read_all`` cost 43 ms a page instead of 1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select, text

from events.store import START, EventStore, sql
from events.store.engine import make_engine
from tests.support.events import enrol, visit


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[EventStore]:
    engine = make_engine(pg_url)
    yield EventStore(engine)
    engine.dispose()


def _analysed(store: EventStore) -> bool:
    with store.engine.connect() as conn:
        return conn.execute(text(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
            "WHERE relname = 'events'")).scalar_one()


def _analyses(store: EventStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT analyze_count FROM pg_stat_user_tables "
            "WHERE relname = 'events'")).scalar_one())


def _write(store: EventStore, stream: str, visits: int) -> None:
    with store.transaction() as w:
        w.append(stream, 0, [enrol(), *(visit(pain=i % 2 == 0) for i in range(visits))],
                 returning=False)


@pytest.mark.parametrize(("events", "analysed"), [(2, False), (3, True), (4, True)])
def test_a_transaction_of_the_threshold_or_more_analyses(
        pg_store: EventStore, monkeypatch: pytest.MonkeyPatch, events: int,
        analysed: bool) -> None:
    monkeypatch.setattr(sql, "ANALYZE_AFTER", 3)
    _write(pg_store, "P0001", events - 1)
    assert _analysed(pg_store) is analysed


@pytest.mark.parametrize(("events", "analysed"), [(9, False), (10, True), (11, True)])
def test_a_bulk_write_into_a_large_table_analyses_from_a_tenth_of_its_rows(
        pg_store: EventStore, monkeypatch: pytest.MonkeyPatch, events: int,
        analysed: bool) -> None:
    """At millions of events an ANALYZE after every import reads a sample of pages that
    are not in shared buffers, while the statistics it refreshes were still close:
    below a tenth of the rows the planner counted, autovacuum is left to catch up."""
    monkeypatch.setattr(sql, "ANALYZE_AFTER", 3)
    _write(pg_store, "P0001", 99)  # 100 rows, analysed: the planner counts 100
    assert _analyses(pg_store) == 1
    _write(pg_store, "P0002", events - 1)
    assert _analyses(pg_store) == 1 + analysed


def test_an_explicit_analyze_always_runs(pg_store: EventStore,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql, "ANALYZE_AFTER", 3)
    _write(pg_store, "P0001", 99)
    pg_store.analyze()
    assert _analyses(pg_store) == 2


def test_only_the_planned_on_columns_are_sampled(pg_store: EventStore,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``data`` is wide and never filtered on: sampling it cost three quarters of the
    ANALYZE; the row count is refreshed all the same."""
    monkeypatch.setattr(sql, "ANALYZE_AFTER", 3)
    _write(pg_store, "P0001", 4)
    with pg_store.engine.connect() as conn:
        sampled = set(conn.execute(text(
            "SELECT attname FROM pg_stats WHERE tablename = 'events'")).scalars())
        rows = conn.execute(text(
            "SELECT reltuples FROM pg_class WHERE relname = 'events'")).scalar_one()
    assert sampled == {"tx", "position", "stream", "type", "recorded_at"}
    assert rows == 5


def test_a_rolled_back_transaction_does_not(pg_store: EventStore,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql, "ANALYZE_AFTER", 1)
    with pytest.raises(RuntimeError), pg_store.transaction() as w:
        w.append("P0001", 0, [enrol()])
        raise RuntimeError("given up")
    assert not _analysed(pg_store) and pg_store.count() == 0


def test_a_freshly_loaded_log_is_paged_by_index_not_sorted(pg_store: EventStore) -> None:
    with pg_store.transaction() as w:  # one transaction at the real threshold
        for n in range(sql.ANALYZE_AFTER // 500):
            w.append(f"P{n:04d}", 0, [enrol(), *(visit() for _ in range(499))],
                     returning=False)
    assert _analysed(pg_store)
    page = pg_store.recorder.readable(select(*sql._COLUMNS), (START.tx, START.position))
    compiled = page.limit(2000).compile(dialect=pg_store.engine.dialect,
                                        compile_kwargs={"literal_binds": True})
    with pg_store.engine.connect() as conn:
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {compiled}"))
    assert "Index Scan using ix_events_tx_position" in plan, plan
    assert "Sort" not in plan, plan
    assert sum(1 for _ in pg_store.read_all()) == sql.ANALYZE_AFTER
