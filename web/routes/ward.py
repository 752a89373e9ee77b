"""The ward list ``/`` (the ``due`` semantics: overdue, due, due soon and news), its
filters and counts, and its CSV export ``/ward.csv``."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import date
from typing import Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from markupsafe import Markup
from starlette.responses import HTMLResponse, Response

from tracker.bootstrap import App
from tracker.due import STANDING_KINDS
from tracker.readmodel import StatusProjector
from tracker.worklist import SOON_DAYS, read_worklist
from web.access import log_access
from web.deps import Principal, context, requires
from web.permissions import Action
from web.templating import render

router = APIRouter()
SECTIONS = (("overdue", "Overdue"), ("due", "Due"), ("due_soon", "Due soon"), ("news", "News"))
REFRESH_SECONDS = 60
#: items shown per section (earliest first); the counts and the CSV export have them all
SECTION_LIMIT = 100
Severity = Literal["", "info", "warning", "urgent"]
CSV_COLUMNS = ("due_on", "section", "status", "severity", "patient", "kind", "item", "fires_on")


def ward_items(core: App, on: date, soon_days: int = SOON_DAYS) -> list[dict[str, Any]]:
    """Exactly ``cno-tracker due --at ON --soon SOON_DAYS``: the read model caught up, then
    :func:`tracker.worklist.read_worklist` (the pages use the same through
    :class:`web.wardcache.WardCache`, which skips the query when nothing changed)."""
    StatusProjector(core.store, core.protocol, core.clock).catch_up()
    with core.engine.connect() as conn:
        return read_worklist(conn, on, soon_days=soon_days,
                             lookback_days=core.protocol.alert_lookback_days)


def section_of(item: dict[str, Any]) -> str:
    """News of a moment (a relapse, a deviation) is listed apart from standing items."""
    return "news" if item["kind"] not in STANDING_KINDS else str(item["status"])


def _filtered(items: list[dict[str, Any]], severity: str, kind: str, patient: str
              ) -> list[dict[str, Any]]:
    needle = patient.strip().lower()
    return [dict(i, section=section_of(i)) for i in items
            if (not severity or i["severity"] == severity)
            and (not kind or i["kind"] == kind)
            and (not needle or needle in i["patient"].lower())]


def _today(core: App) -> date:
    return core.clock.now().astimezone(core.protocol.zone).date()


@router.get("/")
def ward(request: Request, severity: Severity = "", kind: str = "", patient: str = "",
         user: Principal = Depends(requires(Action.VIEW_WARD))) -> Response:
    ctx = context(request)
    on = _today(ctx.core)
    everything = ctx.ward.items(on)
    # the filtered list and its rendered fragment hold nothing of the user: built once per
    # list and filter, then shared by every request until the list changes
    page, fragment = ctx.ward.derived(everything, (on, severity, kind, patient),
                                      lambda: _page(request, on, everything, severity, kind,
                                                    patient))
    if request.headers.get("hx-request"):
        return HTMLResponse(fragment)
    return render(request, "ward.html", dict(page, ward_list=fragment), user=user)


def _page(request: Request, on: date, everything: list[dict[str, Any]], severity: str,
          kind: str, patient: str) -> tuple[dict[str, Any], Markup]:
    items = _filtered(everything, severity, kind, patient)
    counts = Counter(i["section"] for i in items)
    query = {k: v for k, v in (("severity", severity), ("kind", kind), ("patient", patient))
             if v}
    page = {"on": on, "sections": SECTIONS, "counts": counts, "limit": SECTION_LIMIT,
            "by_section": {s: [i for i in items if i["section"] == s][:SECTION_LIMIT]
                           for s, _ in SECTIONS},
            "kinds": sorted({i["kind"] for i in everything} | ({kind} if kind else set())),
            "severity": severity, "kind": kind, "patient": patient,
            "query": urlencode(query), "refresh": REFRESH_SECONDS, "total": len(items)}
    env = request.app.state.templates.env
    return page, Markup(env.get_template("ward_list.html").render(page))


@router.get("/ward.csv")
def ward_csv(request: Request, severity: Severity = "", kind: str = "", patient: str = "",
             user: Principal = Depends(requires(Action.EXPORT))) -> Response:
    ctx = context(request)
    on = _today(ctx.core)
    items = _filtered(ctx.ward.items(on), severity, kind, patient)
    log_access(request, user, "export", target=str(request.url.path) + (
        f"?{request.url.query}" if request.url.query else ""))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(items)
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="ward-{on.isoformat()}.csv"'})
