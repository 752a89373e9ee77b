"""Seals in the database: the append-only ``seals`` table, capturing the log's state,
checking a seal against the log, and checking that the append-only triggers are there.

The signing and the comparison are pure (``tracker.seals``); this module only reads and
appends. ``seals`` is append-only the way ``events`` is (triggers, both dialects)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    text,
    tuple_,
)

from events.store import EventStore
from events.store.tables import events as E
from events.store.tables import metadata
from events.store.types import UTCDateTime
from tracker.clock import Clock
from tracker.seals import LogState, Seal, SealKeys, differences, parse_seal, sign, signature_problem

_CHUNK = 500

seals = Table(
    "seals",
    metadata,
    Column("seal_id", Integer, primary_key=True, autoincrement=True),
    Column("sealed_at", UTCDateTime(), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("event_count", BigInteger, nullable=False),
    Column("last_position", BigInteger, nullable=False),
    Column("document", Text, nullable=False),
    sqlite_autoincrement=True,
)

SQLITE_TRIGGERS = [
    """CREATE TRIGGER seals_no_update BEFORE UPDATE ON seals
       BEGIN SELECT RAISE(ABORT, 'seals are append-only: UPDATE refused'); END""",
    """CREATE TRIGGER seals_no_delete BEFORE DELETE ON seals
       BEGIN SELECT RAISE(ABORT, 'seals are append-only: DELETE refused'); END""",
]
POSTGRES_TRIGGERS = [
    """CREATE OR REPLACE FUNCTION seals_append_only() RETURNS trigger
       LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION 'seals are append-only: % refused', TG_OP
           USING ERRCODE = 'restrict_violation';
       END $$""",
    """CREATE TRIGGER seals_no_update BEFORE UPDATE OR DELETE ON seals
       FOR EACH ROW EXECUTE FUNCTION seals_append_only()""",
    """CREATE TRIGGER seals_no_truncate BEFORE TRUNCATE ON seals
       FOR EACH STATEMENT EXECUTE FUNCTION seals_append_only()""",
]
DROP_TRIGGERS = {
    "sqlite": ["DROP TRIGGER IF EXISTS seals_no_update", "DROP TRIGGER IF EXISTS seals_no_delete"],
    "postgresql": ["DROP TRIGGER IF EXISTS seals_no_truncate ON seals",
                   "DROP TRIGGER IF EXISTS seals_no_update ON seals",
                   "DROP FUNCTION IF EXISTS seals_append_only()"],
}

#: the protections ``verify`` insists on: (table, trigger) → what it refuses
PROTECTIONS = {
    "sqlite": {("events", "events_no_update"): "UPDATE of events",
               ("events", "events_no_delete"): "DELETE of events",
               ("seals", "seals_no_update"): "UPDATE of seals",
               ("seals", "seals_no_delete"): "DELETE of seals"},
    "postgresql": {("events", "events_no_update"): "UPDATE and DELETE of events",
                   ("events", "events_no_truncate"): "TRUNCATE of events",
                   ("seals", "seals_no_update"): "UPDATE and DELETE of seals",
                   ("seals", "seals_no_truncate"): "TRUNCATE of seals"},
}


def capture(conn: Connection) -> LogState:
    """The log's state in the connection's one snapshot."""
    last = select(E.c.stream, func.max(E.c.version).label("v")).group_by(E.c.stream).subquery()
    rows = conn.execute(select(E.c.stream, E.c.version, E.c.hash).join(
        last, (E.c.stream == last.c.stream) & (E.c.version == last.c.v))).all()
    count, position = conn.execute(select(func.count(), func.max(E.c.position))).one()
    return LogState({r.stream: (r.version, r.hash) for r in rows}, int(count), int(position or 0))


def make_seal(store: EventStore, keys: SealKeys, clock: Clock) -> tuple[int, Seal]:
    """Sign the log's current state and append the seal; (its id, the seal)."""
    engine = store.engine
    if store.recorder.concurrent_writers:  # a snapshot that other writers cannot move
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    with engine.begin() as conn:
        state = capture(conn)
        seal = sign(state, keys, clock.now().astimezone(UTC))
        seal_id = conn.execute(insert(seals).values(
            sealed_at=seal.sealed_at, key_id=seal.key_id, event_count=state.event_count,
            last_position=state.last_position, document=seal.to_json().decode(),
        ).returning(seals.c.seal_id)).scalar_one()
    return int(seal_id), seal


class LogNoLongerSealed(Exception):
    """The log lost or changed events since the latest seal: sealing now would bless it."""

    def __init__(self, seal_id: int, problems: list[str]) -> None:
        self.seal_id, self.problems = seal_id, problems
        super().__init__(f"the log no longer matches seal #{seal_id}: " + "; ".join(problems))


def seal_log(store: EventStore, keys: SealKeys, clock: Clock) -> tuple[int, Seal]:
    """Check the log against the latest seal, then seal it. A rewrite since the latest
    seal raises :class:`LogNoLongerSealed` instead of being signed by the next seal (an
    unreadable latest seal raises :class:`tracker.seals.SealFormatError`)."""
    found = latest_seal(store)
    if found is not None:
        problems = check_seal(store, found[1], keys).problems
        if problems:
            raise LogNoLongerSealed(found[0], problems)
    return make_seal(store, keys, clock)


def latest_seal(store: EventStore) -> tuple[int, Seal] | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(seals.c.seal_id, seals.c.document)
                           .order_by(seals.c.seal_id.desc()).limit(1)).first()
    return None if row is None else (int(row.seal_id), parse_seal(row.document))


@dataclass
class SealCheck:
    """The outcome of checking one seal: what differs, and what could not be checked."""

    problems: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)


def check_seal(store: EventStore, seal: Seal, keys: SealKeys) -> SealCheck:
    result = SealCheck()
    checked, problem = signature_problem(seal, keys)
    if problem:
        result.problems.append(problem)
    elif not checked:
        result.unchecked.append(
            f"its signature (key {seal.key_id!r} is not configured: set CNO_TRACKER_SEAL_KEY "
            "or CNO_TRACKER_SEAL_KEYS), so the seal itself may have been forged")
    sealed = seal.state
    wanted = [(s, v) for s, (v, _h) in sealed.heads.items()]
    found: dict[str, tuple[int, str]] = {}
    with store.engine.connect() as conn:
        for i in range(0, len(wanted), _CHUNK):
            part = wanted[i:i + _CHUNK]
            for r in conn.execute(select(E.c.stream, E.c.version, E.c.hash)
                                  .where(tuple_(E.c.stream, E.c.version).in_(part))):
                found[r.stream] = (r.version, r.hash)
        count = int(conn.execute(select(func.count()).select_from(E)).scalar_one())
        present = conn.execute(select(E.c.position)
                               .where(E.c.position == sealed.last_position)).first() is not None
    result.problems += differences(sealed, found, count, present)
    return result


def missing_protections(store: EventStore) -> list[str]:
    """Each append-only trigger that is absent, disabled or no longer refuses anything."""
    dialect = store.engine.dialect.name
    expected = PROTECTIONS[dialect]
    with store.engine.connect() as conn:
        present = _sqlite_triggers(conn) if dialect == "sqlite" else _postgres_triggers(conn)
    return [f"trigger {name} on {table} is {present.get((table, name), 'missing')}: "
            f"nothing refuses {what}"
            for (table, name), what in expected.items()
            if present.get((table, name)) != "ok"]


def _sqlite_triggers(conn: Connection) -> dict[tuple[str, str], str]:
    rows = conn.execute(text(
        "SELECT tbl_name, name, sql FROM sqlite_master WHERE type = 'trigger'")).all()
    return {(r.tbl_name, r.name): "ok" if "RAISE(ABORT" in (r.sql or "").upper()
            else "altered (it no longer raises)" for r in rows}


def _postgres_triggers(conn: Connection) -> dict[tuple[str, str], str]:
    rows = conn.execute(text("""
        SELECT c.relname AS tbl, t.tgname AS name, t.tgenabled AS enabled,
               p.prosrc AS body
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
          JOIN pg_proc p ON p.oid = t.tgfoid
         WHERE NOT t.tgisinternal AND c.relname IN ('events', 'seals')
           AND c.relnamespace = to_regnamespace(current_schema())""")).all()
    out: dict[tuple[str, str], str] = {}
    for r in rows:
        if r.enabled == "D":
            out[(r.tbl, r.name)] = "disabled"
        elif "RAISE EXCEPTION" not in (r.body or "").upper():
            out[(r.tbl, r.name)] = "altered (its function no longer raises)"
        else:
            out[(r.tbl, r.name)] = "ok"
    return out


def scheduled_seal(store: EventStore, clock: Clock) -> tuple[Callable[[], Any], float] | None:
    """The worker's seal job and its interval in minutes, or None without a signing key.

    The job seals only when the log moved since the latest seal (an idle night adds no
    seals), and never over a log that no longer matches it (:func:`seal_log`)."""
    from tracker.settings import load_settings

    settings = load_settings()
    keys = settings.seal_keys()
    if keys.signing_id is None:
        return None

    def job() -> int | None:
        previous = latest_seal(store)
        if previous is not None:
            with store.engine.connect() as conn:
                count, position = conn.execute(
                    select(func.count(), func.max(E.c.position))).one()
            state = previous[1].state
            if (int(count), int(position or 0)) == (state.event_count, state.last_position):
                return None
        return seal_log(store, keys, clock)[0]

    return job, settings.seal_interval_minutes
