"""What FHIR and HL7 share once a message is mapped: identity, versions, the skip report,
and the append through ``tracker.importing.import_lines`` (the JSON-lines import's own
validation and store path).

A mapper turns a bundle or message into :class:`Subject` s (the identifiers a source gives
a patient) and :class:`Item` s (one candidate event each, with where it came from). Here

* each subject is looked up in the link table; an unseen one is enrolled under a fresh
  reference with ``enrol``, else its items are skipped and counted (never stored);
* each item's source key (a keyed hash of the resource or result id) decides whether it is
  new (recorded), the same again (a duplicate), a later version (``EntryCorrected``) or
  entered in error (``EntryVoided``);
* the whole batch goes to ``import_lines`` at once: all or nothing.

Problems name the entry (``entry 3 Observation/abc``) and the source element path, never
the value of an identifier, a name or any other demographic."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import orjson

from events.errors import Problem
from events.store import EventStore
from tracker.clock import Clock
from tracker.errors import ImportRefused
from tracker.importing import Known, import_lines
from tracker.interop.identity import LinkTable, fresh_reference
from tracker.protocol import Protocol


@dataclass
class Subject:
    """A patient as the source names it. ``identifiers`` are (system, value) pairs that may
    be linked (national ids are left out by the mappers); demographics only for enrolment."""

    identifiers: list[tuple[str, str]]
    birth_date: date | None = None
    sex: str = "unknown"
    where: str = "patient"
    key: str | None = None  # a keyed hash of the source's Patient resource, if any
    #: from our own export's extensions (a round trip keeps the same status)
    symptom_onset: date | None = None
    first_consultation: date | None = None
    enrolled_on: date | None = None


@dataclass
class Item:
    subject: int                      # index into the subjects
    where: str                        # "entry 3 Observation/abc" or "OBX 2"
    event_type: str
    occurred_at: str
    data: dict[str, Any]
    key: str                          # the source key: a keyed hash, stable across versions
    action: Literal["record", "void"] = "record"
    paths: dict[str, str] = field(default_factory=dict)  # event field -> source path


@dataclass
class Skips:
    """The skipped-resource report: counts by (kind, code, reason)."""

    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def add(self, kind: str, code: str, reason: str, n: int = 1) -> None:
        if n:
            self.counts[(kind, code, reason)] += n

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        return [f"skipped {n}: {kind} {code} ({reason})".replace("  ", " ")
                for (kind, code, reason), n in sorted(self.counts.items())]

    def as_json(self) -> list[dict[str, Any]]:
        return [{"kind": k, "code": c, "reason": r, "count": n}
                for (k, c, r), n in sorted(self.counts.items())]


@dataclass
class Outcome:
    written: int = 0
    duplicates: int = 0
    corrections: int = 0
    voids: int = 0
    enrolled: list[str] = field(default_factory=list)
    patients: set[str] = field(default_factory=set)
    skips: Skips = field(default_factory=Skips)

    def summary(self, what: str) -> list[str]:
        out = [f"{what}: wrote {self.written} event(s) for {len(self.patients)} patient(s) "
               f"({self.corrections} correction(s), {self.voids} void(s)), "
               f"skipped {self.duplicates} duplicate(s) and {self.skips.total} item(s)"]
        out += [f"enrolled {ref} (new reference)" for ref in self.enrolled]
        out += self.skips.lines()
        return out


class Ingest:
    """One append of mapped subjects and items (one bundle, one message)."""

    def __init__(self, store: EventStore, links: LinkTable, *, clock: Clock,
                 protocol: Protocol, enrol: bool, recorded_by: str) -> None:
        self.store, self.links, self.clock, self.protocol = store, links, clock, protocol
        self.enrol, self.recorded_by = enrol, recorded_by

    def key(self, text: str) -> str:
        return "x:" + self.links.key.digest(text, purpose="idempotency")[:40]

    def run(self, subjects: Sequence[Subject], items: Sequence[Item], skips: Skips, *,
            strict: bool = False) -> Outcome:
        outcome = Outcome(skips=skips)
        refs, new_links, lines, wheres, versions = self._identities(subjects, items, outcome)
        try:
            lines_items, looked_up, stored = self._versions(items, refs, outcome)
            for item, line in lines_items:
                lines.append(line)
                wheres.append(item)
            if strict and outcome.skips.total:
                raise ImportRefused([Problem(None, f"{k} {c}".strip(), f"skipped: {r} (--strict)")
                                     for (k, c, r) in sorted(outcome.skips.counts)])
            # what was just read here is not read again before the write transaction
            # (which still checks the heads and keys against another writer)
            known = Known(versions=versions, looked_up=frozenset(looked_up), keys=stored)
            report = import_lines([orjson.dumps(x) for x in lines], self.store,
                                  clock=self.clock, protocol=self.protocol,
                                  default_by=self.recorded_by, known=known)
        except ImportRefused as exc:
            self.links.unlink_lookups(new_links)
            raise ImportRefused([_locate(p, wheres) for p in exc.problems]) from None
        except BaseException:
            self.links.unlink_lookups(new_links)
            raise
        outcome.written = report.written
        outcome.duplicates += report.duplicates
        outcome.patients = report.patients
        return outcome

    # -------------------------------------------------------------- identities
    def _identities(self, subjects: Sequence[Subject], items: Sequence[Item],
                    outcome: Outcome) -> tuple[dict[int, str], list[str],
                                               list[dict[str, Any]], list[Item | Subject],
                                               dict[str, int]]:
        """References, links added, enrolment lines and their sources, and the stream
        version of every reference (0 for a fresh one)."""
        linked = self.links.find_with_versions(p for s in subjects for p in s.identifiers)
        found = {p: ref for p, (ref, _) in linked.items()}
        known_versions = dict(linked.values())
        by_subject: dict[int, list[Item]] = defaultdict(list)
        for item in items:
            by_subject[item.subject].append(item)
        refs: dict[int, str] = {}
        now = self.clock.now()
        assigned: dict[tuple[str, str], str] = {}
        pending_links: dict[tuple[str, str], str] = {}
        for index, subject in enumerate(subjects):
            ref = next((found[p] for p in subject.identifiers if p in found), None)
            # the same patient twice in one batch (two messages, a logical reference)
            ref = ref or next((assigned[p] for p in subject.identifiers if p in assigned), None)
            if ref is None:
                if not self.enrol or not subject.identifiers:
                    reason = ("no identifier to link" if not subject.identifiers
                              else "patient not linked (use --enrol or `patients link`)")
                    n = len(by_subject.get(index, ()))
                    outcome.skips.add("Patient", "", reason, n + (subject.key is not None))
                    continue
                ref = fresh_reference()
                outcome.enrolled.append(ref)
            refs[index] = ref
            assigned.update(dict.fromkeys(subject.identifiers, ref))
            for p in subject.identifiers:
                if p not in found:
                    pending_links[p] = ref
                    found[p] = ref
        new_links = self.links.add_unlinked(pending_links, now)
        lines: list[dict[str, Any]] = []
        wheres: list[Item | Subject] = []
        # a fresh reference has no stream yet: only linked patients are looked up
        fresh = set(outcome.enrolled)
        enrolled = self.store.stream_versions(
            {r for r in refs.values() if r not in fresh and r not in known_versions})
        enrolled |= {r: v for r, v in known_versions.items() if v}
        versions = {r: enrolled.get(r, 0) for r in refs.values()}
        indices: dict[str, list[int]] = defaultdict(list)
        for i, r in refs.items():
            indices[r].append(i)
        for ref, mine in indices.items():
            if enrolled.get(ref, 0) > 0:
                outcome.skips.add("Patient", "", "already enrolled",
                                  sum(1 for i in mine if subjects[i].key is not None))
                continue
            if not any(i in by_subject or subjects[i].birth_date for i in mine):
                continue
            subject = next((subjects[i] for i in mine if subjects[i].birth_date), subjects[mine[0]])
            if subject.birth_date is None:
                self.links.unlink_lookups(new_links)
                raise ImportRefused([Problem(None, f"{subject.where} birth date",
                                             "required to enrol a patient")])
            days = [i.occurred_at[:10] for n in mine for i in by_subject.get(n, ())]
            today = now.astimezone(self.protocol.zone).date().isoformat()
            lines.append({
                "type": "PatientEnrolled", "patient": ref,
                # [reading] an enrolment at the door is dated on the patient's first
                # clinical date in the batch (every imported fact falls inside the
                # record), else today
                "occurred_at": (subject.enrolled_on.isoformat() if subject.enrolled_on
                                else min(days) if days else today),
                "idempotency_key": self.key(f"enrol|{ref}"),
                "data": {"birth_date": subject.birth_date.isoformat(), "sex": subject.sex,
                         **{k: v.isoformat() for k, v in (
                             ("symptom_onset", subject.symptom_onset),
                             ("first_consultation", subject.first_consultation)) if v}},
            })
            wheres.append(subject)
        return refs, new_links, lines, wheres, versions

    # -------------------------------------------------------------- versions
    def _versions(self, items: Sequence[Item], refs: dict[int, str],
                  outcome: Outcome) -> tuple[list[tuple[Item, dict[str, Any]]], set[str],
                                             dict[str, tuple[str, str, str]]]:
        """The lines to write, and the idempotency keys looked up with what was stored."""
        # [reading] a result sent twice in one batch (a final and its correction in one
        # file) is stored once, as its last version: a correction can only point at an
        # event already stored, and the batch is one all-or-nothing append
        last = {(refs[i.subject], i.key): n for n, i in enumerate(items) if i.subject in refs}
        mine = [i for n, i in enumerate(items)
                if i.subject in refs and last[(refs[i.subject], i.key)] == n]
        superseded = sum(1 for i in items if i.subject in refs) - len(mine)
        if superseded:
            outcome.skips.add("result", "", "superseded later in the same batch", superseded)
        self._stored_weights(mine, refs)
        looked_up = {self.key(i.key) for i in mine}
        stored = self.store.find_idempotency_keys(looked_up)
        originals = self.store.get_events(v[1] for v in stored.values())
        out: list[tuple[Item, dict[str, Any]]] = []
        for item in mine:
            ref = refs[item.subject]
            base = self.key(item.key)
            line: dict[str, Any] = {"patient": ref, "occurred_at": item.occurred_at}
            earlier = stored.get(base)
            if item.action == "void":
                if earlier is None:
                    outcome.skips.add(item.event_type, "", "entered-in-error, nothing stored")
                    continue
                line.update(type="EntryVoided", idempotency_key=self.key(f"{item.key}|void"),
                            data={"target_event_id": earlier[1],
                                  "reason": "entered in error at the source"})
                outcome.voids += 1
            elif earlier is None:
                line.update(type=item.event_type, idempotency_key=base, data=item.data)
            else:
                original = originals.get(earlier[1])
                if original is not None and _same(original, item):
                    outcome.duplicates += 1
                    continue
                digest = orjson.dumps([item.occurred_at, item.data],
                                      option=orjson.OPT_SORT_KEYS).decode()
                line.update(type="EntryCorrected",
                            idempotency_key=self.key(f"{item.key}|{digest}"),
                            data={"target_event_id": earlier[1], "data": item.data,
                                  "reason": "corrected at the source"})
                outcome.corrections += 1
            out.append((item, line))
        return out, looked_up, stored


    def _stored_weights(self, items: list[Item], refs: dict[int, str]) -> None:
        """An infusion the source gave no body weight for takes the last weight already
        in the record before it (a visit's or an earlier infusion's); none is an error."""
        missing = [i for i in items if i.event_type == "InfusionAdministered"
                   and i.action == "record" and "weight_kg" not in i.data]
        problems = []
        for item in missing:
            at = _instant(item.occurred_at, self.protocol)
            best: tuple[datetime, float] | None = None
            for e in self.store.read_stream(refs[item.subject]):
                kg = getattr(e.data, "weight_kg", None)
                if kg is not None and e.occurred_at <= at and (best is None or
                                                               best[0] <= e.occurred_at):
                    best = (e.occurred_at, float(kg))
            if best is None:
                problems.append(Problem(None, f"{item.where} (body weight)",
                                        "no body-weight observation before this "
                                        "administration, in the message or the record"))
            else:
                item.data["weight_kg"] = best[1]
        if problems:
            raise ImportRefused(problems)


def _instant(value: str, protocol: Protocol) -> datetime:
    from tracker.importing import when_to_instant

    parsed: date | datetime = (datetime.fromisoformat(value) if len(value) > 10
                               else date.fromisoformat(value))
    return when_to_instant(parsed, protocol)[0]


def _same(original: Any, item: Item) -> bool:
    stored = original.data.model_dump(mode="json", exclude_none=True)
    return all(stored.get(k) == v for k, v in item.data.items())


def _locate(problem: Problem, wheres: list[Item | Subject]) -> Problem:
    """An import problem (line N, event field) as the source's entry and element path."""
    if problem.line is None or not 1 <= problem.line <= len(wheres):
        return problem
    source = wheres[problem.line - 1]
    if isinstance(source, Subject):
        return Problem(None, f"{source.where} {problem.field}", problem.reason)
    field_name = problem.field.removeprefix("data.data.").removeprefix("data.")
    path = source.paths.get(field_name) or source.paths.get(problem.field) or problem.field
    return Problem(None, f"{source.where} {path}", problem.reason)
