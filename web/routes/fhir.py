"""The FHIR routes: ``POST /fhir`` (an integration account's API token sends a Bundle or a
resource in: the same path as ``cno-tracker fhir import``) and
``GET /fhir/Patient/{ref}/$everything`` (a logged-in reader: the same Bundle as
``cno-tracker fhir export``, with the patient's alerts as Communications; an access event
like any patient view).

Every answer is FHIR JSON: an ``OperationOutcome`` for the import's report and for every
refusal (400 naming the entry index, type, id and element path; 401; 403; 404; 413; 415),
never an HTML page, never an echo of a submitted value."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from starlette.responses import Response

from alerts.outbox import stream_of as alert_stream
from alerts.tables import alerts as ALERTS
from events.envelope import RecordedEvent
from events.store import is_patient_stream
from tracker.bootstrap import App
from tracker.errors import ConfigurationError, ImportRefused
from tracker.interop.fhir_in import import_fhir
from tracker.interop.fhir_out import export_bundle
from tracker.interop.identity import LinkTable, link_key_from_env
from tracker.interop.ingest import Ingest
from web.access import log_access
from web.deps import Principal, context, requires_api
from web.permissions import Action
from web.routes.patient import BadView, parse_view
from web.security import read_at_most

router = APIRouter()
FHIR_JSON = "application/fhir+json"
ACCEPTED_TYPES = (FHIR_JSON, "application/json")
TRUE = {"true", "1", "yes"}


def outcome(status: int, issues: list[dict[str, Any]],
            headers: dict[str, str] | None = None) -> Response:
    """An ``OperationOutcome`` answer (``application/fhir+json``)."""
    body = {"resourceType": "OperationOutcome", "issue": issues}
    return Response(orjson.dumps(body), status_code=status, media_type=FHIR_JSON,
                    headers=headers)


def issue(severity: str, code: str, diagnostics: str, where: str | None = None
          ) -> dict[str, Any]:
    found: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if where:
        found["expression"] = [where]
    return found


def refusal(status: int, code: str, diagnostics: str, **headers: str) -> Response:
    return outcome(status, [issue("error", code, diagnostics)], headers or None)


def _ingest(core: App, user: Principal, *, enrol: bool) -> Ingest:
    links = LinkTable(core.engine, link_key_from_env())
    return Ingest(core.store, links, clock=core.clock, protocol=core.protocol, enrol=enrol,
                  recorded_by=user.username)


@router.post("/fhir")
async def fhir_in(request: Request, enrol: str = "", strict: str = "",
                  user: Principal = Depends(requires_api(Action.FHIR_WRITE))) -> Response:
    ctx = context(request)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ACCEPTED_TYPES:
        return refusal(415, "not-supported",
                       f"Content-Type must be {' or '.join(ACCEPTED_TYPES)}")
    limit = ctx.settings.fhir_max_bytes
    raw = await read_at_most(request, limit)
    if raw is None:
        return refusal(413, "too-costly", f"the body is larger than {limit} bytes")
    try:
        ingest = _ingest(ctx.core, user, enrol=enrol.lower() in TRUE)
    except ConfigurationError:
        return refusal(503, "exception", "the identity link key is not configured")
    from starlette.concurrency import run_in_threadpool

    try:
        report = await run_in_threadpool(import_fhir, raw, ingest,
                                         strict=strict.lower() in TRUE)
    except ImportRefused as exc:
        issues = [issue("error", "invalid", p.reason, p.field) for p in exc.problems]
        issues.append(issue("information", "informational",
                            f"{len(exc.problems)} problem(s) found; nothing was written"))
        return outcome(400, issues)
    if report.written:
        ctx.ward.invalidate()
    lines = report.summary("request")
    counts = {"written": report.written, "duplicates": report.duplicates,
              "corrections": report.corrections, "voids": report.voids,
              "patients": len(report.patients), "enrolled": len(report.enrolled),
              "skipped": report.skips.total}
    issues = [issue("information", "informational", line) for line in lines]
    issues.append(issue("information", "informational",
                        " ".join(f"{k}={v}" for k, v in counts.items())))
    return outcome(201 if report.written else 200, issues)


class _NoPatient(Exception):
    pass


def _alert_streams(core: App, ref: str) -> list[list[RecordedEvent]]:
    with core.engine.connect() as conn:
        ids = conn.execute(select(ALERTS.c.alert_id).where(ALERTS.c.patient == ref)
                           .order_by(ALERTS.c.raised_at, ALERTS.c.alert_id)).scalars().all()
    return [core.store.read_stream(alert_stream(a)) for a in ids]


@router.get("/fhir/Patient/{ref}/$everything")
def everything(request: Request, ref: str, _at: str = "", _known_at: str = "",
               user: Principal = Depends(requires_api(Action.VIEW_PATIENT))) -> Response:
    core = context(request).core
    try:
        view = parse_view(core, _at, _known_at)
    except BadView as exc:
        # named, not echoed (BadView quotes the value, for the HTML form beside it)
        field = str(exc).split(":", 1)[0]
        return refusal(400, "invalid", f"_{field}: not a date (YYYY-MM-DD), or for "
                       "_known_at a date and time")
    if not is_patient_stream(ref):
        return refusal(404, "not-found", "no such patient")
    try:
        ev = context(request).patients.get(core, ref, view.at, view.known_at,
                                           _NoPatient).evaluation
    except _NoPatient:
        return refusal(404, "not-found", "no such patient")
    log_access(request, user, "export", patient=ref, target=request.url.path + (
        f"?{request.url.query}" if request.url.query else ""))
    bundle = export_bundle(ev, include_birth_date=False, now=core.clock.now(),
                           alerts=_alert_streams(core, ref))
    return Response(orjson.dumps(bundle), media_type=FHIR_JSON)
