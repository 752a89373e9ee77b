"""Helpers of the interop tests: the CLI with a link key, and a dump of every table."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner, Result
from sqlalchemy import select

from events.store.engine import make_engine
from tracker.schema import metadata

DATA = Path(__file__).resolve().parent.parent / "data" / "interop"
LINK_KEY = "test-link-key-0123456789abcdef0123456789"

#: every identifying string of the fixtures: none may be stored, logged or printed
PHI = ["Emily", "Carter", "Jane", "MRN-448812", "448812", "123-45-6789", "555-867-5309",
       "emily.carter@example.com", "Maple", "Springfield", "62704", "Winthrop", "Harold",
       "Alvarez", "Sarah", "Müller", "Jürgen", "Hauptstraße", "Köln", "4711-0815",
       "0221-555", "Schröder", "Beate"]


def cli(db_url: str, *args: str, key: str | None = LINK_KEY, stdin: bytes | None = None
        ) -> Result:
    from tracker.cli.main import cli as entry

    env = {"CNO_TRACKER_DATABASE_URL": db_url}
    if key is not None:
        env["CNO_TRACKER_LINK_KEY"] = key
    else:
        env["CNO_TRACKER_LINK_KEY"] = ""
    return CliRunner().invoke(entry, list(args), env=env, input=stdin)


def dump(db_url: str) -> str:
    """Every row of every table, as text."""
    import alerts.tables  # noqa: F401  (the outbox tables too)

    engine = make_engine(db_url)
    try:
        out = []
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                out += [repr(tuple(r)) for r in conn.execute(select(table))]
        return "\n".join(out)
    finally:
        engine.dispose()


def bundle(name: str = "us-core-transaction.json") -> dict[str, Any]:
    return copy.deepcopy(orjson.loads((DATA / name).read_bytes()))


def write(tmp: Path, doc: dict[str, Any], name: str = "b.json") -> str:
    path = tmp / name
    path.write_bytes(orjson.dumps(doc))
    return str(path)


def ingest_for(db_url: str, *, enrol: bool = True) -> Any:
    """An ``Ingest`` on ``db_url`` (and its app, to close) with the test link key."""
    from tracker.bootstrap import bootstrap
    from tracker.interop.identity import LinkTable, link_key_from_env
    from tracker.interop.ingest import Ingest
    from tracker.settings import Settings

    app = bootstrap(Settings(database_url=db_url))
    links = LinkTable(app.engine, link_key_from_env({"CNO_TRACKER_LINK_KEY": LINK_KEY}))
    return Ingest(app.store, links, clock=app.clock, protocol=app.protocol, enrol=enrol,
                  recorded_by="hl7-listener"), app


def messages(name: str) -> list[bytes]:
    from tracker.interop.hl7_in import split_messages

    return split_messages((DATA / name).read_bytes())


def events(db_url: str) -> list[Any]:
    """Every stored event, stream by stream."""
    from events.store import EventStore

    engine = make_engine(db_url)
    try:
        store = EventStore(engine)
        return [e for s in store.streams() for e in store.read_stream(s)]
    finally:
        engine.dispose()
