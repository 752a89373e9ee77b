"""Entries saved only after a preview: an infusion (its mg/kg and the deviations the dose
would create) and void / correct (what stops counting or changes). The first POST
validates through the import (dry run) and shows the preview with a confirmation button;
the second, with ``confirm=yes`` and the same ``form_token``, records once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from events.envelope import RecordedEvent, dump_data
from web.deps import Principal, context, requires
from web.forms import FormError, number, record, when_of
from web.permissions import Action
from web.preview import changes, evaluate_now, hypothetical, new_deviations
from web.routes.forms import _checked_ref, _done, _form, _values
from web.routes.patient import explanations_for

router = APIRouter()
INFUSION_DRUGS = ("pamidronate", "zoledronic_acid", "infliximab")


def _infusion_data(v: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {"drug": v.get("drug") or "pamidronate",
                            "dose_mg": number(v.get("dose_mg", ""), "dose_mg"),
                            "weight_kg": number(v.get("weight_kg", ""), "weight_kg")}
    if v.get("course_id", "").strip():
        data["course_id"] = v["course_id"].strip()
    if v.get("premedication_paracetamol") in ("yes", "no"):
        data["premedication_paracetamol"] = v["premedication_paracetamol"] == "yes"
    for name in ("duration_hours", "diluent_ml"):
        value = number(v.get(name, ""), name, required=False)
        if value is not None:
            data[name] = value
    return data


def _moment(when: str, name: str) -> datetime:
    if len(when) == 10:
        raise FormError(name, "give the time as well as the date")
    return datetime.fromisoformat(when)


def _preview_or_record(request: Request, user: Principal, template: str, ref: str,
                       values: dict[str, Any], event_type: str, data: dict[str, Any],
                       when: str, **extra: Any) -> Response:
    core = context(request).core
    token = values.get("form_token", "")
    outcome = record(core, user=user.username, event_type=event_type, patient=ref,
                     when=when, data=data, token=token, dry_run=values.get("confirm") != "yes")
    if values.get("confirm") == "yes":
        context(request).ward.invalidate()  # whoever recorded it sees it on the next list
    if not outcome.ok or values.get("confirm") == "yes":
        return _done(request, user, template, ref, values, outcome,
                     action="void" if event_type == "EntryVoided"
                     else "correct" if event_type == "EntryCorrected" else "record", **extra)
    events = core.store.read_stream(ref)
    moment = datetime.fromisoformat(when) if len(when) > 10 else core.clock.now()
    hyp = hypothetical(ref, events, event_type, data, moment,
                       moment.astimezone(core.protocol.zone).date(), core.clock.now(),
                       user.username)
    before, after = evaluate_now(core, ref, events), evaluate_now(core, ref, [*events, hyp])
    deviations = [dict(d, explain=explanations_for(after, d["kind"], d["event_id"]))
                  for d in new_deviations(before, after)]
    return _form(request, user, template, ref, values=values, errors={}, preview={
        "changes": changes(before.as_json(), after.as_json()), "deviations": deviations},
        **extra)


# ---------------------------------------------------------------------- infusion
@router.get("/patients/{ref}/infusion")
def infusion_form(request: Request, ref: str,
                  user: Principal = Depends(requires(Action.RECORD_INFUSION))) -> Response:
    return _form(request, user, "forms/infusion.html", ref, infusion_drugs=INFUSION_DRUGS)


@router.post("/patients/{ref}/infusion")
async def infusion(request: Request, ref: str,
                   user: Principal = Depends(requires(Action.RECORD_INFUSION))) -> Response:
    core = context(request).core
    values = _values(await request.form())
    try:
        _checked_ref(ref)
        when = when_of(values.get("occurred_at", ""), core.protocol.zone)
        _moment(when, "occurred_at")
        data = _infusion_data(values)
    except FormError as exc:
        return _form(request, user, "forms/infusion.html", ref, values=values,
                     errors={exc.field: exc.reason}, status_code=400,
                     infusion_drugs=INFUSION_DRUGS)
    mg_per_kg = data["dose_mg"] / data["weight_kg"] if data["weight_kg"] else None
    return _preview_or_record(request, user, "forms/infusion.html", ref, values,
                              "InfusionAdministered", data, when, mg_per_kg=mg_per_kg,
                              infusion_drugs=INFUSION_DRUGS)


# ---------------------------------------------------------------------- void / correct
def _target(request: Request, ref: str, event_id: str) -> RecordedEvent | None:
    found = context(request).core.store.get_events([event_id]).get(event_id)
    return found if found is not None and found.stream == ref else None


def _not_found(request: Request, user: Principal) -> Response:
    from web.templating import render

    return render(request, "error.html", {"title": "Not found",
                                          "message": "No such entry for this patient."},
                  user=user, status_code=404)


def _target_view(target: RecordedEvent) -> dict[str, Any]:
    return {"event_id": target.event_id, "type": target.type,
            "occurred_on": target.occurred_on.isoformat(),
            "data": dump_data(target.data)}


@router.get("/patients/{ref}/entries/{event_id}/void")
def void_form(request: Request, ref: str, event_id: str,
              user: Principal = Depends(requires(Action.VOID_CORRECT))) -> Response:
    target = _target(request, ref, event_id)
    if target is None:
        return _not_found(request, user)
    return _form(request, user, "forms/void.html", ref, target=_target_view(target),
                 mode="void")


@router.get("/patients/{ref}/entries/{event_id}/correct")
def correct_form(request: Request, ref: str, event_id: str,
                 user: Principal = Depends(requires(Action.VOID_CORRECT))) -> Response:
    target = _target(request, ref, event_id)
    if target is None:
        return _not_found(request, user)
    view = _target_view(target)
    return _form(request, user, "forms/void.html", ref, target=view, mode="correct",
                 values={"data": orjson.dumps(view["data"], option=orjson.OPT_INDENT_2
                                              | orjson.OPT_SORT_KEYS).decode()})


@router.post("/patients/{ref}/entries/{event_id}/void")
async def void(request: Request, ref: str, event_id: str,
               user: Principal = Depends(requires(Action.VOID_CORRECT))) -> Response:
    return await _void_or_correct(request, ref, event_id, "void", user)


@router.post("/patients/{ref}/entries/{event_id}/correct")
async def correct(request: Request, ref: str, event_id: str,
                  user: Principal = Depends(requires(Action.VOID_CORRECT))) -> Response:
    return await _void_or_correct(request, ref, event_id, "correct", user)


async def _void_or_correct(request: Request, ref: str, event_id: str, mode: str,
                           user: Principal) -> Response:
    target = _target(request, ref, event_id)
    if target is None:
        return _not_found(request, user)
    core = context(request).core
    values = _values(await request.form())
    view = _target_view(target)
    data: dict[str, Any] = {"target_event_id": event_id, "reason": values.get("reason", "")}
    if mode == "correct":
        try:
            replacement = orjson.loads(values.get("data", ""))
        except orjson.JSONDecodeError:
            replacement = None
        if not isinstance(replacement, dict):
            return _form(request, user, "forms/void.html", ref, values=values, target=view,
                         mode=mode, errors={"data": "must be a JSON object"},
                         status_code=400)
        data["data"] = replacement
    today = core.clock.now().astimezone(core.protocol.zone).date().isoformat()
    return _preview_or_record(request, user, "forms/void.html", ref, values,
                              "EntryVoided" if mode == "void" else "EntryCorrected", data,
                              today, target=view, mode=mode)
