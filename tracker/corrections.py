"""Voids and corrections stay coherent, within one import and across imports.

An ``EntryVoided`` or ``EntryCorrected`` line names a target event that must exist, belong
to the same patient, be an importable clinical entry (not a void, a correction or a
system event) and not be voided: not by an earlier import, not earlier in this file. An
event is voided at most once, an enrolment is corrected rather than voided, and a file
corrects an event at most once (two corrections in one file would leave which one wins
to the order of lines). A correction replaces the target's data only: it cannot change
the event's type or patient. Each refusal names the target's current state."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from pydantic import ValidationError
from sqlalchemy import Connection

from events.envelope import RecordedEvent, canonical_json
from events.errors import Problem
from events.lines import problems_from
from events.store import EventStore
from events.vocabulary import EntryCorrected, EntryVoided, data_class_for

_VOID = "EntryVoided"
_FIELD = "data.target_event_id"


@dataclass
class Targets:
    """What the checks know of the targets: the batch's target events and their stored
    voids (read through the import's transaction), and the lines of this file that void
    or correct an event (for the whole file)."""

    events: dict[str, RecordedEvent] = field(default_factory=dict)
    voids: dict[str, RecordedEvent] = field(default_factory=dict)
    voided_here: dict[str, int] = field(default_factory=dict)
    corrected_here: dict[str, int] = field(default_factory=dict)

    def load(self, store: EventStore, target_ids: Iterable[str],
             conn: Connection | None) -> None:
        """Read the targets of the next batch and the voids already stored for them."""
        ids = set(target_ids)
        self.events = store.get_events(ids, conn=conn) if ids else {}
        self.voids = {}
        streams = {e.stream for e in self.events.values()}
        for void in store.read_types(streams, [_VOID], conn=conn) if streams else []:
            target = void.data.target_event_id  # type: ignore[attr-defined]
            if target in ids:
                self.voids.setdefault(target, void)

    def record(self, line: int, data: EntryVoided | EntryCorrected) -> None:
        """A void or correction on ``line`` that passed its checks (it will be written)."""
        here = self.voided_here if isinstance(data, EntryVoided) else self.corrected_here
        here.setdefault(data.target_event_id, line)


def check_target(number: int, patient: str, data: EntryVoided | EntryCorrected,
                 targets: Targets) -> list[Problem]:
    """The problems of one void or correction line (the first that applies)."""
    target_id = data.target_event_id
    target = targets.events.get(target_id)
    voiding = isinstance(data, EntryVoided)
    if target is None:
        return [Problem(number, _FIELD, f"no stored event {target_id}")]
    if target.stream != patient:
        what = ("it cannot be voided from this patient's record" if voiding
                else "a correction cannot move an event to another patient")
        return [Problem(number, _FIELD, f"event {target_id} belongs to another patient: "
                                        f"{what}")]
    if target.type in (_VOID, "EntryCorrected"):
        return [Problem(number, _FIELD,
                        f"a {target.type} cannot itself be voided or corrected")]
    if target.type == "PatientEnrolled" and voiding:
        return [Problem(number, _FIELD,
                        "an enrolment cannot be voided; correct it with EntryCorrected")]
    if not target.data.importable:
        return [Problem(number, _FIELD,
                        f"{target.type} events are written by the system and cannot be changed")]
    consequence = "it cannot be voided again" if voiding else "a voided event cannot be corrected"
    if target_id in targets.voided_here:
        return [Problem(number, _FIELD, f"event {target_id} is voided on line "
                                        f"{targets.voided_here[target_id]} of this file: "
                                        f"{consequence}")]
    void = targets.voids.get(target_id)
    if void is not None:
        return [Problem(number, _FIELD, (
            f"event {target_id} was already voided by {void.recorded_by} on "
            f"{void.recorded_at:%Y-%m-%d %H:%M} UTC (event {void.event_id}): {consequence}"))]
    if voiding:
        return []
    assert isinstance(data, EntryCorrected)
    return _check_correction(number, target, data, targets)


def _check_correction(number: int, target: RecordedEvent, data: EntryCorrected,
                      targets: Targets) -> list[Problem]:
    target_id = target.event_id
    if target_id in targets.corrected_here:
        return [Problem(number, _FIELD, (
            f"event {target_id} is already corrected on line "
            f"{targets.corrected_here[target_id]} of this file: one correction per event "
            "in a file (put every change in that one)"))]
    cls = data_class_for(target.type)
    for key in ("type", "patient"):
        if key in data.data and key not in cls.model_fields:
            return [Problem(number, f"data.data.{key}", (
                f"event {target_id} is a {target.type} of this patient: a correction "
                f"replaces its data and cannot change its {key}"))]
    try:
        cls.model_validate_json(canonical_json(data.data))
    except ValidationError as exc:
        return [replace(p, reason=f"{p.reason} (event {target_id} is a {target.type})")
                for p in problems_from(exc, number, prefix="data.data.")]
    return []
