"""FHIR R4 in: a Bundle (transaction, batch or collection) or a single resource, parsed and
validated with the ``fhir.resources`` **R4B** models, mapped to subjects and items for
:class:`tracker.interop.ingest.Ingest`.

Why R4B: ``fhir.resources`` 8 ships R5 (the default), R4B and STU3 — no plain R4 (4.0.1).
R4B (4.3.0) changed R4 only in a few medication and evidence resources; every element this
mapper reads (Patient, Observation, MedicationAdministration/Statement/Request, Condition)
has the same name and type in R4 and R4B, so an R4 document validates as R4B.

What is read is only what the record may keep: birth date and gender of a Patient, codes,
values, units, times and statuses. Names, addresses, telecoms, national ids, ``text.div``
narratives, notes and performers are never copied anywhere, and errors name the entry
index, resource type, id and element path — never an input value."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from events.errors import Problem
from tracker.errors import ImportRefused
from tracker.interop import codes
from tracker.interop.ingest import Ingest, Item, Outcome, Skips, Subject

FHIR_RELEASE = "R4B"
#: our own export's extensions, identifiers and code systems (tracker.interop.fhir_out)
OURS = "urn:cno-tracker"
EXT = f"{OURS}:extension:"
COURSE_SYSTEM = f"{OURS}:course"
COMORBIDITY_SYSTEM = f"{OURS}:comorbidity"
DERIVED_SYSTEM = f"{OURS}:codes"
EVENT_SYSTEM = f"{OURS}:event"
DRUG_SYSTEM = f"{OURS}:drug"
BUNDLE_TYPES = {"transaction", "batch", "collection"}
MAPPED = {"Patient", "Observation", "MedicationAdministration", "MedicationStatement",
          "MedicationRequest", "Condition", "Basic"}
#: identifier types and systems that are national ids: never linked, never stored
NATIONAL_ID_TYPES = {"SS", "SB", "NI", "NH", "NNxxx", "PPN", "DL", "TAX"}
NATIONAL_ID_SYSTEM_PARTS = ("us-ssn", "ssn", "passport", "driver", "nhs-number", "/nir")
SEX = {"female": "female", "male": "male", "other": "other", "unknown": "unknown"}
RECORD = {"final", "amended", "corrected"}


@dataclass
class Mapped:
    subjects: list[Subject] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    skips: Skips = field(default_factory=Skips)
    resources: int = 0


@dataclass
class _Entry:
    index: int
    full_url: str | None
    resource: Any  # a validated fhir.resources model

    @property
    def where(self) -> str:
        rid = self.resource.id or "(no id)"
        if self.resource.get_resource_type() == "Patient":
            rid = "(id withheld)"  # a Patient id is often the record number
        return f"entry {self.index} {self.resource.get_resource_type()}/{rid}"


def parse(raw: bytes) -> list[_Entry]:
    """Validated entries, or :class:`ImportRefused` naming every invalid one."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ImportRefused([Problem(None, "document", f"not valid JSON: {exc}")]) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
        raise ImportRefused([Problem(None, "document", "not a FHIR resource (no resourceType)")])
    if doc["resourceType"] != "Bundle":
        raw_entries: list[tuple[int, str | None, Any]] = [(0, None, doc)]
    else:
        kind = doc.get("type")
        if kind not in BUNDLE_TYPES:
            allowed = ", ".join(sorted(BUNDLE_TYPES))
            # the value is not echoed: a refusal never carries what was submitted
            raise ImportRefused([Problem(None, "Bundle.type", f"must be one of {allowed}")])
        entries = doc.get("entry") or []
        if not isinstance(entries, list):
            raise ImportRefused([Problem(None, "Bundle.entry", "must be an array")])
        raw_entries = [(i, e.get("fullUrl") if isinstance(e, dict) else None,
                        e.get("resource") if isinstance(e, dict) else None)
                       for i, e in enumerate(entries)]
    problems: list[Problem] = []
    out: list[_Entry] = []
    shared = _Shared()
    for index, full_url, res in raw_entries:
        parsed = _validate(index, res, problems, shared)
        if parsed is not None:
            out.append(_Entry(index, full_url, parsed))
    if problems:
        raise ImportRefused(problems)
    return out


#: elements that repeat across the resources of a bundle (the same code, unit, patient
#: reference, profile) and have the same type in every mapped resource that has them
SHARED_ELEMENTS = {"code": "CodeableConcept", "subject": "Reference", "meta": "Meta",
                   "valueQuantity": "Quantity", "category": "CodeableConcept",
                   "interpretation": "CodeableConcept", "clinicalStatus": "CodeableConcept",
                   "verificationStatus": "CodeableConcept",
                   "medicationCodeableConcept": "CodeableConcept"}


class _Shared:
    """Each distinct element of :data:`SHARED_ELEMENTS` validated once per document.

    A blood panel repeats the same ``code``, ``subject`` and unit in hundreds of
    Observations; each is validated with its ``fhir.resources`` model the first time it
    is seen, and the validated element then takes the place of its JSON in every resource
    that repeats it (pydantic accepts a model instance as is). The resource itself is
    still validated as a whole. Anything unexpected falls back to validating the resource
    from its raw JSON, so errors and their element paths are exactly those of a plain
    validation."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, bytes], Any] = {}

    def element(self, type_name: str, value: dict[str, Any]) -> Any:
        key = (type_name, orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
        found = self.seen.get(key)
        if found is None:
            found = self.seen[key] = _model_class(type_name).model_validate(value)
        return found

    def prepared(self, res: dict[str, Any]) -> dict[str, Any]:
        out = dict(res)
        for name, type_name in SHARED_ELEMENTS.items():
            value = res.get(name)
            if isinstance(value, dict):
                out[name] = self.element(type_name, value)
            elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                out[name] = [self.element(type_name, v) for v in value]
        return out


_CLASSES: dict[str, Any] = {}


def _model_class(rtype: str) -> Any:
    cls = _CLASSES.get(rtype)
    if cls is None:
        cls = _CLASSES[rtype] = get_fhir_model_class(rtype)
    return cls


def _validate(index: int, res: Any, problems: list[Problem],
              shared: _Shared | None = None) -> Any:
    if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
        problems.append(Problem(None, f"entry {index} resource", "missing or has no resourceType"))
        return None
    rtype, rid = res["resourceType"], res.get("id") or "(no id)"
    if rtype == "Patient":
        rid = "(id withheld)"
    try:
        cls = _model_class(rtype)
    except (KeyError, ValueError, AttributeError, ImportError):
        # not named: an unknown type is whatever the sender put there (a name, an MRN)
        problems.append(Problem(None, f"entry {index} resourceType", "unknown resource type"))
        return None
    if shared is not None and rtype in MAPPED:
        try:
            return cls.model_validate(shared.prepared(res))
        except (ValidationError, ValueError, TypeError):
            pass  # validated again from the raw JSON below, for its exact errors
    try:
        return cls.model_validate(res)
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            path = ".".join(str(x) for x in err["loc"]) or rtype
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(Problem(None, f"entry {index} {rtype}/{rid} {path}", msg))
        return None


def map_entries(entries: list[_Entry], *, zone: Any) -> Mapped:
    out = Mapped(resources=len(entries))
    refs: dict[str, int] = {}
    for e in entries:
        r = e.resource
        if r.get_resource_type() == "Patient":
            refs.update({k: len(out.subjects) for k in _names_of(e)})
            out.subjects.append(_subject(e))
    weights: list[tuple[int, datetime | date, float]] = []
    for e in entries:
        rtype = e.resource.get_resource_type()
        if rtype == "Patient":
            continue
        if rtype not in MAPPED:
            out.skips.add(rtype, "", "resource type not mapped")
            continue
        subject = _subject_of(e, refs, out)
        if subject is None:
            continue
        mapper = _MAPPERS[rtype]
        mapper(e, subject, out, weights, zone)
    _weigh_infusions(out, weights)
    return out


def _names_of(e: _Entry) -> list[str]:
    names = [f"Patient/{e.resource.id}"] if e.resource.id else []
    return names + ([e.full_url] if e.full_url else [])


def _is_national(ident: Any) -> bool:
    system = (ident.system or "").lower()
    if any(part in system for part in NATIONAL_ID_SYSTEM_PARTS):
        return True
    codings = ident.type.coding if ident.type and ident.type.coding else []
    return any(c.code in NATIONAL_ID_TYPES for c in codings)


def _subject(e: _Entry) -> Subject:
    p = e.resource
    idents = [(i.system or "", i.value) for i in (p.identifier or [])
              if i.value and not _is_national(i)]
    birth = p.birthDate if isinstance(p.birthDate, date) else None
    ours = {x.url.removeprefix(EXT): x.valueDate for x in (p.extension or [])
            if x.url.startswith(EXT) and isinstance(x.valueDate, date)}
    return Subject(identifiers=idents, birth_date=birth, sex=SEX.get(p.gender or "", "unknown"),
                   where=e.where, key=f"Patient/{p.id}" if p.id else None,
                   symptom_onset=ours.get("symptom_onset"),
                   first_consultation=ours.get("first_consultation"),
                   enrolled_on=ours.get("enrolled-on"))


def _carried(r: Any, data: dict[str, Any]) -> dict[str, Any]:
    """The full event data our own export carries (``urn:cno-tracker:extension:data``),
    else ``data``; it is validated like any import line."""
    text = _extension(r, "data")
    if not text:
        return data
    try:
        carried = orjson.loads(text)
    except orjson.JSONDecodeError:
        return data
    return carried if isinstance(carried, dict) else data


def _basic(e: _Entry, subject: int, out: Mapped,
           weights: list[tuple[int, datetime | date, float]], zone: Any) -> None:
    r = e.resource
    event_type = next((c for s, c in _codes(r.code) if s == EVENT_SYSTEM), None)
    data = _carried(r, {})
    at = next((x.valueDateTime for x in r.extension or []
               if x.url == EXT + "occurred-at"), None)
    if event_type is None or not data or at is None:
        out.skips.add("Basic", next((c for _, c in _codes(r.code)), ""), "code not mapped")
        return
    out.items.append(Item(subject, e.where, event_type, _when(at) or "", data,
                          key=f"Basic/{r.id or e.full_url}",
                          paths={"occurred_at": "extension(occurred-at)"}))


def _extension(r: Any, name: str) -> Any:
    for x in getattr(r, "extension", None) or []:
        if x.url == EXT + name:
            return x.valueCode or x.valueString
    return None


def _subject_of(e: _Entry, refs: dict[str, int], out: Mapped) -> int | None:
    r = e.resource
    ref = getattr(r, "subject", None) or getattr(r, "patient", None)
    if ref is None:
        out.skips.add(r.get_resource_type(), "", "no subject")
        return None
    if ref.reference and ref.reference in refs:
        return refs[ref.reference]
    ident = ref.identifier
    if ident is not None and ident.value and not _is_national(ident):
        out.subjects.append(Subject([(ident.system or "", ident.value)], where=e.where))
        return len(out.subjects) - 1
    out.skips.add(r.get_resource_type(), "", "subject not in the bundle")
    return None


def _when(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat() if value.tzinfo else None
    if isinstance(value, date):
        return value.isoformat()
    return None


def _effective(r: Any) -> tuple[str | None, str]:
    for name in ("effectiveDateTime", "effectiveInstant"):
        value = getattr(r, name, None)
        if value is not None:
            return _when(value), name
    period = getattr(r, "effectivePeriod", None)
    if period is not None and period.start is not None:
        return _when(period.start), "effectivePeriod.start"
    return None, "effective[x]"


def _codes(concept: Any) -> list[tuple[str, str]]:
    if concept is None or not concept.coding:
        return []
    return [(c.system or "", c.code) for c in concept.coding if c.code]


def _loinc(concept: Any) -> str | None:
    return next((c for s, c in _codes(concept) if s in codes.LOINC_SYSTEMS), None)


def _observation(e: _Entry, subject: int, out: Mapped,
                 weights: list[tuple[int, datetime | date, float]], zone: Any) -> None:
    r = e.resource
    if any(s == DERIVED_SYSTEM for s, _ in _codes(r.code)):
        out.skips.add("Observation", "", "derived by the tracker (recomputed, not stored)")
        return
    code = _loinc(r.code)
    shown = code or next((c for _, c in _codes(r.code)), "")
    if code in codes.LOINC_BODY_WEIGHT:
        q = r.valueQuantity
        when = r.effectiveDateTime or (r.effectivePeriod.start if r.effectivePeriod else None)
        if r.status in RECORD and q is not None and q.value is not None and when is not None:
            factor = {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237}.get(q.code or q.unit or "")
            if factor:
                weights.append((subject, when, float(q.value) * factor))
        out.skips.add("Observation", code, "body weight: used only for infusion doses")
        return
    analyte = codes.LOINC_ANALYTES.get(code or "") or next(
        (c for s, c in _codes(r.code) if s == f"{OURS}:analyte" and c in codes.UNITS), None)
    if analyte is None:
        out.skips.add("Observation", shown, "code not mapped")
        return
    if r.status not in RECORD and r.status != "entered-in-error":
        out.skips.add("Observation", code or "", f"status {r.status}")
        return
    when, when_path = _effective(r)
    action: Literal["record", "void"] = "void" if r.status == "entered-in-error" else "record"
    q = r.valueQuantity
    if action == "record" and (q is None or q.value is None):
        out.skips.add("Observation", code or "", "no numeric valueQuantity")
        return
    unit = None
    if q is not None:
        unit = codes.ucum_unit(analyte, q.code) or codes.ucum_unit(analyte, q.unit)
    if action == "record" and unit is None:
        out.skips.add("Observation", code or "", f"unit not accepted for {analyte}")
        return
    if when is None:
        raise ImportRefused([Problem(None, f"{e.where} {when_path}",
                                     "a full date, or a datetime with offset, is required")])
    data: dict[str, Any] = {"analyte": analyte}
    if code:
        data["loinc"] = code
    if q is not None and q.value is not None:
        data |= {"value": _number(q.value), "unit": unit}
    out.items.append(Item(subject, e.where, "LabResultRecorded", when, data,
                          key=f"Observation/{r.id or e.full_url}", action=action,
                          paths={"value": "valueQuantity.value", "unit": "valueQuantity.code",
                                 "occurred_at": when_path, "analyte": "code"}))


def _number(value: Decimal | float) -> float:
    return float(value)


def _drug(r: Any, table: dict[str, str]) -> tuple[str | None, str]:
    concept = getattr(r, "medicationCodeableConcept", None)
    if concept is None:
        return None, ""
    found = [c for s, c in _codes(concept)
             if s == DRUG_SYSTEM and (table is codes.COURSE_DRUGS or c in table.values())]
    found += [table[c] for _, c in _codes(concept) if c in table]
    if found:
        return found[0], _codes(concept)[0][1]
    texts = [concept.text] + [c.display for c in concept.coding or []]
    for text in texts:
        drug = codes.drug_from_text(text, table)
        if drug:
            return drug, drug
    return None, next((c for _, c in _codes(concept)), "")


def _administration(e: _Entry, subject: int, out: Mapped,
                    weights: list[tuple[int, datetime | date, float]], zone: Any) -> None:
    r = e.resource
    drug, code = _drug(r, codes.INFUSION_DRUGS)
    if drug is None:
        out.skips.add("MedicationAdministration", code, "drug not mapped")
        return
    if r.status not in ("completed", "entered-in-error"):
        out.skips.add("MedicationAdministration", code, f"status {r.status}")
        return
    when, when_path = _effective(r)
    if when is None:
        raise ImportRefused([Problem(None, f"{e.where} {when_path}",
                                     "a full date, or a datetime with offset, is required")])
    data: dict[str, Any] = {"drug": drug}
    if _extension(r, "course-id"):
        data["course_id"] = _extension(r, "course-id")
    dose = r.dosage.dose if r.dosage else None
    if r.status == "completed":
        factor = {"mg": 1.0, "g": 1000.0}.get((dose.code or dose.unit or "") if dose else "")
        if dose is None or dose.value is None or factor is None:
            raise ImportRefused([Problem(None, f"{e.where} dosage.dose",
                                         "a dose in mg (or g) is required")])
        data["dose_mg"] = round(float(dose.value) * factor, 3)
    if r.status == "completed":
        data |= _carried(r, {})
    out.items.append(Item(subject, e.where, "InfusionAdministered", when, data,
                          key=f"MedicationAdministration/{r.id or e.full_url}",
                          action="void" if r.status == "entered-in-error" else "record",
                          paths={"dose_mg": "dosage.dose", "weight_kg": "(body weight)",
                                 "occurred_at": when_path}))


def _course(e: _Entry, subject: int, out: Mapped,
            weights: list[tuple[int, datetime | date, float]], zone: Any) -> None:
    r = e.resource
    rtype = r.get_resource_type()
    drug, code = _drug(r, codes.COURSE_DRUGS)
    if drug is None:
        out.skips.add(rtype, code, "drug not mapped")
        return
    if r.status not in ("active", "completed", "stopped", "entered-in-error"):
        out.skips.add(rtype, code, f"status {r.status}")
        return
    if rtype == "MedicationRequest":
        when, when_path = _when(r.authoredOn), "authoredOn"
        end = None
    else:
        when, when_path = _effective(r)
        if when is None and r.dateAsserted is not None:
            when, when_path = _when(r.dateAsserted), "dateAsserted"
        end = _when(r.effectivePeriod.end) if r.effectivePeriod and r.effectivePeriod.end \
            else None
    if when is None:
        raise ImportRefused([Problem(None, f"{e.where} {when_path}",
                                     "a start date is required for a course")])
    key = f"{rtype}/{r.id or e.full_url}"
    course_id = next((i.value for i in getattr(r, "identifier", None) or []
                      if i.system == COURSE_SYSTEM and i.value), None) or "fhir-" + _short(key)
    void = r.status == "entered-in-error"
    started: dict[str, Any] = {"course_id": course_id, "drug": drug}
    if _extension(r, "regimen"):
        started["regimen"] = _extension(r, "regimen")
    started = _carried(r, started)
    out.items.append(Item(subject, e.where, "MedicationStarted", when, started, key=key,
                          action="void" if void else "record",
                          paths={"occurred_at": when_path, "drug": "medication[x]"}))
    if end is not None and r.status in ("completed", "stopped") and not void:
        out.items.append(Item(subject, e.where, "MedicationStopped", end,
                              {"course_id": course_id, "reason": _extension(r, "stop-reason")
                               or ("completed" if r.status == "completed" else "other")},
                              key=key + "|stop",
                              paths={"occurred_at": "effectivePeriod.end"}))


def _short(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _condition(e: _Entry, subject: int, out: Mapped,
               weights: list[tuple[int, datetime | date, float]], zone: Any) -> None:
    r = e.resource
    snomed = [c for s, c in _codes(r.code) if s in codes.SNOMED_SYSTEMS]
    condition = next((c for s, c in _codes(r.code) if s == COMORBIDITY_SYSTEM), None) or next(
        (codes.SNOMED_COMORBIDITIES[c] for c in snomed if c in codes.SNOMED_COMORBIDITIES),
        None)
    if condition is None:
        out.skips.add("Condition", snomed[0] if snomed else "", "code not mapped")
        return
    verification = {c for _, c in _codes(r.verificationStatus)}
    if "refuted" in verification:
        out.skips.add("Condition", (snomed or [condition])[0], "refuted")
        return
    when = _when(r.onsetDateTime) or _when(r.recordedDate)
    if when is None:
        raise ImportRefused([Problem(None, f"{e.where} onsetDateTime",
                                     "an onset or recorded date is required")])
    out.items.append(Item(subject, e.where, "ComorbidityRecorded", when,
                          {"condition": condition}, key=f"Condition/{r.id or e.full_url}",
                          action="void" if "entered-in-error" in verification else "record",
                          paths={"occurred_at": "onsetDateTime", "condition": "code"}))


_MAPPERS = {"Observation": _observation, "MedicationAdministration": _administration,
            "MedicationStatement": _course, "MedicationRequest": _course,
            "Condition": _condition, "Basic": _basic}


def _weigh_infusions(out: Mapped, weights: list[tuple[int, datetime | date, float]]) -> None:
    """Each infusion takes the body weight observed nearest before it (same patient); one
    without such a weight keeps no ``weight_kg`` and ``Ingest`` looks in the stored record."""
    for item in out.items:
        if item.event_type != "InfusionAdministered" or item.action != "record":
            continue
        at = datetime.fromisoformat(item.occurred_at) if len(item.occurred_at) > 10 \
            else date.fromisoformat(item.occurred_at)
        best: tuple[Any, float] | None = None
        for subject, when, kg in weights:
            if subject != item.subject or not _not_after(when, at):
                continue
            if best is None or _not_after(best[0], when):
                best = (when, kg)
        if best is not None:
            item.data["weight_kg"] = round(best[1], 3)


def _not_after(a: datetime | date, b: datetime | date) -> bool:
    """a <= b, comparing a date with a datetime by its date."""
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a <= b
    da = a.date() if isinstance(a, datetime) else a
    db = b.date() if isinstance(b, datetime) else b
    return da <= db


def import_fhir(raw: bytes, ingest: Ingest, *, strict: bool = False) -> Outcome:
    """Parse, validate, map and append one FHIR document (a Bundle or one resource): all or
    nothing. The entry point of ``cno-tracker fhir import`` and of the web's ``POST /fhir``."""
    mapped = map_entries(parse(raw), zone=ingest.protocol.zone)
    return ingest.run(mapped.subjects, mapped.items, mapped.skips, strict=strict)
