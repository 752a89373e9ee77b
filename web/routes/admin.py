"""``/admin``: staff accounts and roles (add, change role, disable: each an event in the
account's stream), the roster (read only: it is a file), and the worker's health. The
admin role sees no clinical data here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import RedirectResponse, Response

from tracker.accounts import ROLES
from tracker.errors import TrackerError
from web.deps import Principal, WebContext, context, requires
from web.permissions import Action
from web.templating import render

router = APIRouter()


def _page(request: Request, ctx: WebContext, user: Principal, *, error: str | None = None,
          field: str | None = None, status_code: int = 200) -> Response:
    now = ctx.core.clock.now()
    accounts = [{"a": a, "state": "disabled" if a.disabled else
                 "locked" if a.locked(now) else "active"} for a in ctx.accounts.all()]
    ready, checks = ctx.health.ready()
    return render(request, "admin/index.html", {
        "accounts": accounts, "roles": ROLES, "staff": ctx.roster.staff,
        "ready": ready, "checks": checks, "error": error, "field": field},
        user=user, status_code=status_code)


@router.get("/admin")
def admin_home(request: Request,
               user: Principal = Depends(requires(Action.VIEW_ADMIN))) -> Response:
    return _page(request, context(request), user)


def _member_exists(ctx: WebContext, member: str) -> bool:
    return any(s.id == member for s in ctx.roster.staff)


@router.post("/admin/users")
def add_user(request: Request, username: Annotated[str, Form()] = "",
             role: Annotated[str, Form()] = "", member: Annotated[str, Form()] = "",
             password: Annotated[str, Form()] = "",
             user: Principal = Depends(requires(Action.MANAGE_ACCOUNTS))) -> Response:
    ctx = context(request)
    if member and not _member_exists(ctx, member):
        return _page(request, ctx, user, error="no such staff id in the roster",
                     field="member", status_code=400)
    try:
        ctx.accounts.add(username.strip(), role, password, member=member or None,
                         by=user.username)
    except TrackerError as exc:
        text = str(exc)
        field = next((f for f, w in (("username", "user name"), ("role", "role"),
                                     ("password", "password"), ("username", "exists"))
                      if w in text), None)
        return _page(request, ctx, user, error=text, field=field, status_code=400)
    return RedirectResponse("/admin", status_code=303)


@router.post("/admin/users/{name}/disable")
def disable_user(request: Request, name: str,
                 user: Principal = Depends(requires(Action.MANAGE_ACCOUNTS))) -> Response:
    ctx = context(request)
    try:
        ctx.accounts.disable(name, by=user.username, reason="disabled in /admin")
    except TrackerError as exc:
        code = 404 if exc.exit_code == 4 else 400
        return _page(request, ctx, user, error=str(exc), status_code=code)
    return RedirectResponse("/admin", status_code=303)


@router.post("/admin/users/{name}/role")
def change_role(request: Request, name: str, role: Annotated[str, Form()] = "",
                member: Annotated[str, Form()] = "",
                user: Principal = Depends(requires(Action.MANAGE_ACCOUNTS))) -> Response:
    ctx = context(request)
    if member and not _member_exists(ctx, member):
        return _page(request, ctx, user, error="no such staff id in the roster",
                     status_code=400)
    try:
        ctx.accounts.set_role(name, role, member=member or None, by=user.username)
    except TrackerError as exc:
        return _page(request, ctx, user, error=str(exc), status_code=400)
    return RedirectResponse("/admin", status_code=303)
