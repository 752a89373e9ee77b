"""Message rendering: neutral labels, no PHI, SMS under 160 characters."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date
from uuid import UUID

import pytest

from alerts import messages
from alerts.channels.base import SEVERITIES
from alerts.messages import (
    ALERT_KINDS,
    CLINICAL_KINDS,
    LABELS,
    label_for,
    render,
    render_digest,
    render_escalation,
)
from tracker.alertkinds import AlertKind


@dataclass(frozen=True)
class FakeAlert:
    """An alert view whose surrounding record is full of PHI the renderer must not leak."""

    alert_id: str | int | UUID
    patient_ref: str
    kind: str
    severity: str
    due_on: date
    status: str = "open"
    # the rest of a (fake) patient record, reachable from the object
    patient_name: str = "María García López"
    birth_date: date = date(2008, 3, 14)
    diagnosis: str = "chronic nonbacterial osteomyelitis (CNO/CRMO), hypocalcaemia"
    drugs: tuple[str, ...] = ("pamidronate 30 mg", "naproxen", "prednisone", "calcium",
                              "vitamin D", "methotrexate", "adalimumab")
    last_values: tuple[str, ...] = ("ionized calcium 0.94 mmol/L", "CRP 37.5 mg/L",
                                    "urine Ca/Cr 2.4 mmol/mmol", "creatinine 61 umol/L")


# Case-insensitive: substrings for long words, whole words for short ones.
FORBIDDEN_SUBSTRINGS = [
    # names and birth date
    "maría", "maria", "garcía", "garcia", "lópez", "lopez", "2008-03-14", "14/03/2008",
    "2008",
    # diagnoses and findings
    "osteomyelitis", "nonbacterial", "hypocalc", "hypocalcemia", "relapse", "remission",
    "kidney", "renal", "biopsy", "contraindic", "deviation", "chronic", "multifocal",
    # drugs and treatments
    "pamidronate", "bisphosphonate", "calcium", "vitamin", "prednis", "corticoid",
    "steroid", "nsaid", "naproxen", "ibuprofen", "methotrexate", "adalimumab",
    "etanercept", "sulfasalazine", "supplement", "ultrasound",
    # values and units
    "mmol", "umol", "0.94", "37.5", "2.4", "61",
]
FORBIDDEN_WORDS = ["cno", "crmo", "mg", "crp", "esr", "cap", "dose of"]
_WORD_RES = [re.compile(rf"\b{re.escape(w)}\b", re.IGNORECASE) for w in FORBIDDEN_WORDS]


def leaks(text: str) -> list[str]:
    lowered = text.lower()
    found = [term for term in FORBIDDEN_SUBSTRINGS if term in lowered]
    found += [w for w, pattern in zip(FORBIDDEN_WORDS, _WORD_RES, strict=True)
              if pattern.search(text)]
    return found


def severities_for(kind: str) -> tuple[str, ...]:
    entry = LABELS[kind]
    return tuple(entry) if isinstance(entry, dict) else SEVERITIES


REF = "P0007"
DUE = date(2015, 2, 5)
ALL_CASES = [(kind, sev) for kind in LABELS for sev in severities_for(kind)]


def alert(kind: str = "post_dose_labs_due", severity: str = "urgent", **kw: object) -> FakeAlert:
    base = FakeAlert(alert_id=UUID(int=7), patient_ref=REF, kind=kind, severity=severity,
                     due_on=DUE)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_the_leak_detector_itself_catches_phi() -> None:
    record = alert()
    assert leaks(record.patient_name) and leaks(record.diagnosis)
    assert all(leaks(d) for d in record.drugs)
    assert all(leaks(v) for v in record.last_values)
    assert leaks("cno-tracker status P0007") == ["cno"]
    assert leaks("URGENT: labs overdue for P0007, 2015-02-05.") == []


def test_every_clinical_kind_of_section_6_has_a_label() -> None:
    assert set(CLINICAL_KINDS) == set(AlertKind)  # the one list: tracker.alertkinds
    assert set(ALERT_KINDS) == {*CLINICAL_KINDS, "escalation", "digest"}


@pytest.mark.parametrize(("kind", "severity"), ALL_CASES)
def test_render_every_kind_leaks_nothing_and_fits_an_sms(kind: str, severity: str) -> None:
    msg = render(alert(kind, severity))
    assert len(msg.sms_text) < 160 and msg.sms_text.isascii()
    for text in (msg.subject, msg.sms_text, msg.email_text):
        assert leaks(text) == [], (kind, severity, text)
    assert kind not in msg.subject + msg.sms_text + msg.email_text
    assert REF in msg.sms_text and REF in msg.subject and "2015-02-05" in msg.sms_text
    assert "tracker status P0007" in msg.email_text
    assert (msg.kind, msg.severity, msg.alert_id, msg.patient_ref, msg.due_on) == (
        kind, severity, str(UUID(int=7)), REF, DUE)


@pytest.mark.parametrize(("kind", "severity"), ALL_CASES)
def test_escalation_of_every_kind_leaks_nothing(kind: str, severity: str) -> None:
    msg = render_escalation(alert(kind, severity), level=2, tracker_command="tracker")
    assert len(msg.sms_text) < 160
    for text in (msg.subject, msg.sms_text, msg.email_text):
        assert leaks(text) == [], text
    assert (msg.kind, msg.severity) == ("escalation", "urgent")
    assert "L2" in msg.sms_text and "level 2" in msg.subject


def test_a_neutral_tracker_command_leaves_no_trace_of_the_condition() -> None:
    for kind, severity in ALL_CASES:
        msg = render(alert(kind, severity), tracker_command="tracker")
        assert leaks(msg.email_text) == []
        assert "tracker status P0007" in msg.email_text


def test_exact_texts_for_labs_overdue() -> None:
    msg = render(alert("post_dose_labs_due", "urgent"))
    assert msg.sms_text == (
        "URGENT: labs overdue for P0007, 2015-02-05. Open the tracker for details.")
    assert msg.subject == "[URGENT] P0007: labs overdue (2015-02-05)"
    assert "escalated" in msg.email_text


def test_labels_follow_severity_for_due_then_overdue() -> None:
    assert label_for("baseline_labs_due", "warning") == "labs due"
    assert label_for("baseline_labs_due", "urgent") == "labs overdue"
    assert label_for("renal_ultrasound_due", "warning") == "imaging due"
    assert label_for("renal_ultrasound_due", "urgent") == "imaging overdue"
    assert label_for("pamidronate_dose_due", "info") == "infusion due"
    assert label_for("hypocalcaemia", "urgent") == "urgent review"
    assert label_for("remission_reached", "info") == "status update"
    assert "escalated" not in render(alert("pamidronate_dose_due", "info")).email_text
    assert render(alert("dose_deviation", "warning")).sms_text.startswith("Reminder: ")
    assert render(alert("nsaid_review_due", "info")).sms_text.startswith("Info: ")


def test_longest_reference_still_fits_an_sms() -> None:
    longest_ref = "P" + "7" * 63  # the vocabulary's maximum: 64 characters
    longest_label = max((label_for(k, s) for k, s in ALL_CASES), key=len)
    kind, severity = next((k, s) for k, s in ALL_CASES if label_for(k, s) == longest_label)
    assert len(render(alert(kind, severity, patient_ref=longest_ref)).sms_text) < 160
    escalated = render_escalation(alert(kind, severity, patient_ref=longest_ref), level=99)
    assert len(escalated.sms_text) < 160


def test_sms_limit_boundary() -> None:
    assert messages._check_sms("x" * 159) == "x" * 159
    with pytest.raises(ValueError):
        messages._check_sms("x" * 160)
    with pytest.raises(ValueError):
        messages._check_sms("ñ")


def test_status_is_not_shown_and_rendering_is_pure() -> None:
    assert render(alert(status="open")) == render(alert(status="acknowledged"))
    assert "open" not in render(alert()).subject


@pytest.mark.parametrize("ref", ["garcia", "Maria.Lopez", "P 0007", ""])
def test_name_like_or_malformed_references_are_refused(ref: str) -> None:
    with pytest.raises(ValueError):
        render(alert(patient_ref=ref))


def test_unknown_kind_or_severity_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown alert kind"):
        render(alert(kind="pamidronate_overdose"))
    with pytest.raises(ValueError, match="unknown severity"):
        render(alert(severity="critical"))
    with pytest.raises(ValueError):
        render_escalation(alert(), level=0)


# ------------------------------------------------------------------ digest


def digest_alerts() -> list[FakeAlert]:
    return [
        alert("pamidronate_dose_due", "info", alert_id=1, patient_ref="P0002",
              due_on=date(2015, 2, 6)),
        alert("post_dose_labs_due", "urgent", alert_id=2, patient_ref="P0007"),
        alert("relapse_detected", "warning", alert_id=3, patient_ref="P0002",
              due_on=date(2015, 2, 4)),
    ]


def test_digest_lists_refs_labels_and_dates_urgent_first() -> None:
    msg = render_digest(digest_alerts(), on=date(2015, 2, 5))
    rows = [line.split() for line in msg.email_text.splitlines() if line.startswith("  P")]
    assert rows == [
        ["P0007", "labs", "overdue", "2015-02-05", "URGENT"],
        ["P0002", "review", "due", "2015-02-04", "Reminder"],
        ["P0002", "infusion", "due", "2015-02-06", "Info"],
    ]
    assert msg.sms_text == ("Daily summary 2015-02-05: 3 open items for 2 patients "
                            "(1 URGENT). Open the tracker for details.")
    assert (msg.kind, msg.severity, msg.patient_ref, msg.due_on) == (
        "digest", "urgent", "", date(2015, 2, 5))
    for text in (msg.subject, msg.sms_text, msg.email_text):
        assert leaks(text) == []


def test_digest_id_is_stable_for_the_same_set_and_day() -> None:
    day = date(2015, 2, 5)
    items = digest_alerts()
    first = render_digest(items, on=day)
    assert render_digest(list(reversed(items)), on=day).alert_id == first.alert_id
    assert render_digest(items[:2], on=day).alert_id != first.alert_id
    assert render_digest(items, on=date(2015, 2, 6)).alert_id != first.alert_id
    assert first.alert_id.startswith("digest-2015-02-05-")


def test_empty_and_single_digest() -> None:
    empty = render_digest([], on=date(2015, 2, 5))
    assert empty.severity == "info" and "0 open items for 0 patients" in empty.sms_text
    assert "Nothing is open." in empty.email_text
    single = render_digest(digest_alerts()[:1], on=date(2015, 2, 5))
    assert "1 open item for 1 patient." in single.sms_text
    assert single.severity == "info"


def test_digest_of_every_kind_leaks_nothing() -> None:
    items = [alert(k, s, alert_id=i) for i, (k, s) in enumerate(ALL_CASES)]
    msg = render_digest(items, on=DUE, tracker_command="tracker")
    assert len(msg.sms_text) < 160
    for text in (msg.subject, msg.sms_text, msg.email_text):
        assert leaks(text) == []
