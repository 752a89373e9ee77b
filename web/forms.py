"""Data entry through the same door as ``cno-tracker import``: each form becomes one import
line (type, patient, occurred_at, data) validated and written by
:func:`tracker.importing.import_lines`, so the web holds no rule the CLI lacks.

- ``recorded_by`` is the logged-in user (never a form field).
- Each rendered form carries a random ``form_token``; it becomes the line's idempotency
  key, so a double click or a resubmitted form records once (the second is a duplicate).
- The import's problems (``data.value: …``) become errors next to their form field."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from events.errors import DuplicateIdempotencyKey, InvalidEvent
from tracker.bootstrap import App
from tracker.errors import ImportRefused
from tracker.importing import import_lines

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
KEY_PREFIX = "web-form:"


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class Outcome:
    """What a submitted form did: ``errors`` by form field (empty when it recorded),
    ``duplicate`` when the same form had been recorded already."""

    errors: dict[str, str] = field(default_factory=dict)
    event_id: str | None = None
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors


class FormError(ValueError):
    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


def field_of(problem_field: str) -> str:
    """The form field an import problem names: ``data.active_lesions.0.site`` → the
    ``active_lesions`` field, ``data.value`` → ``value``, ``occurred_at`` as is."""
    parts = problem_field.split(".")
    if parts[0] == "data" and len(parts) > 1:
        return parts[1]
    return parts[0] or "form"


def when_of(value: str, zone: ZoneInfo, *, name: str = "occurred_at") -> str:
    """A form's date (``2016-03-01``) or local date-time (``2016-03-01T08:30``) as the
    import format wants it: a local date, or a date-time with the centre's offset."""
    value = value.strip()
    if not value:
        raise FormError(name, "required")
    try:
        if len(value) == 10:
            return date.fromisoformat(value).isoformat()
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise FormError(name, "not a date (YYYY-MM-DD) or date and time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.isoformat()


def number(value: str, name: str, *, required: bool = True) -> float | None:
    value = value.strip().replace(",", ".")
    if not value:
        if required:
            raise FormError(name, "required")
        return None
    try:
        return float(value)
    except ValueError:
        raise FormError(name, "not a number") from None


def record(core: App, *, user: str, event_type: str, patient: str, when: str,
           data: dict[str, Any], token: str, dry_run: bool = False) -> Outcome:
    """Validate and (unless ``dry_run``) write one event as an import line."""
    if not TOKEN_RE.fullmatch(token or ""):
        return Outcome({"form": "this form has expired: reload the page"})
    line = {"type": event_type, "patient": patient, "occurred_at": when, "data": data,
            "idempotency_key": KEY_PREFIX + token}
    try:
        report = import_lines([orjson.dumps(line)], core.store, clock=core.clock,
                              protocol=core.protocol, default_by=user, dry_run=dry_run)
    except (ImportRefused, InvalidEvent) as exc:
        errors: dict[str, str] = {}
        for p in exc.problems:
            errors.setdefault(field_of(p.field), p.reason)
        return Outcome(errors)
    except DuplicateIdempotencyKey:  # the same form submitted twice at the same moment
        return Outcome(duplicate=True)
    if report.written:
        return Outcome(event_id=report.event_ids[0] if report.event_ids else None)
    return Outcome(duplicate=True)
