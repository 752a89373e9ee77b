"""Builders of events for store and import tests."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from events.envelope import NewEvent
from events.vocabulary import EVENT_TYPES, EventData

T0 = datetime(2015, 3, 2, 9, 30, tzinfo=UTC)


def new_event(event_type: str, data: dict[str, Any] | EventData, *,
              occurred: datetime | None = None, recorded: datetime | None = None,
              key: str | None = None, by: str = "test") -> NewEvent:
    model = data if isinstance(data, EventData) else \
        EVENT_TYPES[event_type].model_validate_json(orjson.dumps(data))
    occurred = occurred or T0
    return NewEvent(event_id=str(uuid.uuid4()), type=event_type, data=model,
                    occurred_at=occurred, occurred_on=occurred.date(),
                    recorded_at=recorded or T0 + timedelta(hours=1), recorded_by=by,
                    idempotency_key=key)


def visit(pain: bool = True, **extra: Any) -> NewEvent:
    occurred = extra.pop("occurred", None)
    recorded = extra.pop("recorded", None)
    return new_event("VisitRecorded", {"pain": pain, "swelling": False,
                                       "functional_limitation": False, **extra},
                     occurred=occurred, recorded=recorded)


def enrol(born: date = date(2004, 1, 1)) -> NewEvent:
    return new_event("PatientEnrolled", {"birth_date": born.isoformat(), "sex": "female"})


def line(event_type: str, patient: str, when: str, data: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"type": event_type, "patient": patient, "occurred_at": when,
                         "data": data, **extra})
