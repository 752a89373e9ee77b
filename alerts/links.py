"""One-time signed links for e-mail: ``<public url>/a/<token>`` opens one alert (after
login) to acknowledge it. Pure: the clock is passed in.

A token is ``<payload>.<signature>``: the payload is base64url JSON ``{"a": alert id,
"s": staff id, "e": expiry (Unix seconds), "j": a random id}``, the signature base64url
HMAC-SHA256 over the payload with the link key (``CNO_TRACKER_LINK_KEY``). It expires
24 hours after it was made; it is *one-time* because the web application records its
``j`` when it is opened (table ``alert_link_uses``) and refuses a second opening. The
token carries ids only: no patient reference, nothing clinical.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

LINK_TTL = timedelta(hours=24)


class LinkRefused(Exception):
    """A token that is not valid: ``reason`` is ``tampered`` or ``expired``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LinkClaim:
    alert_id: str
    staff_id: str
    expires_at: datetime
    jti: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    def __init__(self, key: bytes, public_url: str, *, ttl: timedelta = LINK_TTL) -> None:
        if len(key) < 16:
            raise ValueError("the link key must be at least 16 bytes")
        # CNO_TRACKER_LINK_KEY also keys the identity link table (tracker.interop.identity
        # derives its own keys from it): the e-mail links get a key of their own, too
        self._key = hmac.new(key, b"cno-tracker e-mail link", hashlib.sha256).digest()
        self.public_url = public_url.rstrip("/")
        self.ttl = ttl

    def __repr__(self) -> str:
        return f"LinkSigner(public_url={self.public_url!r})"

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def token(self, alert_id: str, staff_id: str, now: datetime) -> str:
        expires = int((now + self.ttl).timestamp())
        payload = _b64(orjson.dumps({"a": alert_id, "s": staff_id, "e": expires,
                                     "j": secrets.token_hex(16)}))
        return f"{payload}.{self._sign(payload)}"

    def url(self, alert_id: str, staff_id: str, now: datetime) -> str:
        return f"{self.public_url}/a/{self.token(alert_id, staff_id, now)}"

    def verify(self, token: str, now: datetime) -> LinkClaim:
        """The claim of a genuine, unexpired token; :class:`LinkRefused` otherwise."""
        payload, dot, signature = token.partition(".")
        if not dot or not hmac.compare_digest(self._sign(payload), signature):
            raise LinkRefused("tampered")
        try:
            data = orjson.loads(_unb64(payload))
            claim = LinkClaim(str(data["a"]), str(data["s"]),
                              datetime.fromtimestamp(int(data["e"]), UTC), str(data["j"]))
        except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError):
            raise LinkRefused("tampered") from None
        if now >= claim.expires_at:
            raise LinkRefused("expired")
        return claim


def is_token(text: str) -> bool:
    """A link token (``payload.signature``), rather than a short alert id."""
    return "." in text
