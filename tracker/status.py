"""The status read model of one patient: every projection folded at a clinical date, as
known at an instant, assembled into the contract's status JSON (interchange.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from tracker.due import DueItem, due_items, next_check_on, worklist_alerts
from tracker.facts import Fact, LoggedEvent, facts
from tracker.projections.common import Explanation, Finding
from tracker.projections.course import DiseaseCourse, disease_course
from tracker.projections.diagnosis import DiagnosisResult, diagnosis
from tracker.projections.monitoring import MonitoringResult, monitoring
from tracker.projections.pamidronate import PamidronateExposure, pamidronate_exposure
from tracker.projections.treatment import TreatmentState, treatment
from tracker.protocol import Protocol


@dataclass(frozen=True)
class Evaluation:
    patient: str
    at: date
    known_at: datetime | None
    protocol: Protocol
    facts: list[Fact]
    course: DiseaseCourse
    diagnosis: DiagnosisResult
    treatment: TreatmentState
    pamidronate: PamidronateExposure
    monitoring: MonitoringResult
    findings: list[Finding]
    due: list[DueItem]
    next_check_on: date | None

    @property
    def explanations(self) -> list[Explanation]:
        return [*self.course.explanations, *self.diagnosis.explanations,
                *self.treatment.explanations, *self.pamidronate.explanations,
                *self.monitoring.explanations]

    def as_json(self) -> dict[str, Any]:
        deviations = [*self.pamidronate.deviations, *self.treatment.deviations]
        return {
            "patient": self.patient,
            "at": self.at.isoformat(),
            "known_at": self.known_at.isoformat() if self.known_at else None,
            "disease": self.course.as_json(on_treatment=self.treatment.on_treatment),
            "diagnosis": self.diagnosis.as_json(),
            "pamidronate": self.pamidronate.as_json(),
            "monitoring": self.monitoring.as_json(),
            "findings": [{"kind": f.kind, "on": f.on.isoformat(), "event_id": f.event_id}
                         for f in self.findings],
            "treatment": self.treatment.as_json(),
            "alerts": worklist_alerts(self.due, self.at, self.protocol.alert_lookback_days),
            "deviations": [d.as_json() for d in sorted(deviations, key=lambda d: d.on)],
            "protocol": {"fingerprint": self.protocol.fingerprint,
                         "timezone": self.protocol.timezone},
        }


def evaluate(patient: str, events: Sequence[LoggedEvent], *, at: date,
             known_at: datetime | None, protocol: Protocol) -> Evaluation:
    """Pure: the same events, date, instant and protocol always give the same status."""
    f = facts(events, at=at, known_at=known_at)
    course = disease_course(f, at, protocol)
    diag = diagnosis(f, at, protocol)
    treat = treatment(f, at, protocol)
    pam = pamidronate_exposure(f, at, protocol)
    mon = monitoring(f, at, protocol)
    found = sorted([*course.findings, *diag.findings, *treat.findings, *pam.findings,
                    *mon.findings], key=lambda x: (x.on, x.kind, x.event_id or ""))
    items = due_items(patient, course=course, treatment=treat, pamidronate=pam,
                      monitoring=mon, findings=found, protocol=protocol)
    check = next_check_on(at, course=course, treatment=treat, items=items, protocol=protocol)
    return Evaluation(patient, at, known_at, protocol, f, course, diag, treat, pam, mon, found,
                      items, check)
