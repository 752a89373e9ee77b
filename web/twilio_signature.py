"""The one check every Twilio webhook passes (``/twilio/status`` here; ``/twilio/inbound``
may use it too): ``X-Twilio-Signature`` validated by the client library's
:class:`twilio.request_validator.RequestValidator` with the account's auth token.

The URL signed is the one Twilio was given — ``CNO_TRACKER_PUBLIC_URL`` + the request's
path (and query) — never the ``Host`` header, which a reverse proxy rewrites. Unsigned,
wrongly signed, or no auth token / public URL configured: 403, and the route never runs
(nothing is recorded). The form's values are returned as a plain ``dict`` (one value per
name; a repeated name keeps the last, as Twilio never repeats one)."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from twilio.request_validator import RequestValidator

from web.deps import context
from web.security import read_at_most

log = logging.getLogger("cno_tracker.web.twilio")
SIGNATURE_HEADER = "X-Twilio-Signature"


class TwilioSignatureRefused(HTTPException):
    """The request is not provably from Twilio: answered 403, the route never runs."""

    def __init__(self, reason: str) -> None:
        super().__init__(status_code=403, detail="This request is not signed by Twilio.")
        self.reason = reason


def signed_url(public_url: str, request: Request) -> str:
    """What Twilio signed: the public URL, this path and query."""
    query = request.url.query
    return public_url.rstrip("/") + request.url.path + (f"?{query}" if query else "")


def check_signature(token: str, url: str, form: FormData, signature: str | None) -> bool:
    if not signature or any(isinstance(v, UploadFile) for _, v in form.multi_items()):
        return False
    return bool(RequestValidator(token).validate(url, form, signature))


#: a webhook body larger than this is refused unread (Twilio's are a few hundred bytes)
MAX_BODY = 64 * 1024


async def read_form(request: Request) -> FormData:
    """The form-encoded body as :class:`FormData` (repeated names kept, as Twilio signs
    them), parsed with ``urllib.parse.parse_qsl``: Twilio posts
    ``application/x-www-form-urlencoded`` only, and this is several times cheaper than the
    multipart-capable parser at hundreds of callbacks a second. Anything else: 403."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise TwilioSignatureRefused("not a form")
    body = await read_at_most(request, MAX_BODY)
    if body is None:
        raise TwilioSignatureRefused("body too large")
    try:
        pairs: list[tuple[str, str | UploadFile]] = parse_qsl(  # type: ignore[assignment]
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        raise TwilioSignatureRefused("unreadable form") from None
    return FormData(pairs)


async def twilio_form(request: Request) -> dict[str, str]:
    """The dependency of a Twilio webhook: the verified form, or 403."""
    ctx = context(request)
    secret = ctx.core.settings.twilio_auth_token
    # a blank token is none: an HMAC keyed by '' is one anybody can compute
    token = secret.get_secret_value().strip() if secret is not None else ""
    public = ctx.settings.public_url or ctx.core.settings.public_url
    if not token or not public:
        log.warning("event=twilio.refused path=%s reason=\"no auth token or public URL "
                    "configured\"", request.url.path)
        raise TwilioSignatureRefused("not configured")
    form = await read_form(request)
    url = signed_url(public, request)
    if not check_signature(token, url, form,
                           request.headers.get(SIGNATURE_HEADER)):
        log.warning("event=twilio.refused path=%s reason=\"signature missing or wrong\"",
                    request.url.path)
        raise TwilioSignatureRefused("bad signature")
    return {k: str(v) for k, v in form.items()}
