"""What every route shares: the application context, the logged-in principal, and the one
permission dependency.

A route declares its permission with exactly one dependency::

    @router.get("/patients/{ref}")
    def patient(request: Request,
                user: Principal = Depends(requires(Action.VIEW_PATIENT))) -> Response: ...

:func:`requires` finds the session behind the cookie, re-reads the account (a disabled
account's sessions end at its next request), checks the role against
:mod:`web.permissions`, and on every state-changing method checks the CSRF token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Depends, Request

from web.permissions import Action, allowed
from web.security import check_csrf

if TYPE_CHECKING:
    from alerts.roster import Roster
    from tracker.accounts import Accounts
    from tracker.bootstrap import App
    from web.access import AccessLog
    from web.charts import ChartCache
    from web.health import Health
    from web.patientcache import PatientViews
    from web.sessions import Sessions
    from web.settings import WebSettings
    from web.wardcache import WardCache

SESSION_COOKIE = "cno_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class WebContext:
    """Everything the routes need, built once by :func:`web.app.create_app`."""

    core: App
    settings: WebSettings
    sessions: Sessions
    accounts: Accounts
    roster: Roster
    charts: ChartCache
    health: Health
    ward: WardCache
    patients: PatientViews
    access: AccessLog


@dataclass(frozen=True)
class Principal:
    username: str
    role: str
    member: str | None  # the roster staff id, when the account is linked to one
    csrf_token: str
    #: authenticated by an API token (``Authorization: Bearer``), not a session cookie
    machine: bool = False


class LoginRequired(Exception):
    """No live session: the browser goes to /login and comes back."""


class ApiUnauthorized(Exception):
    """A machine route without a valid API token or session: 401 (OperationOutcome)."""


class ApiForbidden(Exception):
    """A machine route for a role that may not use it: 403 (OperationOutcome)."""

    def __init__(self, action: Action) -> None:
        super().__init__(action.value)
        self.action = action


class Forbidden(Exception):
    def __init__(self, action: Action) -> None:
        super().__init__(action.value)
        self.action = action


def context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.web
    return ctx


def current_principal(request: Request) -> Principal | None:
    """The logged-in user behind this request's cookie, or None."""
    if hasattr(request.state, "principal"):
        found: Principal | None = request.state.principal
        return found
    principal = None
    token = request.cookies.get(SESSION_COOKIE)
    bearer = bearer_token(request)
    if bearer is not None:  # a machine client: its token only, never a cookie beside it
        account = context(request).accounts.by_token(bearer)
        if account is not None:
            principal = Principal(account.username, str(account.role), None, "",
                                  machine=True)
    elif token:
        ctx = context(request)
        loaded = ctx.sessions.load_with_account(token)
        if loaded is not None:
            session, account = loaded
            if account is None or account.disabled:
                ctx.sessions.end_all(session.username)
            else:
                principal = Principal(account.username, str(account.role), account.member,
                                      session.csrf_token)
    request.state.principal = principal
    return principal


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header ('' for another scheme), or None."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


#: every guard made by :func:`requires`, with its action (create_app checks each route)
GUARDS: dict[Callable[..., Any], Action] = {}


def requires(action: Action) -> Callable[..., Awaitable[Principal]]:
    """The dependency that lets a request through only for a role allowed ``action``."""

    def authorize(request: Request) -> Principal:  # sync: FastAPI runs it in a thread
        principal = current_principal(request)
        if principal is None:
            raise LoginRequired()
        if not allowed(principal.role, action):
            raise Forbidden(action)
        return principal

    async def guard(request: Request, principal: Principal = Depends(authorize)) -> Principal:
        if request.method not in SAFE_METHODS:
            await check_csrf(request, principal.csrf_token)
        return principal

    GUARDS[guard] = action
    return guard


def requires_api(action: Action) -> Callable[..., Awaitable[Principal]]:
    """:func:`requires` for the FHIR routes: an API token (``Authorization: Bearer``) or a
    session; refusals are 401/403 answers for a machine (never a redirect to /login). A
    token-authenticated request carries no cookie, so it needs no CSRF token."""

    def authorize(request: Request) -> Principal:
        principal = current_principal(request)
        if principal is None:
            raise ApiUnauthorized()
        if not allowed(principal.role, action):
            raise ApiForbidden(action)
        return principal

    async def guard(request: Request, principal: Principal = Depends(authorize)) -> Principal:
        if request.method not in SAFE_METHODS and not principal.machine:
            await check_csrf(request, principal.csrf_token)
        return principal

    GUARDS[guard] = action
    return guard
