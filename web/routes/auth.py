"""``/login`` and ``POST /logout``.

The login form has its own CSRF token (no session exists yet): a random value in the
``cno_login_csrf`` cookie that the form must repeat (double submit). A successful login
always starts a new session (a fresh opaque cookie), so a session id can never be fixed
in advance."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from tracker.accounts import LoginRefused
from web.deps import SESSION_COOKIE, context, current_principal
from web.security import CsrfFailed, check_csrf, same_token
from web.templating import render

router = APIRouter()
LOGIN_CSRF_COOKIE = "cno_login_csrf"
REFUSED = "Wrong username or password, or the account is locked or disabled."


def safe_next(target: str | None) -> str:
    """Only a path on this site (never ``//host`` or a scheme): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or context(request).settings.https


def _login_page(request: Request, next_: str, *, error: str | None = None,
                username: str = "", status_code: int = 200) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = render(request, "login.html", {
        "login_csrf": token, "next": safe_next(next_), "error": error, "username": username},
        user=None, status_code=status_code)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="lax",
                        secure=_secure(request), path="/login")
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    if current_principal(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, next)


@router.post("/login")
def login(request: Request, username: Annotated[str, Form()] = "",
          password: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
          next: Annotated[str, Form()] = "/") -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    if expected is None or not same_token(csrf_token, expected):
        raise CsrfFailed()
    ctx = context(request)
    try:
        account = ctx.accounts.authenticate(username.strip(), password)
    except LoginRefused:
        return _login_page(request, next, error=REFUSED, username=username.strip()[:128],
                           status_code=401)
    token, _ = ctx.sessions.start(account.username)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax",
                        secure=_secure(request), path="/")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    principal = await run_in_threadpool(current_principal, request)
    token = request.cookies.get(SESSION_COOKIE)
    if principal is not None and token:
        await check_csrf(request, principal.csrf_token)
        await run_in_threadpool(context(request).sessions.end, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
