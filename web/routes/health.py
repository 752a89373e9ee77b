"""``/healthz`` and ``/readyz``: no login, no clinical data."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from web.deps import context

router = APIRouter()


@router.get("/healthz")
def healthz() -> JSONResponse:
    return JSONResponse({"status": "alive"})


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    ready, checks = context(request).health.ready()
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)
