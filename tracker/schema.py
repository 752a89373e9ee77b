"""The whole database schema: importing this module registers every table on the one
``MetaData`` (events' tables, the tracker's read model, the alert outbox)."""

from __future__ import annotations

from events.store.tables import metadata
from tracker import readmodel  # noqa: F401  (registers the read model's tables)

__all__ = ["metadata"]
