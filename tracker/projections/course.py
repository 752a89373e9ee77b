"""Disease course (clinical-rules.md §1): activity, relapse, remission.

A fold: ``evolve(state, fact)`` dispatches on the fact's data type (functools.singledispatch,
as in eventsourcing's ``examples/aggregate6``), ``functools.reduce`` folds the facts (already
filtered to ``occurred_on <= at`` and in clinical order), and ``_finish`` adds what depends on
the evaluation date ``at`` (remission needs "over 6 months" *at* ``at``).

Observations:
- ``VisitRecorded``: symptomatic when pain, swelling or functional limitation (fever alone is
  not); active when symptomatic, ``physician_global_active`` or at least one active lesion.
- ``ImagingRecorded`` of modality mri, whole_body_mri or bone_scintigraphy with at least one
  lesion ``active: true``: active. Imaging never documents inactivity, so imaging without an
  active lesion (and any other modality) is not an observation at all.

**[reading] several observations on one clinical day.** A day is one clinical unit: it is
active when any observation that day is active (activity wins), and symptomatic when any
visit that day is symptomatic. Consequently a non-symptomatic visit on the same day as a
symptomatic one documents no absence, a symptomatic visit is a relapse only when the
absence was documented on an *earlier* day, and active imaging on a day that also has a
symptomatic visit is never silent (whatever the order within the day).

**[reading] the start ``b`` of a symptom-free stretch** is the first non-symptomatic visit
after the latest symptomatic visit: its ``symptom_free_since`` when given, else its date;
``symptom_free_since`` is clamped to lie between the latest symptomatic visit and the visit
itself (absence cannot begin before symptoms were last seen, nor after it is documented).

**[reading] silent radiological activity** needs a documented stretch (``b``) and no
symptomatic visit since; it does not need an earlier symptomatic visit (a patient whose
symptoms predate the record still has a silent flare). It resets the remission clock, is
not a relapse, and starts a new, non-relapse episode (so ``in_relapse`` is false after it).

**[reading] episodes.** An episode begins with the first symptomatic visit (onset), with a
relapse, with silent radiological activity, or with any activity after remission had been
reached; ``in_relapse`` is true when the state is active and the current episode began with
a relapse.

**[reading]** Without any active observation and without ``symptom_onset`` there is no
``last_activity``; the state then stays ``inactive`` (never ``remission``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import reduce, singledispatch
from typing import Any, Literal

from events.vocabulary import ImagingRecorded, PatientEnrolled, VisitRecorded
from tracker.facts import Fact
from tracker.projections.common import Explanation, Finding, add_months, replace
from tracker.protocol import Protocol

ACTIVITY_MODALITIES = frozenset({"mri", "whole_body_mri", "bone_scintigraphy"})

State = Literal["unknown", "active", "inactive", "remission"]
Episode = Literal["none", "onset", "relapse", "silent", "after_remission"]


@dataclass(frozen=True, slots=True)
class Mark:
    """One observation, as the explanations cite it."""

    on: date
    event_id: str
    source: str  # "visit by dr.ruiz", "mri by dr.vega"
    why: str  # "pain, swelling", "no CNO symptoms"


@dataclass(frozen=True, slots=True)
class Relapse:
    on: date
    event_id: str
    absence_from: date  # b
    absence_visit: Mark  # the visit that documented the absence


@dataclass(frozen=True, slots=True)
class CourseFold:
    """The fold's running state (no time-dependent conclusions yet)."""

    gap_months: int = 1
    remission_months: int = 6
    symptom_onset: date | None = None
    last_symptomatic: Mark | None = None
    absence_from: date | None = None  # b of the current symptom-free stretch
    absence_visit: Mark | None = None
    latest_day: date | None = None
    latest_day_active: bool = False
    latest: Mark | None = None  # the observation that decides the latest day's state
    last_active: Mark | None = None
    relapses: tuple[Relapse, ...] = ()
    silent: tuple[Mark, ...] = ()
    episode: Episode = "none"


# -- the fold ------------------------------------------------------------------------------

def evolve(state: CourseFold, fact: Fact) -> CourseFold:
    return _apply(fact.data, state, fact)


@singledispatch
def _apply(data: Any, state: CourseFold, fact: Fact) -> CourseFold:
    return state


@_apply.register
def _enrolled(data: PatientEnrolled, state: CourseFold, fact: Fact) -> CourseFold:
    return replace(state, symptom_onset=data.symptom_onset)


@_apply.register
def _visit(data: VisitRecorded, state: CourseFold, fact: Fact) -> CourseFold:
    reasons = _visit_reasons(data)
    active = bool(reasons)
    mark = Mark(fact.on, fact.event_id, f"visit by {fact.recorded_by}",
                ", ".join(reasons) or "no CNO symptoms, no activity")
    after_remission = _remission_reached_before(state, fact.on) if active else False
    if data.symptomatic:
        relapse = _relapse(state, mark)
        episode: Episode = state.episode
        if relapse is not None:
            episode = "relapse"
        elif state.last_symptomatic is None:
            episode = "onset"
        elif after_remission:
            episode = "after_remission"
        state = replace(
            state, last_symptomatic=mark, absence_from=None, absence_visit=None,
            relapses=state.relapses + ((relapse,) if relapse else ()),
            silent=tuple(m for m in state.silent if m.on != fact.on), episode=episode)
    else:
        if state.absence_from is None and (
                state.last_symptomatic is None or fact.on > state.last_symptomatic.on):
            state = replace(state, absence_from=_absence_start(state, data, fact.on),
                            absence_visit=mark)
        if after_remission:
            state = replace(state, episode="after_remission")
    return _observe(state, mark, active)


@_apply.register
def _imaging(data: ImagingRecorded, state: CourseFold, fact: Fact) -> CourseFold:
    if data.modality not in ACTIVITY_MODALITIES:
        return state
    active = [lesion for lesion in data.lesions if lesion.active]
    if not active:
        return state  # imaging never documents inactivity
    where = ", ".join(f"{x.site} {x.side}" if x.side else x.site for x in active)
    mark = Mark(fact.on, fact.event_id, f"{data.modality} by {fact.recorded_by}",
                f"active lesion{'s' if len(active) > 1 else ''} at {where}")
    after_remission = _remission_reached_before(state, fact.on)
    # a symptomatic visit earlier today has cleared ``absence_from``; a later one today
    # removes this date from ``silent`` again (see _visit)
    if state.absence_from is not None \
            and fact.on > add_months(state.absence_from, state.gap_months):
        if all(m.on != fact.on for m in state.silent):
            state = replace(state, silent=(*state.silent, mark))
        state = replace(state, episode="silent")
    elif after_remission:
        state = replace(state, episode="after_remission")
    return _observe(state, mark, True)


def _visit_reasons(v: VisitRecorded) -> list[str]:
    reasons = [name.replace("_", " ") for name in ("pain", "swelling", "functional_limitation")
               if getattr(v, name)]
    if v.physician_global_active:
        reasons.append("physician global assessment active")
    if v.active_lesions:
        n = len(v.active_lesions)
        reasons.append(f"{n} active lesion{'s' if n > 1 else ''}")
    return reasons


def _absence_start(state: CourseFold, v: VisitRecorded, on: date) -> date:
    b = v.symptom_free_since or on
    b = min(b, on)
    if state.last_symptomatic is not None:
        b = max(b, state.last_symptomatic.on)
    return b


def _relapse(state: CourseFold, mark: Mark) -> Relapse | None:
    if state.last_symptomatic is None or state.absence_from is None \
            or state.absence_visit is None or state.absence_visit.on >= mark.on:
        return None
    if mark.on > add_months(state.absence_from, state.gap_months):
        return Relapse(mark.on, mark.event_id, state.absence_from, state.absence_visit)
    return None


def _last_activity(state: CourseFold) -> date | None:
    return state.last_active.on if state.last_active is not None else state.symptom_onset


def _remission_reached_before(state: CourseFold, on: date) -> bool:
    """Was the state ``remission`` on the day before ``on`` (as far as the fold knows)?"""
    last = _last_activity(state)
    return (state.latest_day is not None and state.latest_day < on
            and not state.latest_day_active and last is not None
            and on - timedelta(days=1) > add_months(last, state.remission_months))


def _observe(state: CourseFold, mark: Mark, active: bool) -> CourseFold:
    if state.latest_day is None or mark.on > state.latest_day:
        state = replace(state, latest_day=mark.on, latest_day_active=active, latest=mark)
    elif mark.on == state.latest_day and (active or not state.latest_day_active):
        state = replace(state, latest_day_active=True if active else state.latest_day_active,
                        latest=mark)
    if active and (state.last_active is None or mark.on >= state.last_active.on):
        state = replace(state, last_active=mark)
    return state


# -- the result ------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiseaseCourse:
    state: State
    in_relapse: bool
    relapse_count: int
    relapse_dates: list[date]
    last_activity: date | None
    remission_since: date | None
    silent_radiological_activity: list[date]
    findings: list[Finding]
    explanations: list[Explanation]

    def as_json(self, on_treatment: bool) -> dict[str, Any]:
        """The contract's ``disease`` object (interchange.md)."""
        return {
            "state": self.state,
            "in_relapse": self.in_relapse,
            "relapse_count": self.relapse_count,
            "relapse_dates": [x.isoformat() for x in self.relapse_dates],
            "last_activity": _iso(self.last_activity),
            "remission_since": _iso(self.remission_since),
            "on_treatment": on_treatment,
            "silent_radiological_activity": [
                x.isoformat() for x in self.silent_radiological_activity],
        }


def disease_course(facts: list[Fact], at: date, protocol: Protocol) -> DiseaseCourse:
    """The disease course at clinical date ``at`` from facts with ``on <= at``, in order."""
    start = CourseFold(gap_months=protocol.relapse_gap_months,
                       remission_months=protocol.remission_months)
    return _finish(reduce(evolve, facts, start), at, protocol)


def _finish(s: CourseFold, at: date, protocol: Protocol) -> DiseaseCourse:
    months = protocol.remission_months
    last = _last_activity(s)
    state: State
    remission_since: date | None = None
    if s.latest_day is None:
        state = "unknown"
    elif s.latest_day_active:
        state = "active"
    elif last is not None and at > add_months(last, months):
        state = "remission"
        remission_since = add_months(last, months) + timedelta(days=1)
    else:
        state = "inactive"

    findings = [Finding("relapse", r.on, r.event_id, "") for r in s.relapses]
    if remission_since is not None:
        findings.append(Finding("remission_reached", remission_since,
                                s.last_active.event_id if s.last_active else None, ""))
    return DiseaseCourse(
        state=state, in_relapse=state == "active" and s.episode == "relapse",
        relapse_count=len(s.relapses), relapse_dates=[r.on for r in s.relapses],
        last_activity=last, remission_since=remission_since,
        silent_radiological_activity=[m.on for m in s.silent],
        findings=findings, explanations=_explain(s, state, last, remission_since, months))


def _explain(s: CourseFold, state: State, last: date | None, since: date | None,
             months: int) -> list[Explanation]:
    out: list[Explanation] = []
    activity = (f"{last.isoformat()} ({s.last_active.source}: {s.last_active.why})"
                if s.last_active and last else
                f"{last.isoformat()} (symptom onset from enrolment)" if last else "none")
    latest = s.latest
    if state == "unknown" or latest is None:
        out.append(Explanation("state", "unknown: no visit and no active MRI or bone "
                                        "scintigraphy recorded"))
    elif state == "active":
        text = f"active: latest observation {latest.on.isoformat()} ({latest.source}: " \
               f"{latest.why})"
        if s.episode == "relapse" and s.relapses:
            text += f"; current episode began with the relapse of " \
                    f"{s.relapses[-1].on.isoformat()}"
        out.append(Explanation("state", text, (latest.event_id,)))
    elif state == "inactive":
        text = f"inactive: latest observation {latest.on.isoformat()} ({latest.source}) " \
               f"shows no activity; last activity {activity}"
        if last is not None:
            text += f"; remission after {add_months(last, months).isoformat()}"
        out.append(Explanation("state", text, (latest.event_id,)))
    else:
        assert since is not None
        ids = (s.last_active.event_id, latest.event_id) if s.last_active else (latest.event_id,)
        out.append(Explanation(
            "state", f"remission since {since.isoformat()}: last activity {activity}, "
                     f"no activity for over {months} months (latest observation "
                     f"{latest.on.isoformat()}, {latest.source}: {latest.why})", ids))
    if last is not None:
        out.append(Explanation("last_activity", f"last activity {activity}",
                               (s.last_active.event_id,) if s.last_active else ()))
    if since is not None and last is not None:
        out.append(Explanation(
            "remission_since", f"remission since {since.isoformat()}: last activity {activity}, "
                               f"no activity for over {months} months "
                               f"({last.isoformat()} + {months} months + 1 day)",
            (s.last_active.event_id,) if s.last_active else ()))
    for r in s.relapses:
        out.append(Explanation(
            f"relapse:{r.on.isoformat()}",
            f"relapse on {r.on.isoformat()}: CNO symptoms again after their absence since "
            f"{r.absence_from.isoformat()} (documented at the {r.absence_visit.source} of "
            f"{r.absence_visit.on.isoformat()}), over {s.gap_months} month"
            f"{'s' if s.gap_months > 1 else ''}", (r.absence_visit.event_id, r.event_id)))
    for m in s.silent:
        out.append(Explanation(
            f"silent_radiological_activity:{m.on.isoformat()}",
            f"silent radiological activity on {m.on.isoformat()} ({m.source}: {m.why}) "
            f"with no CNO symptoms for over {s.gap_months} month"
            f"{'s' if s.gap_months > 1 else ''}: activity, not a relapse", (m.event_id,)))
    return out


def _iso(x: date | None) -> str | None:
    return x.isoformat() if x is not None else None
