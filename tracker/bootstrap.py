"""The composition root: the only place that reads settings, makes the engine and the
system clock, and wires them into the application."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from events.store import EventStore
from events.store.engine import make_engine
from tracker import db
from tracker.clock import Clock, SystemClock
from tracker.errors import ConfigurationError
from tracker.protocol import Protocol, load_protocol
from tracker.settings import Settings


def masked(url: str) -> str:
    """A database URL fit to print: the password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def unreachable(url: str, exc: OperationalError) -> str:
    reason = next((line.strip() for line in str(exc.orig).splitlines() if line.strip()),
                  type(exc.orig).__name__)
    return f"cannot use the database {masked(url)}: {reason}"


@dataclass
class App:
    settings: Settings
    protocol: Protocol
    clock: Clock
    engine: Engine

    @cached_property
    def store(self) -> EventStore:
        return EventStore(self.engine)

    def close(self) -> None:
        self.engine.dispose()


def bootstrap(settings: Settings, *, clock: Clock | None = None,
              protocol: Protocol | None = None, migrate: bool | None = None) -> App:
    """Wire the application. SQLite databases are brought up to date on first use;
    PostgreSQL must be migrated by the release step (``cno-tracker db upgrade``)."""
    proto = protocol or load_protocol(settings.protocol_file)
    if settings.timezone:
        proto = proto.model_copy(update={"timezone": settings.timezone})
    db.prepare_sqlite_file(settings.database_url)
    engine = make_engine(settings.database_url, **(
        {"pool_size": settings.db_pool_size} if settings.db_pool_size else {}))
    is_sqlite = engine.dialect.name == "sqlite"
    try:
        if migrate or (migrate is None and is_sqlite):
            if not db.is_current(engine, settings.database_url):
                db.upgrade(settings.database_url)
        elif migrate is None and not db.is_current(engine, settings.database_url):
            raise ConfigurationError(
                "the database schema is not up to date: run `cno-tracker db upgrade`")
    except OperationalError as exc:
        engine.dispose()
        raise ConfigurationError(unreachable(settings.database_url, exc)) from None
    except ConfigurationError:
        engine.dispose()
        raise
    return App(settings=settings, protocol=proto, clock=clock or SystemClock(), engine=engine)
