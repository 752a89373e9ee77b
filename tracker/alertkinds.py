"""The alert vocabulary both sides share (clinical-rules §6): the alert kinds the due-item
schedule produces (:mod:`tracker.due`), their severities, and which severity each kind can
be raised at. Here, in ``tracker``, because ``tracker`` produces them and ``alerts``
(which may import ``tracker``, not the reverse) routes, labels and sends them.

``StrEnum`` members are plain strings too (``AlertKind.HYPOCALCAEMIA == "hypocalcaemia"``),
so rows, events and TOML keep the same values they always had.
"""

from __future__ import annotations

from enum import StrEnum


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        return SEVERITY_ORDER.index(self)


SEVERITY_ORDER: tuple[Severity, ...] = (Severity.INFO, Severity.WARNING, Severity.URGENT)


class AlertKind(StrEnum):
    """Every kind of due item, hence of clinical alert (the §6 table)."""

    PAMIDRONATE_DOSE_DUE = "pamidronate_dose_due"
    BASELINE_LABS_DUE = "baseline_labs_due"
    POST_DOSE_LABS_DUE = "post_dose_labs_due"
    RENAL_ULTRASOUND_DUE = "renal_ultrasound_due"
    HYPOCALCAEMIA = "hypocalcaemia"
    ANNUAL_CAP_WOULD_BE_EXCEEDED = "annual_cap_would_be_exceeded"
    DOSE_DEVIATION = "dose_deviation"
    CORTICOID_COURSE_LONG = "corticoid_course_long"
    NSAID_REVIEW_DUE = "nsaid_review_due"
    RELAPSE_DETECTED = "relapse_detected"
    REMISSION_REACHED = "remission_reached"
    PAMIDRONATE_CONTRAINDICATED = "pamidronate_contraindicated"
    SUPPLEMENT_SUGGESTED = "supplement_suggested"
    BIOPSY_RECOMMENDED = "biopsy_recommended"


_I, _W, _U = Severity.INFO, Severity.WARNING, Severity.URGENT

#: the severities each kind is raised at (clinical-rules §6; a monitoring item is a
#: warning when due and urgent when overdue, a corticoid course at 1 month and 6 weeks)
KIND_SEVERITIES: dict[AlertKind, frozenset[Severity]] = {
    AlertKind.PAMIDRONATE_DOSE_DUE: frozenset({_I}),
    AlertKind.BASELINE_LABS_DUE: frozenset({_W, _U}),
    AlertKind.POST_DOSE_LABS_DUE: frozenset({_W, _U}),
    AlertKind.RENAL_ULTRASOUND_DUE: frozenset({_W, _U}),
    AlertKind.HYPOCALCAEMIA: frozenset({_U}),
    AlertKind.ANNUAL_CAP_WOULD_BE_EXCEEDED: frozenset({_W}),
    AlertKind.DOSE_DEVIATION: frozenset({_W}),
    AlertKind.CORTICOID_COURSE_LONG: frozenset({_W, _U}),
    AlertKind.NSAID_REVIEW_DUE: frozenset({_I}),
    AlertKind.RELAPSE_DETECTED: frozenset({_W}),
    AlertKind.REMISSION_REACHED: frozenset({_I}),
    AlertKind.PAMIDRONATE_CONTRAINDICATED: frozenset({_U}),
    AlertKind.SUPPLEMENT_SUGGESTED: frozenset({_I}),
    AlertKind.BIOPSY_RECOMMENDED: frozenset({_I}),
}
