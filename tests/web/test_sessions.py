"""Server-side sessions: opaque tokens, idle and absolute expiry at their exact bounds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from events.store.engine import make_engine
from tracker.clock import FixedClock
from web.sessions import TOUCH_SECONDS, Sessions, token_hash
from web.tables import web_sessions

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def sessions(db_url: str) -> Iterator[tuple[Sessions, FixedClock]]:
    engine = make_engine(db_url)
    clock = FixedClock(T0)
    yield Sessions(engine, clock, idle=timedelta(minutes=15), absolute=timedelta(hours=12)), clock
    engine.dispose()


def test_the_cookie_is_opaque_and_only_its_hash_is_stored(
        sessions: tuple[Sessions, FixedClock]) -> None:
    store, _ = sessions
    token, session = store.start("nurse.a")
    assert len(token) >= 40 and "nurse" not in token
    with store.engine.connect() as conn:
        stored = conn.execute(select(web_sessions.c.token_hash)).scalars().all()
    assert stored == [token_hash(token)] and token not in stored
    loaded = store.load(token)
    assert loaded is not None and loaded.username == "nurse.a"
    assert loaded.csrf_token == session.csrf_token
    assert store.load(token + "x") is None


def test_idle_expiry_is_measured_from_the_last_request(
        sessions: tuple[Sessions, FixedClock]) -> None:
    store, clock = sessions
    token, _ = store.start("nurse.a")
    clock.advance(timedelta(minutes=15) - timedelta(seconds=1))
    assert store.load(token) is not None  # 14:59 idle: alive, and touched
    clock.advance(timedelta(minutes=15) - timedelta(seconds=1))
    assert store.load(token) is not None  # 14:59 since that request: alive
    clock.advance(timedelta(minutes=15))
    assert store.load(token) is None  # exactly 15:00 idle: expired
    clock.advance(-timedelta(minutes=10))
    assert store.load(token) is None  # and it stays ended


def test_a_request_within_the_touch_interval_does_not_write(
        sessions: tuple[Sessions, FixedClock]) -> None:
    store, clock = sessions
    token, _ = store.start("nurse.a")
    clock.advance(timedelta(seconds=TOUCH_SECONDS - 1))
    store.load(token)
    with store.engine.connect() as conn:
        seen = conn.execute(select(web_sessions.c.last_seen_at)).scalar_one()
    assert seen.astimezone(UTC) == T0


def test_absolute_expiry_even_when_busy(sessions: tuple[Sessions, FixedClock]) -> None:
    store, clock = sessions
    token, _ = store.start("nurse.a")
    for _ in range(12 * 6 - 1):  # a request every 10 minutes for 11 h 50 min
        clock.advance(timedelta(minutes=10))
        assert store.load(token) is not None
    clock.advance(timedelta(minutes=10) - timedelta(seconds=1))
    assert store.load(token) is not None  # 11:59:59 old
    clock.advance(timedelta(seconds=1))
    assert store.load(token) is None  # exactly 12 h old


def test_logout_and_end_all(sessions: tuple[Sessions, FixedClock]) -> None:
    store, _ = sessions
    one, _ = store.start("nurse.a")
    two, _ = store.start("nurse.a")
    other, _ = store.start("dr.b")
    store.end(one)
    assert store.load(one) is None and store.load(two) is not None
    assert store.end_all("nurse.a") == 1
    assert store.load(two) is None and store.load(other) is not None
