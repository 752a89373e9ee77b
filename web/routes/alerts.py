"""Alerts ``/alerts``: mine first (delivered to my roster id), then my roles' (delivered
to someone holding my role), then the rest; each alert's page ``/alerts/{id}`` shows its
deliveries and its history (the alert's own event stream), and Acknowledge with a note as
the logged-in user. ``/a/<short id>`` (the link in SMS and e-mail) opens an alert after
login."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from starlette.responses import RedirectResponse, Response

from alerts.links import LinkRefused, is_token
from alerts.outbox import AlertRow, DeliveryRow, Outbox, stream_of
from alerts.tables import alert_link_uses
from alerts.wiring import build_links
from web.access import log_access
from web.deps import Principal, WebContext, context, requires
from web.permissions import Action
from web.templating import render

router = APIRouter()
NOTE_MAX = 500
SECTIONS = (("mine", "Mine"), ("roles", "My roles'"), ("others", "Other alerts"))


@dataclass(frozen=True)
class Listed:
    alert: AlertRow
    deliveries: list[DeliveryRow]
    section: str


def _outbox(ctx: WebContext) -> Outbox:
    return Outbox(ctx.core.store, ctx.core.protocol.zone)


def my_role_members(ctx: WebContext, user: Principal) -> set[str]:
    """Staff ids sharing a role with me: my web role, and my roster roles when linked."""
    mine = {user.role}
    for person in ctx.roster.staff:
        if person.id == user.member:
            mine.update(person.roles)
    return {p.id for p in ctx.roster.staff if mine & set(p.roles)}


def section_of(user: Principal, colleagues: set[str], deliveries: list[DeliveryRow]) -> str:
    recipients = {d.recipient for d in deliveries}
    if user.member is not None and user.member in recipients:
        return "mine"
    return "roles" if recipients & colleagues else "others"


def listed(ctx: WebContext, user: Principal, *, open_only: bool) -> list[Listed]:
    outbox = _outbox(ctx)
    with ctx.core.engine.connect() as conn:
        rows = outbox.alerts(conn, open_only=open_only)
        by_alert: dict[str, list[DeliveryRow]] = {}
        for d in outbox.deliveries(conn, [a.alert_id for a in rows]) if rows else []:
            by_alert.setdefault(d.alert_id, []).append(d)
    colleagues = my_role_members(ctx, user)
    out = [Listed(a, by_alert.get(a.alert_id, []),
                  section_of(user, colleagues, by_alert.get(a.alert_id, []))) for a in rows]
    order = {key: n for n, (key, _) in enumerate(SECTIONS)}
    out.sort(key=lambda x: (order[x.section], x.alert.status != "open",
                            -x.alert.raised_at.timestamp(), x.alert.alert_id))
    return out


@router.get("/alerts")
def alerts_page(request: Request, all: int = 0,
                user: Principal = Depends(requires(Action.VIEW_ALERTS))) -> Response:
    ctx = context(request)
    items = listed(ctx, user, open_only=not all)
    return render(request, "alerts.html", {
        "sections": SECTIONS, "all": bool(all),
        "by_section": {k: [x for x in items if x.section == k] for k, _ in SECTIONS}},
        user=user)


def _history(ctx: WebContext, alert_id: str) -> list[dict[str, Any]]:
    zone = ctx.core.protocol.zone
    return [{"type": e.type, "at": e.recorded_at.astimezone(zone).isoformat(timespec="seconds"),
             "by": e.recorded_by,
             "data": {k: v for k, v in e.data.model_dump(mode="json", exclude_none=True).items()
                      if k != "alert_id"}}
            for e in ctx.core.store.read_stream(stream_of(alert_id))]


def _one(ctx: WebContext, alert_id: str) -> tuple[AlertRow, list[DeliveryRow]]:
    outbox = _outbox(ctx)
    with ctx.core.engine.connect() as conn:
        found = outbox.get_alerts(conn, [alert_id]).get(alert_id)
        if found is None:
            raise HTTPException(404, f"No alert {alert_id!r}.")
        return found, outbox.deliveries(conn, [alert_id])


def _alert_page(request: Request, ctx: WebContext, user: Principal, alert_id: str, *,
                error: str | None = None, note: str = "", status_code: int = 200,
                via_link: bool = False) -> Response:
    alert, deliveries = _one(ctx, alert_id)
    return render(request, "alert.html", {
        "a": alert, "deliveries": deliveries, "history": _history(ctx, alert_id),
        "error": error, "note": note, "note_max": NOTE_MAX, "via_link": via_link},
        user=user, status_code=status_code)


@router.get("/alerts/{alert_id}")
def alert_page(request: Request, alert_id: str,
               user: Principal = Depends(requires(Action.VIEW_ALERTS))) -> Response:
    return _alert_page(request, context(request), user, alert_id)


@router.post("/alerts/{alert_id}/ack")
def acknowledge(request: Request, alert_id: str, note: Annotated[str, Form()] = "",
                via: Annotated[str, Form()] = "",
                user: Principal = Depends(requires(Action.ACK_ALERT))) -> Response:
    ctx = context(request)
    text = note.strip()
    if len(text) > NOTE_MAX:
        return _alert_page(request, ctx, user, alert_id, note=text, status_code=400,
                           error=f"note: at most {NOTE_MAX} characters ({len(text)} given)")
    alert, _ = _one(ctx, alert_id)  # 404 for an unknown alert
    outbox = _outbox(ctx)
    with outbox.transaction() as writer:
        before = outbox.acknowledge(writer, alert_id, by=user.username, note=text or None,
                                    now=ctx.core.clock.now(),
                                    via="link" if via == "link" else None)
    log_access(request, user, "ack", patient=alert.patient, target=f"/alerts/{alert_id}")
    if before.status == "cancelled":
        return _alert_page(request, ctx, user, alert_id, status_code=409,
                           error="This alert was cancelled: nothing to acknowledge.")
    return RedirectResponse(f"/alerts/{alert_id}", status_code=303)


LINK_PAGES = {
    "tampered": (400, "Link not valid",
                 "This link is damaged or was not made by this tracker. Nothing was "
                 "acknowledged: open the alert from the alert list instead."),
    "expired": (410, "Link expired",
                "This link was valid for 24 hours and has expired. Nothing was "
                "acknowledged: open the alert from the alert list instead."),
    "used": (410, "Link already used",
             "This link works once and was already opened. Nothing was acknowledged: "
             "open the alert from the alert list instead."),
    "off": (404, "Link not valid",
            "Signed links are not configured here. Nothing was acknowledged."),
}


def _link_refused(request: Request, user: Principal, reason: str) -> Response:
    status, title, message = LINK_PAGES[reason]
    return render(request, "error.html", {"title": title, "message": message}, user=user,
                  status_code=status)


def signed_link(request: Request, ctx: WebContext, user: Principal, token: str) -> Response:
    """A one-time signed e-mail link: verified, recorded as used, then the alert's page
    with its Acknowledge form."""
    signer = build_links(ctx.core.settings)
    if signer is None:
        return _link_refused(request, user, "off")
    now = ctx.core.clock.now()
    try:
        claim = signer.verify(token, now)
    except LinkRefused as exc:
        return _link_refused(request, user, exc.reason)
    store = ctx.core.store
    with store.recorder.write() as conn:
        first = conn.execute(store.recorder.insert_if_absent(
            alert_link_uses, {"jti": claim.jti, "alert_id": claim.alert_id, "used_at": now,
                              "used_by": user.username[:128]}, ["jti"])
            .returning(alert_link_uses.c.jti)).first()
    if first is None:
        return _link_refused(request, user, "used")
    return _alert_page(request, ctx, user, claim.alert_id, via_link=True)


@router.get("/a/{short}")
def short_link(request: Request, short: str,
               user: Principal = Depends(requires(Action.VIEW_ALERTS))) -> Response:
    """The link in SMS and e-mail: a prefix of the alert id, or a one-time signed token."""
    ctx = context(request)
    if is_token(short):
        return signed_link(request, ctx, user, short)
    with ctx.core.engine.connect() as conn:
        found = _outbox(ctx).find(conn, short)
    if len(found) != 1:
        raise HTTPException(404, "No single alert matches this link.")
    return RedirectResponse(f"/alerts/{found[0].alert_id}", status_code=303)
