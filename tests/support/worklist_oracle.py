"""What the worklist must show for one patient, read off that patient's status JSON alone.

The oracle of the replay tests: ``due --at D --known-at K`` must list, per patient, exactly
these lines, computed here from ``status --at D --known-at K`` by the rules of
clinical-rules §5-§6 as the README states them (not by the code that builds the list)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from tracker.due import FINDING_ALERTS, MONITORING_KINDS, STANDING_KINDS
from tracker.protocol import Protocol

Line = tuple[str, str, str, str, str, str]  # patient, kind, item, severity, due_on, status


def _timed(fires_on: date, at: date, soon_days: int, fired: str) -> str | None:
    if fires_on <= at:
        return fired
    return "due_soon" if fires_on <= at + timedelta(days=soon_days) else None


def expected_lines(status: dict[str, Any], at: date, soon_days: int,
                   protocol: Protocol) -> list[Line]:
    patient = status["patient"]
    out: list[Line] = []

    def add(kind: str, item: str, severity: str, due_on: str, state: str | None) -> None:
        if state is not None:
            out.append((patient, kind, item, severity, due_on, state))

    for m in status["monitoring"]:
        if m["status"] == "satisfied" or m["due_on"] is None:
            continue
        kind = MONITORING_KINDS[m["item"]]
        if m["status"] in ("due", "overdue"):
            add(kind, m["item"], "urgent" if m["status"] == "overdue" else "warning",
                m["due_on"], m["status"])
        else:
            add(kind, m["item"], "warning", m["due_on"],
                _timed(date.fromisoformat(m["due_on"]), at, soon_days, "due"))

    findings = status["findings"]
    p = status["pamidronate"]
    contraindicated = any(f["kind"] == "pamidronate_contraindicated" for f in findings)
    if p["next_due"] is not None and not contraindicated:
        due = date.fromisoformat(p["next_due"])
        add("pamidronate_dose_due", "pamidronate_next_dose", "info", p["next_due"],
            _timed(due - timedelta(days=protocol.dose_due_lead_days), at, soon_days, "due"))
        if p["next_dose_exceeds_cap"]:
            add("annual_cap_would_be_exceeded", "pamidronate_cap", "warning", p["next_due"],
                _timed(due - timedelta(days=protocol.cap_warning_days), at, soon_days, "due"))

    news_since = at - timedelta(days=protocol.alert_lookback_days)

    def current(kind: str, on: str) -> bool:
        return kind in STANDING_KINDS or date.fromisoformat(on) >= news_since

    for d in status["deviations"]:
        if current("dose_deviation", d["on"]):
            add("dose_deviation", d["kind"], "warning", d["on"], "due")

    corticoid: dict[str, list[str]] = {}
    for f in findings:
        if f["kind"] == "corticoid_course_long":
            corticoid.setdefault(f["event_id"], []).append(f["on"])
        elif f["kind"] in FINDING_ALERTS:
            kind, severity = FINDING_ALERTS[f["kind"]]
            if current(kind, f["on"]):
                add(kind, f["kind"], severity, f["on"], "due")
    for days in corticoid.values():  # warning over 1 month, then urgent over 6 weeks
        add("corticoid_course_long", "corticoid_course_long",
            "urgent" if len(days) > 1 else "warning", max(days), "due")
    return sorted(out)


def expected_alerts(status: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The status's own ``alerts``: the lines of the list that have fallen due."""
    return sorted((status["patient"], a["kind"], a["severity"], a["due_on"])
                  for a in status["alerts"])


def as_lines(worklist: list[dict[str, Any]]) -> list[Line]:
    return sorted((i["patient"], i["kind"], i["item"], i["severity"], i["due_on"], i["status"])
                  for i in worklist)


def fired(worklist: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    return sorted((i["patient"], i["kind"], i["severity"], i["due_on"])
                  for i in worklist if i["status"] != "due_soon")
