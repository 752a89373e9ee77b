"""The app factory: a FastAPI application built from the injected core (settings, clock,
store), the web settings, accounts and roster. Nothing happens at import time."""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, RedirectResponse, Response

from alerts.health import latest_beat
from tracker.bootstrap import App
from web.access import AccessLog
from web.charts import ChartCache
from web.deps import (
    GUARDS,
    ApiForbidden,
    ApiUnauthorized,
    Forbidden,
    LoginRequired,
    WebContext,
    current_principal,
)
from web.health import Health, HeartbeatReader
from web.metrics import CountRequests, Metrics
from web.patientcache import PatientViews
from web.permissions import PUBLIC_PATHS
from web.security import CsrfFailed, SecurityHeaders, header_items
from web.sessions import Sessions
from web.settings import WebSettings
from web.templating import make_templates, render
from web.wardcache import WardCache

if TYPE_CHECKING:
    from alerts.roster import Roster
    from tracker.accounts import Accounts

log = logging.getLogger("cno_tracker.web")
STATIC_DIR = Path(__file__).resolve().parent / "static"
#: the page modules, each with a ``router`` (Twilio's webhooks first: routes are matched
#: in order, and at hundreds of callbacks a second the matching shows)
ROUTERS = (
    "web.routes.twilio",
    "web.routes.auth",
    "web.routes.health",
    "web.routes.ward",
    "web.routes.patient",
    "web.routes.alerts",
    "web.routes.audit",
    "web.routes.admin",
    "web.routes.forms",
    "web.routes.previewed",
    "web.routes.twilio_inbound",
    "web.routes.metrics",
    "web.routes.fhir",
)


def create_app(core: App, web: WebSettings | None = None, *, accounts: Accounts | None = None,
               roster: Roster | None = None, heartbeat: HeartbeatReader = latest_beat,
               ) -> FastAPI:
    import importlib

    from alerts.wiring import build_roster
    from tracker.accounts import Accounts

    settings = web or WebSettings()
    app = FastAPI(title="CNO Tracker", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.web = WebContext(
        core=core, settings=settings,
        sessions=Sessions(core.engine, core.clock, idle=settings.idle,
                          absolute=settings.absolute),
        accounts=accounts or Accounts(core.engine, core.store, core.clock),
        roster=roster or build_roster(core.settings),
        charts=ChartCache(),
        health=Health(core, max_age=timedelta(seconds=settings.heartbeat_max_age_seconds),
                      heartbeat=heartbeat),
        ward=WardCache(core, max_age=settings.ward_refresh_seconds), patients=PatientViews(),
        access=AccessLog(core.store, core.clock))
    app.state.templates = make_templates()
    routers = [importlib.import_module(name).router for name in ROUTERS]
    _check_every_route_is_guarded(routers)
    for router in routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.state.routers = routers
    app.state.paths = frozenset(path for _, path in route_actions(routers))
    _add_error_pages(app)
    app.add_middleware(SecurityHeaders)
    app.state.metrics = Metrics(core)
    app.add_middleware(CountRequests, metrics=app.state.metrics)
    return app


def route_actions(routers: Sequence[APIRouter]) -> dict[tuple[str, str], str | None]:
    """(method, path) → the action its guard requires (None for a public path)."""
    out: dict[tuple[str, str], str | None] = {}
    for route in (r for router in routers for r in router.routes):
        if not isinstance(route, APIRoute):
            continue
        actions = [GUARDS[d.call].value for d in route.dependant.dependencies
                   if d.call is not None and d.call in GUARDS]
        for method in route.methods or ():
            out[(method, route.path)] = actions[0] if actions else None
    return out


def _check_every_route_is_guarded(routers: Sequence[APIRouter]) -> None:
    for (method, path), action in route_actions(routers).items():
        if action is None and path not in PUBLIC_PATHS:
            raise RuntimeError(f"{method} {path} declares no permission (web.deps.requires)")


def _add_error_pages(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        location = "/login?next=" + quote(target, safe="")
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": location})
        return RedirectResponse(location, status_code=303)

    @app.exception_handler(ApiUnauthorized)
    async def api_unauthorized(request: Request, exc: ApiUnauthorized) -> Response:
        from web.routes.fhir import refusal

        return refusal(401, "login", "a valid API token (Authorization: Bearer) or a "
                       "session is required", **{"WWW-Authenticate": "Bearer"})

    @app.exception_handler(ApiForbidden)
    async def api_forbidden(request: Request, exc: ApiForbidden) -> Response:
        from web.routes.fhir import refusal

        return refusal(403, "forbidden", f"your role may not do this ({exc.action.value})")

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return render(request, "error.html", {
            "title": "Not allowed",
            "message": f"Your role may not do this ({exc.action.value})."},
            user=request.state.principal, status_code=403)

    @app.exception_handler(CsrfFailed)
    async def csrf_failed(request: Request, exc: CsrfFailed) -> Response:
        return render(request, "error.html", {
            "title": "Form expired",
            "message": "This form is out of date (security token missing or wrong): "
                       "reload the page and try again. Nothing was saved."},
            user=getattr(request.state, "principal", None), status_code=403)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("query", "body"))
        return render(request, "error.html", {
            "title": "Bad request",
            "message": f"{where or 'request'}: {first.get('msg', 'invalid')}"},
            user=getattr(request.state, "principal", None), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        titles = {404: "Not found", 405: "Method not allowed"}
        user = getattr(request.state, "principal", None)
        if user is None and exc.status_code == 404:
            user = current_principal(request)
        return render(request, "error.html", {
            "title": titles.get(exc.status_code, "Error"),
            "message": str(exc.detail) if exc.status_code != 404 or exc.detail != "Not Found"
            else "There is nothing at this address."},
            user=user, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        error_id = uuid.uuid4().hex[:12]
        # the type and the frames only: an exception's message may carry clinical values
        log.error("error %s on %s %s: %s\n%s", error_id, request.method, request.url.path,
                  type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__)))
        body = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>Server error</title><link rel=\"stylesheet\" href=\"/static/app.css\">"
                f"</head><body><main><h1>Something went wrong</h1><p>The error has been "
                f"logged with id <code>{error_id}</code>; quote it when you report this.</p>"
                f"<p><a href=\"/\">Back to the ward list"
                f"</a></p></main></body></html>")
        return HTMLResponse(body, status_code=500, headers=header_items())
