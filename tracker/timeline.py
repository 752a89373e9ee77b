"""The audit view of one patient: every event in clinical order, with void and
correction marks as known at an instant."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from events.envelope import RecordedEvent
from tracker.facts import amendments


def local_iso(moment: datetime, zone: tzinfo) -> str:
    """An instant in the centre's local time with its offset, as clinicians enter it."""
    local = moment.astimezone(zone)
    return local.isoformat(timespec="microseconds" if local.microsecond else "seconds")


def timeline(events: Sequence[RecordedEvent], *, known_at: datetime | None = None,
             zone: tzinfo = UTC) -> list[dict[str, Any]]:
    known = [e for e in events if known_at is None or e.recorded_at <= known_at]
    changes = amendments(known)  # the same voids and corrections facts() applies
    voided_by = changes.voided_by
    corrected_by = {target: by for target, (by, _data) in changes.corrected.items()}
    rows = []
    for e in sorted(known, key=lambda e: (e.occurred_at, e.position)):
        row = e.as_dict()
        row["occurred_at"] = local_iso(e.occurred_at, zone)
        row["voided"] = e.event_id in voided_by
        row["voided_by"] = voided_by.get(e.event_id)
        row["corrected_by"] = corrected_by.get(e.event_id)
        rows.append(row)
    return rows


def describe(row: dict[str, Any]) -> str:
    marks = []
    if row["voided"]:
        marks.append(f"VOIDED by {row['voided_by']}")
    if row["corrected_by"]:
        marks.append(f"corrected by {row['corrected_by']}")
    data = ", ".join(f"{k}={v}" for k, v in row["data"].items()
                     if k not in ("canonical_value", "canonical_unit"))
    tail = f"  [{'; '.join(marks)}]" if marks else ""
    return (f"{row['occurred_on']}  {row['type']:<22} {data}  "
            f"(by {row['recorded_by']}, recorded {row['recorded_at'][:19]}Z, "
            f"id {short_id(row['event_id'])}){tail}")


def short_id(event_id: str) -> str:
    """An event id's last 12 hex digits, for people: random bits (an id begins with the
    millisecond it was made in, so its first digits are shared by a whole import)."""
    return "…" + event_id[-12:]
