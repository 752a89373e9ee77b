"""The patient page ``/patients/{ref}``: the ``status`` read model, every finding and
deviation with its ``explain`` text, the timeline with void/correction marks, the course
chart (``/patients/{ref}/chart``, inline SVG, cached by stream version), and the audit
control (``at`` = ``--at``, ``known_at`` = ``--known-at``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from markupsafe import Markup
from starlette.responses import HTMLResponse, Response

from tracker.bootstrap import App
from tracker.projections.common import Explanation
from tracker.status import Evaluation
from web.access import log_access
from web.deps import Principal, context, requires
from web.patientcache import PatientView
from web.permissions import Action, allowed
from web.templating import render

router = APIRouter()


class BadView(ValueError):
    """An audit control value that is not a date or an instant."""


@dataclass(frozen=True)
class View:
    """Which past the page shows: the clinical date and the known-at instant."""

    at: date
    known_at: datetime | None
    today: date

    @property
    def past(self) -> bool:
        return self.at != self.today or self.known_at is not None

    def query(self, at: str, known_at: str) -> str:
        return urlencode({k: v for k, v in (("at", at), ("known_at", known_at)) if v})


def parse_view(core: App, at: str, known_at: str) -> View:
    """``at`` an ISO date; ``known_at`` an ISO instant with an offset, a local date-time
    (the form's ``datetime-local``, read in the centre's zone) or a bare date (the end of
    that local day, as ``--known-at`` reads it)."""
    zone = core.protocol.zone
    today = core.clock.now().astimezone(zone).date()
    try:
        on = date.fromisoformat(at) if at else today
    except ValueError:
        raise BadView(f"at: {at!r} is not a date (YYYY-MM-DD)") from None
    instant = None
    if known_at:
        try:
            if len(known_at) == 10:
                instant = datetime.combine(date.fromisoformat(known_at), time.max, zone)
            else:
                instant = datetime.fromisoformat(known_at)
                if instant.tzinfo is None:
                    instant = instant.replace(tzinfo=zone)
        except ValueError:
            raise BadView(f"known_at: {known_at!r} is not a date or a date and time") from None
    return View(on, instant, today)


def _missing(ref: str) -> Callable[[], Exception]:
    return lambda: HTTPException(404, f"No patient {ref!r} in the store.")


def explanations_for(ev: Evaluation, kind: str, event_id: str | None) -> list[Explanation]:
    """The ``explain`` texts behind one finding or deviation: those naming its kind and,
    when it rests on an event, that event."""
    out = []
    for x in ev.explanations:
        named = x.subject == kind or x.subject.endswith("." + kind) \
            or x.subject.startswith(kind + ":")
        if named and (event_id is None or not x.event_ids or event_id in x.event_ids):
            out.append(x)
    if not out and event_id is not None:
        out = [x for x in ev.explanations if event_id in x.event_ids]
    return out


def _bad_view(request: Request, user: Principal, exc: BadView) -> Response:
    return render(request, "error.html", {"title": "Bad audit date", "message": str(exc)},
                  user=user, status_code=400)


@router.get("/patients/{ref}")
def patient(request: Request, ref: str, at: str = "", known_at: str = "",
            user: Principal = Depends(requires(Action.VIEW_PATIENT))) -> Response:
    core = context(request).core
    try:
        view = parse_view(core, at, known_at)
    except BadView as exc:
        return _bad_view(request, user, exc)
    views = context(request).patients
    cached = views.get(core, ref, view.at, view.known_at, _missing(ref))
    key = (ref, cached.version, view.at, view.known_at, core.protocol.fingerprint, user.role,
           at, known_at)
    body = views.fragment(key, lambda: _body(request, core, ref, cached, view, at, known_at,
                                             user.role))
    log_access(request, user, "view", patient=ref, target=_target(request))
    return render(request, "patient.html", {"ref": ref, "body": body}, user=user)


def _body(request: Request, core: App, ref: str, cached: PatientView, view: View, at: str,
          known_at: str, role: str) -> Markup:
    """The page's content: nothing of the user in it but the role's permissions."""
    ev, status = cached.evaluation, cached.status
    findings = [dict(f, explain=explanations_for(ev, f["kind"], f["event_id"]))
                for f in status["findings"]]
    deviations = [dict(d, explain=explanations_for(ev, d["kind"], d["event_id"]))
                  for d in status["deviations"]]
    monitoring = [dict(m, explain=explanations_for(ev, m["item"], None))
                  for m in status["monitoring"]]
    rows = [dict(r, summary=summary_of(r)) for r in cached.timeline]
    env = request.app.state.templates.env
    return Markup(env.get_template("patient_body.html").render({
        "ref": ref, "s": status, "view": view, "findings": findings,
        "deviations": deviations, "monitoring": monitoring, "timeline": rows,
        "at": at, "known_at": known_at, "query": view.query(at, known_at),
        "known_at_local": view.known_at.astimezone(core.protocol.zone).isoformat(
            timespec="minutes") if view.known_at else None,
        "can": {a.value: allowed(role, a) for a in Action}}))


@router.get("/patients/{ref}/chart")
def chart(request: Request, ref: str, at: str = "", known_at: str = "",
          user: Principal = Depends(requires(Action.VIEW_PATIENT))) -> Response:
    ctx = context(request)
    core = ctx.core
    try:
        view = parse_view(core, at, known_at)
    except BadView as exc:
        return _bad_view(request, user, exc)
    cached = ctx.patients.get(core, ref, view.at, view.known_at, _missing(ref))
    key = (ref, cached.version, view.at, view.known_at, core.protocol.fingerprint)
    log_access(request, user, "chart", patient=ref, target=_target(request))
    found = ctx.charts.get(key, lambda: cached.evaluation)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(found.gzipped, media_type="text/html; charset=utf-8", headers={
            "Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
    return HTMLResponse(found.html, headers={"Vary": "Accept-Encoding"})


def _target(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def summary_of(row: dict[str, Any]) -> str:
    """A timeline row's data in a line (canonical duplicates left out)."""
    return ", ".join(f"{k}: {v}" for k, v in row["data"].items()
                     if k not in ("canonical_value", "canonical_unit") and v is not None)
