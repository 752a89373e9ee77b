"""The web sessions, on the application's one ``metadata``.

A session is a row keyed by the SHA-256 of its cookie (a leaked table opens no session);
the cookie itself is 32 random bytes, opaque. ``ended_at`` is set by logout, by expiry
(idle or absolute) seen at a request, or when the account is disabled."""

from __future__ import annotations

from sqlalchemy import Column, Index, String, Table

from events.store.tables import metadata
from events.store.types import UTCDateTime

web_sessions = Table(
    "web_sessions", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("username", String(128), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
    Column("ended_at", UTCDateTime(), nullable=True),
)
Index("ix_web_sessions_username", web_sessions.c.username)
