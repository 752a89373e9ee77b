"""``/metrics``: Prometheus text format, for a scraper holding ``CNO_TRACKER_METRICS_TOKEN``
(``Authorization: Bearer <token>``); 404 when no token is configured, 401 for a missing
or wrong one. Public in the permission sense (a scraper has no session): the token is
its guard. See :mod:`web.metrics` for the series."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import PlainTextResponse, Response

from web.deps import context

router = APIRouter()


@router.get("/metrics")
def metrics(request: Request) -> Response:
    secret = context(request).settings.metrics_token
    # a blank token is none: "Bearer " + whitespace is not a password
    token = secret.get_secret_value().strip() if secret is not None else ""
    if not token:
        return PlainTextResponse("metrics are disabled (CNO_TRACKER_METRICS_TOKEN)", 404)
    given = request.headers.get("authorization", "")
    expected = f"Bearer {token}"
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return PlainTextResponse("a valid bearer token is required", 401,
                                 headers={"WWW-Authenticate": "Bearer"})
    body = generate_latest(request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
