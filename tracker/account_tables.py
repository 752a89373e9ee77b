"""The accounts table: each staff account's current credentials and lock-out state.

The account's history (created, role changes, password changes, disabled, locked) is in
its event stream ``account:<username>``; this table holds what a login must read at
once and what must never be in an append-only log: the argon2id hash of the password.

``api_tokens`` holds the SHA-256 of each integration account's API token (the token itself
is printed once and never stored); see :mod:`tracker.accounts`."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Integer, String, Table

from events.store.tables import metadata
from events.store.types import UTCDateTime

accounts = Table(
    "accounts", metadata,
    Column("username", String(64), primary_key=True),
    Column("role", String(64), nullable=False),
    Column("member", String(64), nullable=True),
    Column("password_hash", String(200), nullable=False),
    Column("disabled", Boolean(), nullable=False),
    Column("failed_attempts", Integer, nullable=False),
    Column("locked_until", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

api_tokens = Table(
    "api_tokens", metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("username", String(64), ForeignKey("accounts.username"), nullable=False,
           index=True),
    Column("created_at", UTCDateTime(), nullable=False),
)
