"""The append-only event store (SQLAlchemy Core; SQLite and PostgreSQL)."""

from events.store.sql import Checkpoint, ChainBreak, EventStore, START
from events.store.tables import metadata

__all__ = ["START", "ChainBreak", "Checkpoint", "EventStore", "metadata"]
