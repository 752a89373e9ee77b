"""The append-only event store (SQLAlchemy Core; SQLite and PostgreSQL)."""

from events.store.sql import START, ChainBreak, Checkpoint, EventStore
from events.store.tables import metadata

__all__ = ["START", "ChainBreak", "Checkpoint", "EventStore", "metadata"]
