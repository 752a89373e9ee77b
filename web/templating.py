"""Rendering: one Jinja2 environment (autoescape on), the base template, and the
navigation a role may see."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

from web.deps import Principal
from web.permissions import Action, allowed

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
#: (label, path, action needed); shown when the role may and the route exists
NAVIGATION: tuple[tuple[str, str, Action], ...] = (
    ("Ward list", "/", Action.VIEW_WARD),
    ("Alerts", "/alerts", Action.VIEW_ALERTS),
    ("Enrol", "/enrol", Action.ENROL),
    ("Audit", "/audit", Action.VIEW_AUDIT),
    ("Admin", "/admin", Action.VIEW_ADMIN),
)


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    return Jinja2Templates(env=env)


def navigation(request: Request, user: Principal | None) -> list[tuple[str, str]]:
    if user is None:
        return []
    paths: frozenset[str] = request.app.state.paths
    return [(label, path) for label, path, action in NAVIGATION
            if path in paths and allowed(user.role, action)]


def render(request: Request, name: str, context: Mapping[str, Any] | None = None, *,
           user: Principal | None, status_code: int = 200,
           headers: Mapping[str, str] | None = None) -> HTMLResponse:
    """``name`` rendered with the page's context plus ``user``, ``csrf_token`` and
    ``nav``; every form in a template carries ``csrf_token`` in a hidden input."""
    templates: Jinja2Templates = request.app.state.templates
    full = {"user": user, "csrf_token": user.csrf_token if user else None,
            "nav": navigation(request, user), **(context or {})}
    return templates.TemplateResponse(request, name, full, status_code=status_code,
                                      headers=dict(headers) if headers else None)
