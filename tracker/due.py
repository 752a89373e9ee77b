"""From projection results to the schedule of things that fall due (clinical-rules §6).

Pure. Each :class:`DueItem` is one alert-worthy moment with a stable ``key`` built from
the events that caused it, so re-evaluating never changes it; the alert worker raises an
alert for it once its moment has come. Items whose cause is gone (a lab arrived, an entry
was voided) simply stop being produced, which is how pending alerts get cancelled."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from tracker.alertkinds import AlertKind, Severity
from tracker.projections.common import Finding, add_months
from tracker.projections.course import DiseaseCourse
from tracker.projections.monitoring import MonitoringResult
from tracker.projections.pamidronate import PamidronateExposure
from tracker.projections.treatment import TreatmentState
from tracker.protocol import Protocol

MONITORING_KINDS = {
    "baseline_labs": AlertKind.BASELINE_LABS_DUE,
    "post_dose_2_labs": AlertKind.POST_DOSE_LABS_DUE,
    "post_dose_3_labs": AlertKind.POST_DOSE_LABS_DUE,
    "renal_ultrasound": AlertKind.RENAL_ULTRASOUND_DUE,
}
#: finding kind -> (alert kind, severity); diagnostic_delay is reported, not alerted
FINDING_ALERTS = {
    "hypocalcaemia": (AlertKind.HYPOCALCAEMIA, Severity.URGENT),
    "supplement_suggested": (AlertKind.SUPPLEMENT_SUGGESTED, Severity.INFO),
    "pamidronate_contraindicated": (AlertKind.PAMIDRONATE_CONTRAINDICATED, Severity.URGENT),
    "nsaid_review_due": (AlertKind.NSAID_REVIEW_DUE, Severity.INFO),
    "relapse": (AlertKind.RELAPSE_DETECTED, Severity.WARNING),
    "remission_reached": (AlertKind.REMISSION_REACHED, Severity.INFO),
    "biopsy_recommended": (AlertKind.BIOPSY_RECOMMENDED, Severity.INFO),
}
SEVERITY_RANK = {s.value: s.rank for s in Severity}
#: items that stay open until something is done (a lab, an ultrasound, a dose) — the
#: others are news of a moment (a relapse, a deviation) and go stale after the look-back
STANDING_KINDS = frozenset({
    AlertKind.BASELINE_LABS_DUE, AlertKind.POST_DOSE_LABS_DUE, AlertKind.RENAL_ULTRASOUND_DUE,
    AlertKind.PAMIDRONATE_DOSE_DUE, AlertKind.ANNUAL_CAP_WOULD_BE_EXCEEDED,
    AlertKind.PAMIDRONATE_CONTRAINDICATED, AlertKind.CORTICOID_COURSE_LONG,
    AlertKind.NSAID_REVIEW_DUE,
})


def is_current(kind: str, fires_on: date, at: date, lookback_days: int) -> bool:
    """Whether an item that fired on ``fires_on`` still belongs on a list made at ``at``."""
    return kind in STANDING_KINDS or fires_on >= at - timedelta(days=lookback_days)


@dataclass(frozen=True, slots=True)
class DueItem:
    key: str  # stable: patient, kind, the causing events, the phase
    group: str  # the key without its phase: one line of the worklist
    patient: str
    kind: str  # the alert kind (clinical-rules §6)
    severity: str
    fires_on: date  # the local date from whose start the alert may go out
    item_due_on: date  # what the worklist shows as due_on
    item: str  # the monitoring item or finding behind it
    cause_event_ids: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "patient": self.patient, "kind": self.kind,
                "severity": self.severity, "fires_on": self.fires_on.isoformat(),
                "due_on": self.item_due_on.isoformat(), "item": self.item,
                "cause_event_ids": list(self.cause_event_ids)}


def _item(patient: str, kind: str, anchor: str, phase: str, severity: str, fires_on: date,
          due_on: date, item: str, causes: tuple[str, ...]) -> DueItem:
    group = f"{patient}:{kind}:{anchor}"
    return DueItem(f"{group}:{phase}", group, patient, kind, severity, fires_on, due_on, item,
                   causes)


def due_items(patient: str, *, course: DiseaseCourse, treatment: TreatmentState,
              pamidronate: PamidronateExposure, monitoring: MonitoringResult,
              findings: list[Finding], protocol: Protocol) -> list[DueItem]:
    out: list[DueItem] = []
    for m in monitoring.items:
        if m.status == "satisfied" or m.due_on is None:
            continue
        kind = MONITORING_KINDS.get(m.item)
        if kind is None:
            continue
        causes = tuple(m.cause_event_ids)
        anchor = f"{m.item}:{'+'.join(causes) or m.due_on.isoformat()}"
        out.append(_item(patient, kind, anchor, "due", "warning", m.due_on, m.due_on, m.item,
                         causes))
        if m.overdue_on is not None:
            out.append(_item(patient, kind, anchor, "overdue", "urgent", m.overdue_on,
                             m.due_on, m.item, causes))

    contraindicated = any(f.kind == "pamidronate_contraindicated" for f in findings)
    if pamidronate.course_open and pamidronate.next_due is not None and not contraindicated:
        due = pamidronate.next_due
        last = tuple(d.event_id for d in pamidronate.doses[-1:])
        anchor = f"{due.isoformat()}:{'+'.join(last) or 'first'}"
        lead = timedelta(days=protocol.dose_due_lead_days)
        out.append(_item(patient, "pamidronate_dose_due", anchor, "eve", "info", due - lead,
                         due, "pamidronate_next_dose", last))
        out.append(_item(patient, "pamidronate_dose_due", anchor, "day", "info", due, due,
                         "pamidronate_next_dose", last))
        if pamidronate.next_dose_exceeds_cap:
            out.append(_item(patient, "annual_cap_would_be_exceeded", anchor, "warn", "warning",
                             due - timedelta(days=protocol.cap_warning_days), due,
                             "pamidronate_cap", last))

    for d in [*pamidronate.deviations, *treatment.deviations]:
        out.append(_item(patient, "dose_deviation", f"{d.kind}:{d.event_id}", "now", "warning",
                         d.on, d.on, d.kind, (d.event_id,)))

    for f in findings:
        if f.kind == "corticoid_course_long":
            severity = "urgent" if f.detail == "urgent" else "warning"
            out.append(_item(patient, "corticoid_course_long", f"{f.event_id}", severity,
                             severity, f.on, f.on, f.kind, (f.event_id or "",)))
            continue
        mapped = FINDING_ALERTS.get(f.kind)
        if mapped is None:
            continue
        kind, severity = mapped
        causes = (f.event_id,) if f.event_id else ()
        out.append(_item(patient, kind, f"{f.on.isoformat()}:{f.event_id or '-'}", "now",
                         severity, f.on, f.on, f.kind, causes))
    out.sort(key=lambda i: (i.fires_on, -SEVERITY_RANK[i.severity], i.key))
    return out


def next_check_on(at: date, *, course: DiseaseCourse, treatment: TreatmentState,
                  items: list[DueItem], protocol: Protocol) -> date | None:
    """The next date on which the status may change with no new event: the read model
    re-evaluates the patient then."""
    candidates = [i.fires_on for i in items if i.fires_on > at]
    if course.state == "inactive" and course.last_activity is not None:
        candidates.append(add_months(course.last_activity, protocol.remission_months)
                          + timedelta(days=1))
    if any(c.drug in ("prednisone", "ibuprofen", "naproxen") for c in treatment.open_courses):
        candidates.append(at + timedelta(days=1))  # corticoid length / NSAID review
    future = [c for c in candidates if c > at]
    return min(future) if future else None


def worklist_alerts(items: list[DueItem], at: date, lookback_days: int
                    ) -> list[dict[str, Any]]:
    """The status JSON's ``alerts``: one per item that has fallen due by ``at`` and is
    still current (standing items until done, news for the look-back window), at the
    severity it has reached."""
    reached: dict[str, DueItem] = {}
    for i in items:
        if i.fires_on > at or not is_current(i.kind, i.fires_on, at, lookback_days):
            continue
        best = reached.get(i.group)
        if best is None or SEVERITY_RANK[i.severity] > SEVERITY_RANK[best.severity] or (
                i.severity == best.severity and i.fires_on > best.fires_on):
            reached[i.group] = i
    return [{"kind": i.kind, "severity": i.severity, "due_on": i.item_due_on.isoformat(),
             "status": "open"}
            for i in sorted(reached.values(), key=lambda i: (i.item_due_on, i.kind))]
