"""Mistakes are corrected by new events, never by editing old ones."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import field_validator

from events.vocabulary.common import EventData, Text


class EntryVoided(EventData):
    """The target stops counting from this event's ``recorded_at`` on."""

    target_event_id: str
    reason: Text

    @field_validator("target_event_id")
    @classmethod
    def _uuid(cls, v: str) -> str:
        try:
            return str(UUID(v))
        except ValueError:
            raise ValueError("must be an event_id (a UUID)") from None


class EntryCorrected(EventData):
    """Replaces the target's whole ``data`` from this event's ``recorded_at`` on.

    ``data`` is validated against the target's type when the correction is recorded."""

    target_event_id: str
    data: dict[str, Any]
    reason: Text

    _uuid = field_validator("target_event_id")(EntryVoided._uuid.__func__)  # type: ignore[attr-defined]
