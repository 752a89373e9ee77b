"""Diagnosis (clinical-rules.md §2): Jansson criteria, diagnostic delay, biopsy advice.

A fold (``evolve`` dispatched on the fact's data type, folded with ``functools.reduce``) that
gathers the evidence, then ``_finish`` resolves each Jansson item at the assessment date.

Each item is True, False or None (unknown). The latest ``DiagnosisAssessed`` (in clinical
order) gives the explicit criteria; an explicit True/False wins over a derivation, an
explicit null falls back to it. Earlier assessments do not carry over **[reading]**.

Derivations (from all facts up to ``at``) **[reading]** — a derivation only proves presence;
absence of a record is not absence of the finding, so most derive True or nothing:
- ``multifocal_lesions``: lesions at 2 or more distinct sites across imaging (any modality
  but renal ultrasound, active or not) and visits' ``active_lesions``. A site is
  (site, side); a lesion without side does not count apart from a sided lesion of the same
  bone. One site derives nothing (the work-up may be incomplete).
- ``sterile_biopsy_inflammation``: True when a biopsy has a sterile culture and
  inflammation, fibrosis or sclerosis; False when biopsies exist and none does.
- ``palmoplantar_psoriasis_pustulosis``: a ``palmoplantar_pustulosis`` comorbidity, or a
  ``psoriasis`` comorbidity whose label says "palmoplantar". Plain psoriasis derives
  nothing: Table 1 asks for *palmoplantar* psoriasis.
- ``course_over_6_months``: True/False, assessment date strictly after onset + 6 months.
- ``hyperostosis``: an imaging lesion finding "hyperostosis" (case-insensitive).
- ``autoimmune_association``: a comorbidity ``ibd``, ``acne_conglobata`` or ``sapho``
  (psoriasis and pustulosis are excluded by Table 1).
- ``osteolytic_or_sclerotic_lesion``, ``good_general_status``, ``normal_labs_raised_esr``:
  not derived (free-text radiology; general status and reference ranges are judgements).

``unknown`` names, in Table 1 order, the unknown items *that could still change the verdict*
(§2): an item is listed only if some assignment of true/false to the unknown items flips
``confirmed`` depending on that item. Table 1's rule is monotone (a true item never
unconfirms), so a confirmed verdict lists none, and an unconfirmed one lists the items of
the smallest sets of unknowns whose truth would confirm it. The contract's example (an
unknown beside a confirmed verdict) follows the older every-unknown reading.

Diagnostic delay: ``(diagnosed_on - symptom_onset)`` in days / 30.4375 (the mean month),
rounded to 3 decimals like every number of the contract. ``delayed`` follows §0: "over
N months" is strictly after ``onset + N months`` by calendar (``add_months``) when the
setting is a whole number of months, else the unrounded day-based figure > the setting
**[reading]**.

Biopsy recommended (seed, Discussion) when no biopsy is recorded by ``at`` and any of: a
single focus (``multifocal_lesions`` False, or not True with exactly one derived site), an
evolution under 6 months at diagnosis (``course_over_6_months`` False), or features
suggesting malignancy (a biopsy with ``malignancy`` true — which, being a biopsy, already
silences the advice — or a ``lymphoma`` comorbidity).

Without any ``DiagnosisAssessed`` the JSON object carries nulls.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import reduce, singledispatch
from itertools import combinations
from typing import Any

from events.vocabulary import (
    BiopsyRecorded,
    ComorbidityRecorded,
    DiagnosisAssessed,
    ImagingRecorded,
    PatientEnrolled,
    VisitRecorded,
)
from tracker.facts import Fact
from tracker.projections.common import Explanation, Finding, add_months, replace
from tracker.protocol import Protocol

MAJOR = ("multifocal_lesions", "osteolytic_or_sclerotic_lesion",
         "sterile_biopsy_inflammation", "palmoplantar_psoriasis_pustulosis")
MINOR = ("good_general_status", "course_over_6_months", "normal_labs_raised_esr",
         "hyperostosis", "autoimmune_association")
ITEMS = MAJOR + MINOR
AUTOIMMUNE = frozenset({"ibd", "acne_conglobata", "sapho"})
BIOPSY_SIGNS = frozenset({"inflammation", "fibrosis", "sclerosis"})
DAYS_PER_MONTH = 30.4375
COURSE_MONTHS = 6


@dataclass(frozen=True, slots=True)
class Site:
    site: str
    side: str | None
    event_id: str


@dataclass(frozen=True, slots=True)
class DiagnosisFold:
    symptom_onset: date | None = None
    assessment: DiagnosisAssessed | None = None
    assessment_event_id: str | None = None
    assessment_by: str = ""
    sites: tuple[Site, ...] = ()
    biopsies: tuple[tuple[BiopsyRecorded, str], ...] = ()
    comorbidities: tuple[tuple[ComorbidityRecorded, str], ...] = ()
    hyperostosis: tuple[str, ...] = ()  # event ids of imaging with that finding


def evolve(state: DiagnosisFold, fact: Fact) -> DiagnosisFold:
    return _apply(fact.data, state, fact)


@singledispatch
def _apply(data: Any, state: DiagnosisFold, fact: Fact) -> DiagnosisFold:
    return state


@_apply.register
def _enrolled(data: PatientEnrolled, state: DiagnosisFold, fact: Fact) -> DiagnosisFold:
    return replace(state, symptom_onset=data.symptom_onset)


@_apply.register
def _assessed(data: DiagnosisAssessed, state: DiagnosisFold, fact: Fact) -> DiagnosisFold:
    return replace(state, assessment=data, assessment_event_id=fact.event_id,
                   assessment_by=fact.recorded_by)


@_apply.register
def _visit(data: VisitRecorded, state: DiagnosisFold, fact: Fact) -> DiagnosisFold:
    new = tuple(Site(x.site, x.side, fact.event_id) for x in data.active_lesions)
    return replace(state, sites=state.sites + new) if new else state


@_apply.register
def _imaging(data: ImagingRecorded, state: DiagnosisFold, fact: Fact) -> DiagnosisFold:
    if data.modality == "renal_ultrasound":
        return state
    new = tuple(Site(x.site, x.side, fact.event_id) for x in data.lesions)
    hyper = any(f.strip().lower() == "hyperostosis" for x in data.lesions for f in x.findings)
    return replace(state, sites=state.sites + new,
                   hyperostosis=state.hyperostosis + ((fact.event_id,) if hyper else ()))


@_apply.register
def _biopsy(data: BiopsyRecorded, state: DiagnosisFold, fact: Fact) -> DiagnosisFold:
    return replace(state, biopsies=(*state.biopsies, (data, fact.event_id)))


@_apply.register
def _comorbidity(data: ComorbidityRecorded, state: DiagnosisFold,
                 fact: Fact) -> DiagnosisFold:
    return replace(state, comorbidities=(*state.comorbidities, (data, fact.event_id)))


def distinct_sites(sites: tuple[Site, ...]) -> list[tuple[str, str | None]]:
    """Distinct (site, side); a side-less lesion counts only for a bone with no sided one."""
    sided = {(s.site, s.side) for s in sites if s.side is not None}
    bones_with_side = {site for site, _ in sided}
    unsided = {(s.site, None) for s in sites if s.side is None and s.site not in bones_with_side}
    return sorted(sided | unsided, key=lambda x: (x[0], x[1] or ""))


@dataclass(frozen=True)
class DiagnosisResult:
    assessed: bool
    diagnosed_on: date | None
    items: dict[str, bool | None]
    sources: dict[str, str]  # item -> "assessment" | "derived" | "none"
    major: int
    minor: int
    confirmed: bool
    unknown: list[str]  # only the items that could still change the verdict
    diagnostic_delay_months: float | None
    delayed: bool | None
    biopsy_recommended: bool | None
    findings: list[Finding]
    explanations: list[Explanation]

    def as_json(self) -> dict[str, Any]:
        """The contract's ``diagnosis`` object (interchange.md); nulls when not assessed."""
        if not self.assessed:
            return {"jansson": None, "diagnostic_delay_months": None, "delayed": None,
                    "biopsy_recommended": None}
        return {
            "jansson": {"major": self.major, "minor": self.minor,
                        "confirmed": self.confirmed, "unknown": list(self.unknown)},
            "diagnostic_delay_months": self.diagnostic_delay_months,
            "delayed": self.delayed,
            "biopsy_recommended": self.biopsy_recommended,
        }


def confirmed(major: int, minor: int) -> bool:
    """Table 1: two major, or one major and three minor criteria."""
    return major >= 2 or (major >= 1 and minor >= 3)


def diagnosis(facts: list[Fact], at: date, protocol: Protocol) -> DiagnosisResult:
    """Jansson criteria, delay and biopsy advice from facts with ``on <= at``, in order."""
    return _finish(reduce(evolve, facts, DiagnosisFold()), at, protocol)


def _derive(s: DiagnosisFold, ref: date) -> tuple[dict[str, bool | None], dict[str, str]]:
    derived: dict[str, bool | None] = dict.fromkeys(ITEMS)
    why: dict[str, str] = {}
    sites = distinct_sites(s.sites)
    if len(sites) >= 2:
        derived["multifocal_lesions"] = True
        why["multifocal_lesions"] = "lesions at " + ", ".join(
            f"{a} {b}" if b else a for a, b in sites)
    if s.biopsies:
        good = [eid for b, eid in s.biopsies
                if b.culture_sterile and BIOPSY_SIGNS.intersection(b.findings)]
        derived["sterile_biopsy_inflammation"] = bool(good)
        why["sterile_biopsy_inflammation"] = (
            "a biopsy with sterile culture and inflammation, fibrosis or sclerosis" if good
            else "no recorded biopsy is sterile with inflammation, fibrosis or sclerosis")
    for c, _ in s.comorbidities:
        if c.condition == "palmoplantar_pustulosis" or (
                c.condition == "psoriasis" and "palmoplantar" in (c.label or "").lower()):
            derived["palmoplantar_psoriasis_pustulosis"] = True
            why["palmoplantar_psoriasis_pustulosis"] = f"comorbidity {c.condition}"
        if c.condition in AUTOIMMUNE:
            derived["autoimmune_association"] = True
            why["autoimmune_association"] = f"comorbidity {c.condition}"
    if s.symptom_onset is not None:
        limit = add_months(s.symptom_onset, COURSE_MONTHS)
        derived["course_over_6_months"] = ref > limit
        why["course_over_6_months"] = (
            f"onset {s.symptom_onset.isoformat()}, assessed {ref.isoformat()}: "
            f"{'after' if ref > limit else 'not after'} {limit.isoformat()}")
    if s.hyperostosis:
        derived["hyperostosis"] = True
        why["hyperostosis"] = "an imaging lesion finding of hyperostosis"
    return derived, why


def _pivotal(items: dict[str, bool | None]) -> list[str]:
    """Unknown items that could still change the verdict (none once confirmed): those in
    a minimal set of unknowns whose truth would confirm it."""
    major = sum(1 for k in MAJOR if items[k])
    minor = sum(1 for k in MINOR if items[k])
    if confirmed(major, minor):
        return []
    unknown = [k for k in ITEMS if items[k] is None]
    out: set[str] = set()
    for n in range(1, len(unknown) + 1):
        for subset in combinations(unknown, n):
            extra_major = sum(1 for k in subset if k in MAJOR)
            if confirmed(major + extra_major, minor + len(subset) - extra_major) and all(
                    not confirmed(major + extra_major - (k in MAJOR),
                                  minor + len(subset) - extra_major - (k in MINOR))
                    for k in subset):
                out.update(subset)
    return [k for k in unknown if k in out]


def _finish(s: DiagnosisFold, at: date, protocol: Protocol) -> DiagnosisResult:
    a = s.assessment
    ref = a.diagnosed_on if a is not None else at
    derived, why = _derive(s, ref)
    items: dict[str, bool | None] = {}
    sources: dict[str, str] = {}
    explanations: list[Explanation] = []
    for k in ITEMS:
        explicit = getattr(a.criteria, k) if a is not None else None
        if explicit is not None:
            items[k], sources[k] = explicit, "assessment"
            text = f"{k}: {explicit} by the assessment of {ref.isoformat()} " \
                   f"({s.assessment_by})"
            if derived[k] is not None and derived[k] != explicit:
                text += f"; the record would derive {derived[k]} ({why[k]})"
        elif derived[k] is not None:
            items[k], sources[k] = derived[k], "derived"
            text = f"{k}: {derived[k]}, derived: {why[k]}"
        else:
            items[k], sources[k] = None, "none"
            text = f"{k}: unknown"
        explanations.append(Explanation(f"jansson:{k}", text))
    major = sum(1 for k in MAJOR if items[k])
    minor = sum(1 for k in MINOR if items[k])
    verdict = confirmed(major, minor)
    explanations.append(Explanation(
        "jansson", f"{major} major and {minor} minor criteria: "
                   f"{'confirmed' if verdict else 'not confirmed'} "
                   f"(needs 2 major, or 1 major and 3 minor)"))

    delay: float | None = None
    delayed: bool | None = None
    biopsy: bool | None = None
    findings: list[Finding] = []
    if a is not None:
        if s.symptom_onset is not None:
            days = (a.diagnosed_on - s.symptom_onset).days
            delay = round(days / DAYS_PER_MONTH, 3)  # interchange: numbers to 3 decimals
            limit_months = protocol.diagnostic_delay_months
            if float(limit_months).is_integer():
                delayed = a.diagnosed_on > add_months(s.symptom_onset, int(limit_months))
            else:
                delayed = days / DAYS_PER_MONTH > limit_months
            explanations.append(Explanation(
                "diagnostic_delay",
                f"symptom onset {s.symptom_onset.isoformat()} to diagnosis "
                f"{a.diagnosed_on.isoformat()}: {days} days = {delay} months; "
                f"{'over' if delayed else 'not over'} {limit_months:g} months",
                (s.assessment_event_id or "",)))
            if delayed:
                findings.append(Finding("diagnostic_delay", a.diagnosed_on,
                                        s.assessment_event_id, f"{delay} months"))
        biopsy, reasons = _biopsy_advice(s, items)
        explanations.append(Explanation("biopsy_recommended", reasons))
        if biopsy:
            findings.append(Finding("biopsy_recommended", a.diagnosed_on,
                                    s.assessment_event_id, reasons))
    return DiagnosisResult(
        assessed=a is not None, diagnosed_on=a.diagnosed_on if a else None, items=items,
        sources=sources, major=major, minor=minor, confirmed=verdict,
        unknown=_pivotal(items),
        diagnostic_delay_months=delay, delayed=delayed, biopsy_recommended=biopsy,
        findings=findings, explanations=explanations)


def _biopsy_advice(s: DiagnosisFold, items: dict[str, bool | None]) -> tuple[bool, str]:
    reasons: list[str] = []
    n_sites = len(distinct_sites(s.sites))
    if items["multifocal_lesions"] is False or (
            items["multifocal_lesions"] is None and n_sites == 1):
        reasons.append("a single focus")
    if items["course_over_6_months"] is False:
        reasons.append("an evolution under 6 months")
    if any(b.malignancy for b, _ in s.biopsies) or any(
            c.condition == "lymphoma" for c, _ in s.comorbidities):
        reasons.append("features suggesting malignancy")
    if s.biopsies:
        return False, "biopsy not recommended: a biopsy is already recorded"
    if reasons:
        return True, "biopsy recommended: " + ", ".join(reasons)
    return False, "biopsy not recommended: multifocal, evolution over 6 months, " \
                  "no features of malignancy (or not known)"
