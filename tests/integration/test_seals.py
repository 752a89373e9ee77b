"""Seals against a database superuser (issue 9 item 5), on SQLite and PostgreSQL.

Each attack is done the way an owner of the database would: the append-only triggers
bypassed (``session_replication_role = replica`` on PostgreSQL; on SQLite dropped and
put back afterwards, so only the seal can tell), hashes recomputed with the project's
own function. ``verify`` must exit 6 and name what differs."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Connection, select, text, update
from sqlalchemy.exc import DBAPIError

from events.envelope import GENESIS, chain_hash, content_hash
from events.store import EventStore
from events.store.engine import make_engine
from events.store.tables import SQLITE_TRIGGERS
from events.store.tables import events as E
from tests.support.events import enrol, visit
from tracker.cli.main import cli
from tracker.clock import FixedClock
from tracker.sealing import SQLITE_TRIGGERS as SEAL_TRIGGERS
from tracker.sealing import LogNoLongerSealed, latest_seal, make_seal, scheduled_seal, seals
from tracker.seals import SealKeys

K1 = "k1:0123456789abcdef-first"
K2 = "k2:fedcba9876543210-second"


class Cli:
    def __init__(self, db_url: str, tmp_path: Path) -> None:
        self.env = {"CNO_TRACKER_DATABASE_URL": db_url, "CNO_TRACKER_SEAL_KEY": K1,
                    "CNO_TRACKER_ERROR_LOG": str(tmp_path / "errors.log")}

    def __call__(self, *args: str, code: int = 0, **env: str | None) -> Result:
        result = CliRunner().invoke(cli, list(args), env={**self.env, **env})
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        return result


@pytest.fixture
def sealed(store: EventStore, db_url: str, tmp_path: Path) -> Cli:
    store.append("P0001", 0, [enrol(), visit(), visit(pain=False)])
    store.append("P0002", 0, [enrol(), visit()])
    run = Cli(db_url, tmp_path)
    assert "sealed #1: 5 event(s) in 2 stream(s)" in run("seal").output
    return run


def superuser(store: EventStore, *statements: str | tuple[str, dict[str, object]]) -> None:
    """Run SQL past the append-only triggers, leaving them in place afterwards."""
    def run(conn: Connection, statement: str | tuple[str, dict[str, object]]) -> None:
        sql, params = (statement, {}) if isinstance(statement, str) else statement
        conn.execute(text(sql), params)

    with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            for statement in statements:
                run(conn, statement)
        else:
            conn.execute(text("DROP TRIGGER events_no_update"))
            conn.execute(text("DROP TRIGGER events_no_delete"))
            conn.execute(text("DROP TRIGGER seals_no_update"))
            conn.execute(text("DROP TRIGGER seals_no_delete"))
            for statement in statements:
                run(conn, statement)
            for sql in (*SQLITE_TRIGGERS, *SEAL_TRIGGERS):
                conn.execute(text(sql))


def test_an_untouched_log_verifies_against_its_seal(sealed: Cli) -> None:
    out = sealed("verify").output
    assert "every hash chain intact" in out and "the seal matches" in out


def test_events_appended_after_the_seal_are_not_a_difference(sealed: Cli,
                                                             store: EventStore) -> None:
    store.append("P0001", 3, [visit()])
    store.append("P0003", 0, [enrol()])
    assert "the seal matches" in sealed("verify").output


def test_a_deleted_tail_event_is_found(sealed: Cli, store: EventStore) -> None:
    superuser(store, "DELETE FROM events WHERE stream = 'P0001' AND version = 3")
    assert store.verify() == []  # the chain alone cannot tell: what is left is consistent
    out = sealed("verify", code=6).output
    assert "stream 'P0001': event v3 (its head when sealed) is missing" in out
    assert "4 event(s), fewer than the 5 sealed" in out


def test_a_deleted_stream_is_found(sealed: Cli, store: EventStore) -> None:
    superuser(store, "DELETE FROM events WHERE stream = 'P0002'")
    assert store.verify() == []
    assert "stream 'P0002': event v2 (its head when sealed) is missing" in sealed(
        "verify", code=6).output


def rewrite_with_recomputed_hashes(store: EventStore, stream: str) -> None:
    """Turn the visit's pain off and recompute the stream's chain with our own function."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(E).where(E.c.stream == stream).order_by(E.c.version)).all()
    statements: list[tuple[int, str, str, str]] = []
    prev = GENESIS
    for r in rows:
        data = r.data.replace('"pain":true', '"pain":false') if r.version == 2 else r.data
        body = data.encode()
        digest = chain_hash(prev, event_id=r.event_id, stream=r.stream, version=r.version,
                            event_type=r.type, schema_version=r.schema_version,
                            occurred_at=r.occurred_at, occurred_on=r.occurred_on,
                            recorded_at=r.recorded_at, recorded_by=r.recorded_by,
                            idempotency_key=r.idempotency_key, data_json=body)
        statements.append((r.position, data, content_hash(r.type, r.stream, r.occurred_at, body),
                           digest))
        prev = digest
    with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            conn.execute(text("DROP TRIGGER events_no_update"))
        for position, data, c_hash, digest in statements:
            conn.execute(update(E).where(E.c.position == position).values(
                data=data, content_hash=c_hash, hash=digest))
        if store.dialect != "postgresql":
            conn.execute(text(SQLITE_TRIGGERS[0]))


def test_a_consistent_rewrite_is_found(sealed: Cli, store: EventStore) -> None:
    rewrite_with_recomputed_hashes(store, "P0001")
    assert store.read_stream("P0001")[1].data.pain is False
    assert store.verify() == []  # every hash recomputed: the chain is consistent
    out = sealed("verify", code=6).output
    assert "stream 'P0001': v3 has hash" in out and "history was rewritten" in out
    assert "P0002" not in out


def test_a_new_seal_is_refused_over_a_log_that_no_longer_matches(sealed: Cli,
                                                                 store: EventStore) -> None:
    rewrite_with_recomputed_hashes(store, "P0001")
    out = sealed("seal", code=6).output
    assert "not sealing over it" in out
    assert latest_seal(store) is not None and latest_seal(store)[0] == 1  # type: ignore[index]


def test_the_worker_job_does_not_seal_over_a_rewrite_either(
        sealed: Cli, store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    monkeypatch.setenv("CNO_TRACKER_SEAL_KEY", K1)
    job = scheduled_seal(store, FixedClock(datetime(2026, 12, 1, tzinfo=UTC)))
    assert job is not None
    superuser(store, "DELETE FROM events WHERE stream = 'P0002'")
    store.append("P0003", 0, [enrol()])  # the log moved: the job wants to seal
    with pytest.raises(LogNoLongerSealed, match="P0002"):
        job[0]()
    assert latest_seal(store)[0] == 1  # type: ignore[index]


def test_a_forged_seal_is_found(sealed: Cli, store: EventStore) -> None:
    """The superuser deletes a stream and edits the stored seal to match, without the key."""
    found = latest_seal(store)
    assert found is not None
    doc = orjson.loads(found[1].to_json())
    del doc["streams"]["P0002"]
    doc["event_count"] = 3
    superuser(store, "DELETE FROM events WHERE stream = 'P0002'",
              ("UPDATE seals SET document = :d, event_count = 3",
               {"d": orjson.dumps(doc).decode()}))
    assert "signature does not match" in sealed("verify", code=6).output


@pytest.mark.parametrize("dropped", ["events_no_update", "events_no_delete_or_truncate",
                                     "seals_no_update"])
def test_a_dropped_trigger_is_named(sealed: Cli, store: EventStore, dropped: str) -> None:
    name = dropped
    if dropped == "events_no_delete_or_truncate":
        name = "events_no_truncate" if store.dialect == "postgresql" else "events_no_delete"
    table = name.split("_")[0]
    with store.engine.begin() as conn:
        conn.execute(text(f"DROP TRIGGER {name} ON {table}" if (store.dialect == "postgresql")
                          else f"DROP TRIGGER {name}"))
    out = sealed("verify", code=6).output
    assert f"UNPROTECTED trigger {name} on {table} is missing" in out


def test_a_disabled_trigger_is_named_on_postgres(pg_url: str, tmp_path: Path) -> None:
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE events DISABLE TRIGGER events_no_update"))
    engine.dispose()
    out = Cli(pg_url, tmp_path)("verify", code=6).output
    assert "UNPROTECTED trigger events_no_update on events is disabled" in out


def test_a_trigger_replaced_by_a_harmless_one_is_named(sealed: Cli, store: EventStore) -> None:
    with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            conn.execute(text("CREATE OR REPLACE FUNCTION events_append_only() RETURNS trigger "
                              "LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$"))
        else:
            conn.execute(text("DROP TRIGGER events_no_delete"))
            conn.execute(text("CREATE TRIGGER events_no_delete BEFORE DELETE ON events "
                              "BEGIN SELECT 1; END"))
    out = sealed("verify", code=6).output
    assert "no longer raises" in out


def test_the_seals_table_is_append_only(sealed: Cli, store: EventStore) -> None:
    for sql in ("UPDATE seals SET event_count = 0", "DELETE FROM seals"):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(sql))
    assert latest_seal(store) is not None


def test_an_external_seal_outlives_the_seals_table(store: EventStore, db_url: str,
                                                   tmp_path: Path) -> None:
    store.append("P0001", 0, [enrol(), visit()])
    run = Cli(db_url, tmp_path)
    external = tmp_path / "worm" / "seal-1.json"
    external.parent.mkdir()
    run("seal", "-o", str(external))
    assert orjson.loads(external.read_bytes())["streams"]["P0001"][0] == 2
    superuser(store, "DELETE FROM events WHERE stream = 'P0001' AND version = 2",
              "DELETE FROM seals")
    assert "there is no seal yet" in run("verify").output  # what the database alone says
    out = run("verify", "--seal", str(external), code=6).output
    assert "event v2 (its head when sealed) is missing" in out
    assert "exists" in run("seal", "-o", str(external), code=2).output  # never overwritten


def test_a_seal_file_that_is_not_a_seal_is_bad_input(store: EventStore, db_url: str,
                                                     tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"hello": 1}')
    assert "not a seal" in Cli(db_url, tmp_path)("verify", "--seal", str(bogus), code=2).output


def test_without_the_key_verify_says_what_it_could_not_check(sealed: Cli,
                                                             store: EventStore) -> None:
    out = sealed("verify", CNO_TRACKER_SEAL_KEY=None).output
    assert "not checked:" in out and "key 'k1' is not configured" in out
    superuser(store, "DELETE FROM events WHERE stream = 'P0002'")  # still found, unsigned
    assert "P0002" in sealed("verify", code=6, CNO_TRACKER_SEAL_KEY=None).output


def test_seal_without_a_key_is_a_configuration_error(store: EventStore, db_url: str,
                                                     tmp_path: Path) -> None:
    assert "CNO_TRACKER_SEAL_KEY" in Cli(db_url, tmp_path)(
        "seal", code=5, CNO_TRACKER_SEAL_KEY=None).output


def test_a_rotated_key_still_verifies_the_seals_of_the_former_one(sealed: Cli) -> None:
    rotated = {"CNO_TRACKER_SEAL_KEY": K2, "CNO_TRACKER_SEAL_KEYS": K1}
    assert "the seal matches" in sealed("verify", **rotated).output
    assert "key 'k2'" in sealed("seal", **rotated).output
    assert "the seal matches" in sealed("verify", **rotated).output
    assert "key 'k2' is not configured" in sealed("verify").output  # k1 alone


def test_the_worker_job_seals_only_when_the_log_moved(store: EventStore,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    clock = FixedClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    monkeypatch.delenv("CNO_TRACKER_SEAL_KEY", raising=False)
    assert scheduled_seal(store, clock) is None
    monkeypatch.setenv("CNO_TRACKER_SEAL_KEY", K1)
    monkeypatch.setenv("CNO_TRACKER_SEAL_INTERVAL_MINUTES", "15")
    job = scheduled_seal(store, clock)
    assert job is not None and job[1] == 15
    store.append("P0001", 0, [enrol()])
    assert job[0]() == 1
    assert job[0]() is None  # nothing new: no seal
    store.append("P0001", 1, [visit()])
    assert job[0]() == 2
    with store.engine.connect() as conn:
        assert conn.execute(select(seals.c.event_count).order_by(seals.c.seal_id)
                            ).scalars().all() == [1, 2]


def test_make_seal_signs_one_snapshot(store: EventStore) -> None:
    from datetime import UTC, datetime

    store.append("P0001", 0, [enrol(), visit()])
    keys = SealKeys.from_settings(K1, None)
    seal_id, seal = make_seal(store, keys, FixedClock(datetime(2026, 12, 1, tzinfo=UTC)))
    head = store.read_stream("P0001")[-1]
    assert seal.state.heads == {"P0001": (2, head.hash)}
    assert (seal.state.event_count, seal.state.last_position) == (2, head.position)
    assert latest_seal(store) == (seal_id, seal)


@pytest.mark.parametrize(("key", "registered"), [(K1, True), (None, False)])
def test_the_worker_schedules_the_seal_job_only_with_a_key(
        store: EventStore, monkeypatch: pytest.MonkeyPatch, key: str | None,
        registered: bool) -> None:
    from datetime import UTC, datetime, timedelta

    from tests.integration.alert_builders import worker

    monkeypatch.delenv("CNO_TRACKER_SEAL_KEY", raising=False)
    if key is not None:
        monkeypatch.setenv("CNO_TRACKER_SEAL_KEY", key)
    scheduler = worker(store, FixedClock(datetime(2026, 12, 1, tzinfo=UTC)), {}
                       ).build_scheduler()
    job = scheduler.get_job("seal")
    assert (job is not None) is registered
    if job is not None:
        assert job.trigger.interval == timedelta(minutes=60)  # the default: hourly
