"""Data entry pages: enrol, visit, lab, medication start/change/stop. Each GET renders an
empty form with a fresh ``form_token``; each POST goes through :func:`web.forms.record`
(the import's validation) and either redirects to the patient page or renders the form
again with each error beside its field (nothing written)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from events.vocabulary import UNITS
from events.vocabulary.common import PATIENT_RE
from web.access import log_access
from web.deps import Principal, context, requires
from web.forms import FormError, Outcome, new_token, number, record, when_of
from web.permissions import Action
from web.templating import render

router = APIRouter()

SITES = ("clavicle", "sternum", "rib", "spine", "sacrum", "pelvis", "femur", "tibia",
         "fibula", "talus", "calcaneus", "metatarsal", "humerus", "radius", "ulna", "hand",
         "mandible", "other")
SIDES = ("left", "right", "midline")
ANALYTES = tuple(UNITS)
LAB_UNITS = tuple(dict.fromkeys(u for r in UNITS.values() for u in (r.canonical,
                                                                     *r.alternatives)))
DRUGS = ("ibuprofen", "naproxen", "prednisone", "methotrexate", "adalimumab", "infliximab",
         "etanercept", "pamidronate", "zoledronic_acid", "calcium", "vitamin_d", "antibiotic",
         "paracetamol", "other")
STOP_REASONS = ("remission", "ineffective", "adverse_event", "completed", "other")
LESION_ROWS = 4


def _form(request: Request, user: Principal, template: str, ref: str | None, *,
          values: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
          status_code: int = 200, **extra: Any) -> Response:
    values = values or {}
    errors = errors or {}
    # a form refused by validation (or shown for confirmation) wrote nothing: its next
    # submission keeps the token, so it still records once
    token = values.get("form_token") if "form" not in errors else None
    return render(request, template, {
        "ref": ref, "v": values, "errors": errors, "form_token": token or new_token(),
        "sites": SITES, "sides": SIDES, "analytes": ANALYTES, "lab_units": LAB_UNITS,
        "drugs": DRUGS, "stop_reasons": STOP_REASONS, "lesion_rows": range(LESION_ROWS),
        "units_by_analyte": {a: [r.canonical, *r.alternatives] for a, r in UNITS.items()},
        **extra}, user=user, status_code=status_code)


def _checked_ref(ref: str) -> None:
    if not PATIENT_RE.fullmatch(ref):
        raise FormError("patient", "not a pseudonymous reference")


def _done(request: Request, user: Principal, template: str, ref: str, values: dict[str, Any],
          outcome: Outcome, action: str = "record", **extra: Any) -> Response:
    if not outcome.ok:
        return _form(request, user, template, ref, values=values, errors=outcome.errors,
                     status_code=400, **extra)
    log_access(request, user, action, patient=ref, target=outcome.event_id)
    note = "already" if outcome.duplicate else "saved"
    return RedirectResponse(f"/patients/{ref}?recorded={note}", status_code=303)


def _values(form: FormData) -> dict[str, Any]:
    return {k: str(v) for k, v in form.multi_items() if isinstance(v, str)}


def _submit(request: Request, user: Principal, template: str, ref: str,
            values: dict[str, Any], event_type: str, build: Any) -> Response:
    core = context(request).core
    try:
        _checked_ref(ref)
        when = when_of(values.get("occurred_at", ""), core.protocol.zone)
        data = build(values)
    except FormError as exc:
        return _form(request, user, template, ref, values=values,
                     errors={exc.field: exc.reason}, status_code=400)
    outcome = record(core, user=user.username, event_type=event_type, patient=ref, when=when,
                     data=data, token=values.get("form_token", ""))
    context(request).ward.invalidate()  # whoever recorded it sees it on the next list
    return _done(request, user, template, ref, values, outcome)


# ---------------------------------------------------------------------- enrol
@router.get("/enrol")
def enrol_form(request: Request, user: Principal = Depends(requires(Action.ENROL))) -> Response:
    return _form(request, user, "forms/enrol.html", None)


@router.post("/enrol")
async def enrol(request: Request, user: Principal = Depends(requires(Action.ENROL))
                ) -> Response:
    values = _values(await request.form())
    ref = values.get("patient", "").strip()

    def build(v: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {"birth_date": v.get("birth_date", ""), "sex": v.get("sex", "")}
        for name in ("symptom_onset", "first_consultation"):
            if v.get(name):
                data[name] = v[name]
        return data

    try:
        _checked_ref(ref)
    except FormError as exc:
        return _form(request, user, "forms/enrol.html", None, values=values,
                     errors={exc.field: exc.reason}, status_code=400)
    return _submit(request, user, "forms/enrol.html", ref, values, "PatientEnrolled", build)


# ---------------------------------------------------------------------- visit
@router.get("/patients/{ref}/visit")
def visit_form(request: Request, ref: str,
               user: Principal = Depends(requires(Action.RECORD_VISIT))) -> Response:
    return _form(request, user, "forms/visit.html", ref)


def _visit_data(v: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {name: v.get(name) == "yes"
                            for name in ("pain", "swelling", "functional_limitation")}
    for name in ("fever", "physician_global_active"):
        if v.get(name) in ("yes", "no"):
            data[name] = v[name] == "yes"
    if v.get("pain_score", "").strip():
        score = number(v["pain_score"], "pain_score")
        if score is None or score != int(score):
            raise FormError("pain_score", "a whole number from 0 to 10")
        data["pain_score"] = int(score)
    lesions = []
    for i in range(LESION_ROWS):
        site = v.get(f"site_{i}", "")
        if site:
            side = v.get(f"side_{i}", "")
            lesions.append({"site": site, **({"side": side} if side else {})})
    if lesions:
        data["active_lesions"] = lesions
    for name in ("weight_kg", "height_cm"):
        value = number(v.get(name, ""), name, required=False)
        if value is not None:
            data[name] = value
    return data


@router.post("/patients/{ref}/visit")
async def visit(request: Request, ref: str,
                user: Principal = Depends(requires(Action.RECORD_VISIT))) -> Response:
    values = _values(await request.form())
    return _submit(request, user, "forms/visit.html", ref, values, "VisitRecorded",
                   _visit_data)


# ---------------------------------------------------------------------- lab
@router.get("/patients/{ref}/lab")
def lab_form(request: Request, ref: str, analyte: str = "",
             user: Principal = Depends(requires(Action.RECORD_LAB))) -> Response:
    return _form(request, user, "forms/lab.html", ref,
                 values={"analyte": analyte} if analyte in UNITS else {})


def _lab_data(v: dict[str, Any]) -> dict[str, Any]:
    if not v.get("analyte"):
        raise FormError("analyte", "required")
    if not v.get("unit"):
        raise FormError("unit", "required")
    return {"analyte": v["analyte"], "value": number(v.get("value", ""), "value"),
            "unit": v["unit"]}


@router.post("/patients/{ref}/lab")
async def lab(request: Request, ref: str,
              user: Principal = Depends(requires(Action.RECORD_LAB))) -> Response:
    values = _values(await request.form())
    return _submit(request, user, "forms/lab.html", ref, values, "LabResultRecorded",
                   _lab_data)


# ---------------------------------------------------------------------- medication
@router.get("/patients/{ref}/medication")
def medication_form(request: Request, ref: str,
                    user: Principal = Depends(requires(Action.PRESCRIBE))) -> Response:
    return _form(request, user, "forms/medication.html", ref)


def _medication_data(v: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    kind = v.get("change", "")
    course = v.get("course_id", "").strip()
    if not course:
        raise FormError("course_id", "required")
    data: dict[str, Any] = {"course_id": course}
    if kind == "start":
        data["drug"] = v.get("drug", "")
        for name in ("dose_unit", "frequency", "route", "reason", "regimen"):
            if v.get(name, "").strip():
                data[name] = v[name].strip()
        dose = number(v.get("dose", ""), "dose", required=False)
        if dose is not None:
            data["dose"] = dose
        return "MedicationStarted", data
    if kind == "change":
        for name in ("dose_unit", "frequency", "regimen"):
            if v.get(name, "").strip():
                data[name] = v[name].strip()
        dose = number(v.get("dose", ""), "dose", required=False)
        if dose is not None:
            data["dose"] = dose
        return "MedicationChanged", data
    if kind == "stop":
        if v.get("stop_reason"):
            data["reason"] = v["stop_reason"]
        return "MedicationStopped", data
    raise FormError("change", "choose start, change or stop")


@router.post("/patients/{ref}/medication")
async def medication(request: Request, ref: str,
                     user: Principal = Depends(requires(Action.PRESCRIBE))) -> Response:
    values = _values(await request.form())
    try:
        event_type, data = _medication_data(values)
    except FormError as exc:
        return _form(request, user, "forms/medication.html", ref, values=values,
                     errors={exc.field: exc.reason}, status_code=400)
    return _submit(request, user, "forms/medication.html", ref, values, event_type,
                   lambda _v: data)
