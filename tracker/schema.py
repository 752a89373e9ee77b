"""The tracker's part of the schema: importing this module registers the events' tables
and the read model on the one ``MetaData``. The alert outbox's tables live in
``alerts.tables`` (``tracker`` may not import ``alerts``); ``migrations/env.py`` imports
both, so Alembic sees the whole schema."""

from __future__ import annotations

from events.store.tables import metadata
from tracker import account_tables, readmodel, sealing  # noqa: F401  (registers their tables)
from tracker.interop import identity  # noqa: F401  (registers the patient link table)

__all__ = ["metadata"]
