"""FHIR out: one patient's record as a FHIR R4 ``collection`` Bundle, built from the same
:class:`tracker.status.Evaluation` as ``status --json`` (so ``--at`` and ``--known-at`` mean
the same), validated against the ``fhir.resources`` R4B models in the tests.

Resources: Patient (the pseudonymous reference; birthDate only when asked), Observation
(labs with LOINC and UCUM, body weights, and the derived disease state, remission date and
rolling-year pamidronate exposure under the project code system), MedicationAdministration,
MedicationStatement, Condition, Flag (findings), DetectedIssue (deviations, pointing at the
infusion), CarePlan (monitoring items), Communication (alert deliveries and
acknowledgements, when the caller passes the patient's alert streams) and Provenance (who
recorded each resource, when).
Everything the importer needs to rebuild the same status travels in project extensions and
identifiers (``urn:cno-tracker:…``): export → import gives the same status JSON."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from events.envelope import RecordedEvent
from events.vocabulary import AlertAcknowledged, AlertFailed, AlertRaised, AlertSent
from tracker.facts import Fact
from tracker.interop import codes
from tracker.status import Evaluation

SYSTEM = "urn:cno-tracker"
PATIENT_SYSTEM = f"{SYSTEM}:patient"
COURSE_SYSTEM = f"{SYSTEM}:course"
CODES = f"{SYSTEM}:codes"
COMORBIDITY_SYSTEM = f"{SYSTEM}:comorbidity"
EXT = f"{SYSTEM}:extension:"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"

#: analyte -> LOINC code for a lab entered without one, by unit kind (mass or molar)
_DEFAULT_LOINC = {
    "calcium": {"mmol/L": "2000-8", "mg/dL": "17861-6"},
    "ionized_calcium": {"mmol/L": "1995-0", "mg/dL": "17863-2"},
    "creatinine": {"umol/L": "14682-9", "mg/dL": "2160-0"},
    "phosphate": {"mmol/L": "14879-1", "mg/dL": "2777-1"},
    "magnesium": {"mmol/L": "2601-3", "mg/dL": "19123-9"},
    "pth": {"pg/mL": "2731-8", "pmol/L": "14866-8"},
}
_COMORBIDITY_SNOMED = {"ibd": "24526004", "psoriasis": "9014002", "lymphoma": "118600007",
                       "severe_kidney_failure": "46177005"}
_RXNORM = {v: k for k, v in codes.INFUSION_DRUGS.items() if k[0].isdigit()}
_ATC = {v: k for k, v in reversed(list(codes.COURSE_DRUGS.items())) if k[0].isupper()}
_CAREPLAN_STATUS = {"not_due": "not-started", "due": "scheduled", "overdue": "scheduled",
                    "satisfied": "completed"}


def loinc_for(analyte: str, unit: str, given: str | None) -> str | None:
    if given:
        return given
    by_unit = _DEFAULT_LOINC.get(analyte, {})
    if unit in by_unit:
        return by_unit[unit]
    return next((c for c, a in codes.LOINC_ANALYTES.items() if a == analyte), None)


def _instant(f: Fact) -> str:
    return f.occurred_at.isoformat()


def _ref(kind: str, rid: str) -> dict[str, str]:
    return {"reference": f"{kind}/{rid}"}


def _drug_concept(drug: str) -> dict[str, Any]:
    coding = [{"system": f"{SYSTEM}:drug", "code": drug}]
    if drug in _RXNORM:
        coding.append({"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                       "code": _RXNORM[drug]})
    if drug in _ATC:
        coding.append({"system": "http://www.whocc.no/atc", "code": _ATC[drug]})
    return {"coding": coding, "text": drug.replace("_", " ")}


#: event types with no standard resource here: carried as Basic (code = the type, data in
#: an extension), so our own export imports back to the same record
BASIC_TYPES = {"VisitRecorded", "DiagnosisAssessed", "ImagingRecorded", "BiopsyRecorded",
               "AdverseEventRecorded", "ProcedureRecorded", "MedicationChanged"}
EVENT_SYSTEM = f"{SYSTEM}:event"


def _carry(resource: dict[str, Any], f: Fact) -> dict[str, Any]:
    """Add the event's full data (canonical JSON) as our extension."""
    import orjson

    from events.envelope import dump_data

    resource.setdefault("extension", []).append(
        {"url": f"{EXT}data", "valueString": orjson.dumps(dump_data(f.data),
                                                          option=orjson.OPT_SORT_KEYS).decode()})
    return resource


def export_bundle(ev: Evaluation, *, include_birth_date: bool = False,
                  now: datetime | None = None,
                  alerts: Sequence[Sequence[RecordedEvent]] = ()) -> dict[str, Any]:
    """The Bundle (a plain dict, FHIR JSON) of one patient's evaluation; ``alerts`` are the
    events of each of the patient's alert streams (``alert:<id>``), as Communications."""
    ref = ev.patient
    subject = _ref("Patient", ref)
    resources: list[dict[str, Any]] = []
    provenance: list[tuple[str, Fact]] = []

    def add(resource: dict[str, Any], fact: Fact | None = None) -> None:
        resources.append(resource)
        if fact is not None:
            provenance.append((f"{resource['resourceType']}/{resource['id']}", fact))

    enrol = next((f for f in ev.facts if f.type == "PatientEnrolled"), None)
    patient: dict[str, Any] = {"resourceType": "Patient", "id": ref,
                               "identifier": [{"system": PATIENT_SYSTEM, "value": ref}]}
    if enrol is not None:
        patient["gender"] = enrol.data.sex
        if include_birth_date:
            patient["birthDate"] = enrol.data.birth_date.isoformat()
        ext = [{"url": f"{EXT}{name}", "valueDate": getattr(enrol.data, name).isoformat()}
               for name in ("symptom_onset", "first_consultation")
               if getattr(enrol.data, name) is not None]
        ext.append({"url": f"{EXT}enrolled-on", "valueDate": enrol.on.isoformat()})
        patient["extension"] = ext
    add(patient, enrol)

    courses: dict[str, dict[str, Any]] = {}
    for f in ev.facts:
        d = f.data
        rid = f.event_id
        if f.type == "LabResultRecorded":
            loinc = loinc_for(d.analyte, d.unit, d.loinc)
            coding = [{"system": LOINC, "code": loinc}] if loinc else []
            coding.append({"system": f"{SYSTEM}:analyte", "code": d.analyte})
            add({"resourceType": "Observation", "id": rid, "status": "final",
                 "category": [{"coding": [{
                     "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                     "code": "laboratory"}]}],
                 "code": {"coding": coding, "text": d.analyte},
                 "subject": subject, "effectiveDateTime": _instant(f),
                 "valueQuantity": {"value": d.value, "unit": d.unit, "system": UCUM,
                                   "code": d.unit}}, f)
        elif f.type in BASIC_TYPES:
            add(_carry({"resourceType": "Basic", "id": rid,
                        "code": {"coding": [{"system": EVENT_SYSTEM, "code": f.type}]},
                        "subject": subject, "created": f.on.isoformat(),
                        "extension": [{"url": f"{EXT}occurred-at",
                                       "valueDateTime": _instant(f)}]}, f), f)
        elif f.type == "InfusionAdministered":
            add(_weight(f"{rid}-weight", subject, f, d.weight_kg))
            administration: dict[str, Any] = {
                "resourceType": "MedicationAdministration", "id": rid, "status": "completed",
                "medicationCodeableConcept": _drug_concept(d.drug), "subject": subject,
                "effectiveDateTime": _instant(f),
                "dosage": {"dose": {"value": d.dose_mg, "unit": "mg", "system": UCUM,
                                    "code": "mg"}}}
            add(_carry(administration, f), f)
        elif f.type == "VisitRecorded" and d.weight_kg is not None:
            add(_weight(f"{rid}-weight", subject, f, d.weight_kg))
        elif f.type == "MedicationStarted":
            statement: dict[str, Any] = {
                "resourceType": "MedicationStatement", "id": rid, "status": "active",
                "identifier": [{"system": COURSE_SYSTEM, "value": d.course_id}],
                "medicationCodeableConcept": _drug_concept(d.drug), "subject": subject,
                "effectivePeriod": {"start": f.on.isoformat()}}
            _carry(statement, f)
            courses[d.course_id] = statement
            add(statement, f)
        elif f.type == "MedicationStopped" and d.course_id in courses:
            course = courses[d.course_id]
            course["status"] = "completed" if d.reason in ("completed", "remission") \
                else "stopped"
            course["effectivePeriod"]["end"] = f.on.isoformat()
            if d.reason:
                course.setdefault("extension", []).append(
                    {"url": f"{EXT}stop-reason", "valueCode": d.reason})
        elif f.type == "ComorbidityRecorded":
            coding = [{"system": COMORBIDITY_SYSTEM, "code": d.condition}]
            if d.condition in _COMORBIDITY_SNOMED:
                coding.insert(0, {"system": SNOMED, "code": _COMORBIDITY_SNOMED[d.condition]})
            add({"resourceType": "Condition", "id": rid, "subject": subject,
                 "code": {"coding": coding}, "onsetDateTime": f.on.isoformat()}, f)
    _derived(ev, subject, add)
    for stream in alerts:
        for communication in communications(stream, subject,
                                            known_at=ev.known_at):
            add(communication)
    for prov_target, fact in provenance:
        resources.append({
            "resourceType": "Provenance", "id": f"prov-{prov_target.split('/')[1]}",
            "target": [{"reference": prov_target}], "recorded": fact.recorded_at.isoformat(),
            "agent": [{"who": {"display": fact.recorded_by}}]})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle", "type": "collection",
        "entry": [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r}
                  for r in resources]}
    if now is not None:
        bundle["timestamp"] = now.isoformat()
    return bundle


def _weight(rid: str, subject: dict[str, str], f: Fact, kg: float) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": rid, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "29463-7"}], "text": "body weight"},
            "subject": subject, "effectiveDateTime": _instant(f),
            "valueQuantity": {"value": kg, "unit": "kg", "system": UCUM, "code": "kg"}}


def _derived(ev: Evaluation, subject: dict[str, str], add: Any) -> None:
    """What the projections derive: disease state, remission date, exposure, findings,
    deviations and monitoring, as of ``ev.at``."""
    status = ev.as_json()
    at = ev.at.isoformat()
    disease = status["disease"]

    def observation(code: str, **value: Any) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": f"derived-{code}", "status": "final",
                "code": {"coding": [{"system": CODES, "code": code}]}, "subject": subject,
                "effectiveDateTime": at, **value}

    add(observation("disease-state", valueCodeableConcept={
        "coding": [{"system": CODES, "code": disease["state"]}]}))
    if disease.get("remission_since"):
        add(observation("remission-since", valueDateTime=disease["remission_since"]))
    pam = status["pamidronate"]
    add(observation("pamidronate-rolling-year", valueQuantity={
        "value": pam["rolling_year_mg_per_kg"], "unit": "mg/kg", "system": UCUM,
        "code": "mg/kg"}))
    for n, finding in enumerate(status["findings"]):
        add({"resourceType": "Flag", "id": f"finding-{n}", "status": "active",
             "code": {"coding": [{"system": f"{CODES}:finding", "code": finding["kind"]}]},
             "subject": subject, "period": {"start": finding["on"]}})
    for n, deviation in enumerate(status["deviations"]):
        issue: dict[str, Any] = {
            "resourceType": "DetectedIssue", "id": f"deviation-{n}", "status": "final",
            "code": {"coding": [{"system": f"{CODES}:deviation", "code": deviation["kind"]}]},
            "patient": subject, "detail": deviation.get("detail") or deviation["kind"]}
        if deviation.get("event_id"):
            issue["implicated"] = [_ref("MedicationAdministration", deviation["event_id"])]
        add(issue)
    activities = []
    for m in status["monitoring"]:
        detail: dict[str, Any] = {
            "code": {"coding": [{"system": f"{CODES}:monitoring", "code": m["item"]}]},
            "status": _CAREPLAN_STATUS.get(m["status"], "unknown")}
        if m.get("due_on"):
            detail["scheduledPeriod"] = {"start": m["due_on"]}
        activities.append({"detail": detail})
    if activities:
        add({"resourceType": "CarePlan", "id": "monitoring", "status": "active",
             "intent": "plan", "subject": subject, "activity": activities})


STAFF_SYSTEM = f"{SYSTEM}:staff"
ALERT_SYSTEM = f"{SYSTEM}:alert"


def _staff(staff_id: str) -> dict[str, Any]:
    """A pseudonymous staff member: the roster id or user name, never a phone or address."""
    return {"identifier": {"system": STAFF_SYSTEM, "value": staff_id}}


def communications(stream: Sequence[RecordedEvent], subject: dict[str, str], *,
                   known_at: datetime | None = None) -> list[dict[str, Any]]:
    """One alert's deliveries (``AlertSent`` → completed, a permanent ``AlertFailed`` →
    not-done) and acknowledgements (``AlertAcknowledged``, sent by the acknowledging user in
    response to the deliveries) as Communications. No message text and no note travels:
    either may name clinical values; the alert's kind and severity are codes."""
    out: list[dict[str, Any]] = []
    r = next((e.data for e in stream if isinstance(e.data, AlertRaised)), None)
    if r is None:
        return out
    alert_id = r.alert_id
    base: dict[str, Any] = {
        "resourceType": "Communication",
        "identifier": [{"system": ALERT_SYSTEM, "value": alert_id}],
        "category": [{"coding": [{"system": f"{CODES}:alert-kind", "code": r.kind}]}],
        "priority": "urgent" if r.severity == "urgent" else "routine",
        "subject": subject}
    deliveries: list[str] = []
    for e in stream:
        if known_at is not None and e.recorded_at > known_at:
            continue
        d = e.data
        rid = f"alert-{alert_id}-{e.version}"
        if isinstance(d, AlertSent | AlertFailed):
            if isinstance(d, AlertFailed) and not d.permanent:
                continue  # a retry follows; only the final outcome is a Communication
            sent = isinstance(d, AlertSent)
            c = dict(base, id=rid, status="completed" if sent else "not-done",
                     recipient=[_staff(d.recipient)], sender={"display": "cno-tracker"},
                     medium=[{"coding": [{"system": f"{CODES}:channel", "code": d.channel}]}])
            if sent:
                c["sent"] = e.recorded_at.isoformat()
            else:
                c["statusReason"] = {"coding": [{"system": f"{CODES}:delivery",
                                                 "code": "failed"}]}
            deliveries.append(f"Communication/{rid}")
            out.append(c)
        elif isinstance(d, AlertAcknowledged):
            c = dict(base, id=rid, status="completed", sender=_staff(d.by),
                     sent=e.recorded_at.isoformat(),
                     category=[*base["category"], {"coding": [
                         {"system": f"{CODES}:alert-event", "code": "acknowledgement"}]}])
            if deliveries:
                c["inResponseTo"] = [{"reference": ref} for ref in deliveries]
            out.append(c)
    return out
