"""What an entry would change, shown *before* it is saved: the patient's status folded with
and without a hypothetical event (pure: the same projections as every status), and the
differences between the two, in words a clinician can check.

Used by the infusion form (mg/kg and the deviations the dose would create) and by void and
correct (what stops counting, what changes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from events.envelope import RecordedEvent, canonical_json
from events.ids import new_event_id
from tracker.bootstrap import App
from tracker.status import Evaluation, evaluate

#: the parts of the status JSON a preview compares
COMPARED = ("disease", "diagnosis", "pamidronate", "monitoring", "treatment")
MAX_CHANGES = 40


@dataclass(frozen=True)
class Change:
    path: str
    before: Any
    after: Any


def hypothetical(ref: str, events: Sequence[RecordedEvent], event_type: str,
                 data: dict[str, Any], occurred_at: datetime, occurred_on: date,
                 recorded_at: datetime, user: str) -> RecordedEvent:
    """The event as it would be stored (never stored: no hash, a fresh id)."""
    last = events[-1] if events else None
    return RecordedEvent(
        position=(last.position if last else 0) + 1, tx=last.tx if last else 0,
        event_id=new_event_id(), stream=ref, version=(last.version if last else 0) + 1,
        type=event_type, schema_version=1, occurred_at=occurred_at, occurred_on=occurred_on,
        recorded_at=recorded_at, recorded_by=user, idempotency_key=None,
        payload=canonical_json(data).decode(), hash="")


def evaluate_now(core: App, ref: str, events: Sequence[RecordedEvent]) -> Evaluation:
    today = core.clock.now().astimezone(core.protocol.zone).date()
    return evaluate(ref, events, at=today, known_at=None, protocol=core.protocol)


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
        for i, x in enumerate(value):
            key = x.get("item") or x.get("kind") or x.get("course_id") or str(i)
            _flatten(x, f"{prefix}[{key}]", out)
    else:
        out[prefix] = orjson.dumps(value).decode() if isinstance(value, list | dict) else value


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """What differs between two status JSONs, in the compared parts, by path."""
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    for part in COMPARED:
        _flatten(before.get(part), part, a)
        _flatten(after.get(part), part, b)
    out = [Change(p, a.get(p), b.get(p)) for p in dict.fromkeys([*a, *b])
           if a.get(p) != b.get(p)]
    return out[:MAX_CHANGES]


def new_deviations(before: Evaluation, after: Evaluation) -> list[dict[str, Any]]:
    """Deviations the hypothetical event would create (not there before)."""
    seen = {(d["kind"], d["event_id"]) for d in before.as_json()["deviations"]}
    return [d for d in after.as_json()["deviations"] if (d["kind"], d["event_id"]) not in seen]
