"""``/audit``: who looked at or changed what (the access streams), one patient's access
history, one user's activity, and the hash-chain ``verify`` result. Read only; viewing a
patient's access history is itself recorded."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from events.vocabulary.common import PATIENT_RE
from tracker.accounts import USERNAME_RE
from web.access import AccessLog, log_access
from web.deps import Principal, context, requires
from web.permissions import Action
from web.templating import render

router = APIRouter()


def _log(request: Request) -> AccessLog:
    return context(request).access


@router.get("/audit")
def audit_home(request: Request, patient: str = "", user_name: str = "",
               user: Principal = Depends(requires(Action.VIEW_AUDIT))) -> Response:
    log = _log(request)
    if patient:
        return audit_patient(request, patient, user)
    if user_name:
        return audit_user(request, user_name, user)
    return render(request, "audit/index.html", {"users": log.users()}, user=user)


@router.get("/audit/patients/{ref}")
def audit_patient_page(request: Request, ref: str,
                       user: Principal = Depends(requires(Action.VIEW_AUDIT))) -> Response:
    return audit_patient(request, ref, user)


def audit_patient(request: Request, ref: str, user: Principal) -> Response:
    if not PATIENT_RE.fullmatch(ref):
        return render(request, "error.html", {
            "title": "Bad request", "message": "patient: not a pseudonymous reference"},
            user=user, status_code=400)
    rows = _log(request).of_patient(ref)
    log_access(request, user, "audit", patient=ref, target=f"/audit/patients/{ref}")
    return render(request, "audit/patient.html", {"ref": ref, "rows": rows}, user=user)


@router.get("/audit/users/{name}")
def audit_user_page(request: Request, name: str,
                    user: Principal = Depends(requires(Action.VIEW_AUDIT))) -> Response:
    return audit_user(request, name, user)


def audit_user(request: Request, name: str, user: Principal) -> Response:
    if not USERNAME_RE.fullmatch(name):
        return render(request, "error.html", {
            "title": "Bad request", "message": "user: not a user name"},
            user=user, status_code=400)
    ctx = context(request)
    rows = _log(request).of_user(name)
    history = ctx.accounts.history(name) if ctx.accounts.get(name) else []
    return render(request, "audit/user.html", {"name": name, "rows": rows,
                                               "history": history}, user=user)


@router.get("/audit/verify")
def audit_verify(request: Request,
                 user: Principal = Depends(requires(Action.VIEW_AUDIT))) -> Response:
    core = context(request).core
    breaks = core.store.verify()
    return render(request, "audit/verify.html", {
        "breaks": [str(b) for b in breaks], "events": core.store.count()}, user=user)
