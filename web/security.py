"""Security in one place: response headers (an ASGI middleware) and the CSRF check.

Headers on every response: a strict Content-Security-Policy (scripts and styles only from
our own origin: no inline script, no inline style), ``X-Frame-Options: DENY``,
``Referrer-Policy: no-referrer``, ``X-Content-Type-Options: nosniff``; every response but
the static files gets ``Cache-Control: no-store`` (clinical pages never sit in a cache)."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
BASE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
)
NO_STORE = (b"cache-control", b"no-store")
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class CsrfFailed(Exception):
    """A state-changing request without the session's token."""


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"cache-control" or static]
                headers.extend(BASE_HEADERS)
                if not static:
                    headers.append(NO_STORE)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def header_items() -> dict[str, str]:
    """The same headers for responses built outside the middleware (the 500 page)."""
    return {k.decode(): v.decode() for k, v in (*BASE_HEADERS, NO_STORE)}


def same_token(given: Any, expected: str) -> bool:
    return isinstance(given, str) and bool(given) and secrets.compare_digest(
        given.encode(), expected.encode())


async def check_csrf(request: Request, expected: str) -> None:
    """The token from the ``X-CSRF-Token`` header (htmx) or the ``csrf_token`` form field."""
    given: Any = request.headers.get(CSRF_HEADER)
    if given is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded",
                                    "multipart/form-data")):
            given = (await request.form()).get(CSRF_FIELD)
    if not same_token(given, expected):
        raise CsrfFailed()


async def read_at_most(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is (or says it is) larger than ``limit`` bytes,
    reading no further than that: an anonymous client cannot make a route buffer an
    unbounded body before it is authenticated (``POST /fhir``, the Twilio webhooks)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
