"""Posting Twilio's incoming-message webhook to the real web application, signed as
Twilio signs it (``X-Twilio-Signature``: the client library's RequestValidator over the
public URL + path and the form parameters, keyed by the auth token)."""

from __future__ import annotations

import secrets
from typing import Any

from twilio.request_validator import RequestValidator

from tests.support.twilio_server import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, TEST_FROM

PUBLIC_URL = "https://tracker.example.org"
INBOUND = "/twilio/inbound"


def inbound_params(from_: str, body: str, *, sid: str | None = None) -> dict[str, str]:
    """The form Twilio posts for one incoming SMS."""
    return {"MessageSid": sid or "SM" + secrets.token_hex(16), "SmsSid": sid or "",
            "AccountSid": TEST_ACCOUNT_SID, "From": from_, "To": TEST_FROM, "Body": body,
            "NumMedia": "0"}


def signature(params: dict[str, str], *, url: str = PUBLIC_URL + INBOUND,
              token: str = TEST_AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, params))


def post_inbound(client: Any, params: dict[str, str], *, sign: bool = True,
                 token: str = TEST_AUTH_TOKEN, public_url: str = PUBLIC_URL) -> Any:
    """POST ``params`` to ``/twilio/inbound`` with ``client`` (a TestClient or httpx
    client), signed with ``token`` for ``public_url`` unless ``sign`` is False."""
    headers = {"X-Twilio-Signature": signature(params, url=public_url + INBOUND, token=token)
               } if sign else {}
    return client.post(INBOUND, data=params, headers=headers)
