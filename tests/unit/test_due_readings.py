"""Readings of issue 8 at the level of alerts (docs/readings.md): the corticoid warning
goes out *over* 1 month, as the ladder says, not *at* 1 month as §6's table reads."""

from __future__ import annotations

from datetime import date

import pytest

from tests.support.cohort import stored
from tracker.protocol import DEFAULT_PROTOCOL
from tracker.status import evaluate

LINES = [
    {"type": "PatientEnrolled", "patient": "C0001", "occurred_at": "2014-12-01",
     "idempotency_key": "c-1", "data": {"birth_date": "2006-01-01", "sex": "female"}},
    {"type": "MedicationStarted", "patient": "C0001", "occurred_at": "2015-01-10",
     "idempotency_key": "c-2",
     "data": {"course_id": "pred1", "drug": "prednisone", "dose": 1, "dose_unit": "mg/kg/day"}},
]


def alerts(at: str) -> list[tuple[str, str, str]]:
    events = [stored(line, i) for i, line in enumerate(LINES, start=1)]
    status = evaluate("C0001", events, at=date.fromisoformat(at), known_at=None,
                      protocol=DEFAULT_PROTOCOL).as_json()
    return [(a["kind"], a["severity"], a["due_on"]) for a in status["alerts"]
            if a["kind"] == "corticoid_course_long"]


@pytest.mark.parametrize(("at", "expected"), [
    ("2015-02-10", []),  # start + 1 month: "at 1 month" would warn today; we do not
    ("2015-02-11", [("corticoid_course_long", "warning", "2015-02-11")]),  # over 1 month
    ("2015-02-21", [("corticoid_course_long", "warning", "2015-02-11")]),  # start + 42 days
    ("2015-02-22", [("corticoid_course_long", "urgent", "2015-02-22")]),   # over 6 weeks
])
def test_the_corticoid_alert_follows_the_ladder_over_1_month(
        at: str, expected: list[tuple[str, str, str]]) -> None:
    assert alerts(at) == expected
