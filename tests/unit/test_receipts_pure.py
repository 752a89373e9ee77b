"""The pure parts of delivery receipts: Twilio statuses and codes, the callback URL, the
public URL setting, and the signature check over the public URL (not the Host)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from starlette.datastructures import FormData
from twilio.request_validator import RequestValidator

from alerts.receipts import RANK, normalise, parse_error_code, undelivered_reason
from alerts.wiring import status_callback_url
from tracker.settings import Settings
from web.twilio_signature import check_signature

TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(("raw", "expected"), [
    ("delivered", "delivered"), (" Delivered ", "delivered"), ("read", "delivered"),
    ("canceled", "failed"), ("undelivered", "undelivered"), ("queued", "queued"),
    ("receiving", None), ("", None), (None, None), ("partially_delivered", None)])
def test_twilio_statuses_are_normalised(raw: str | None, expected: str | None) -> None:
    assert normalise(raw) == expected


def test_final_statuses_outrank_every_progress_status() -> None:
    assert RANK["queued"] < RANK["sending"] < RANK["sent"] < RANK["delivered"]
    assert RANK["delivered"] == RANK["undelivered"] == RANK["failed"]


@pytest.mark.parametrize(("raw", "expected"), [
    ("30003", 30003), (30005, 30005), (" 30006 ", 30006), ("", None), (None, None),
    ("abc", None), ("0", None), ("-1", None)])
def test_error_codes_are_parsed(raw: object, expected: int | None) -> None:
    assert parse_error_code(raw) == expected


def test_the_undelivered_reason_names_the_code_and_no_number() -> None:
    reason = undelivered_reason("undelivered", 30003)
    assert "30003" in reason and "unreachable" in reason and "+" not in reason
    assert undelivered_reason("failed", None) == "Twilio reported the SMS failed"


def test_the_status_callback_is_the_public_url_plus_the_path() -> None:
    assert status_callback_url("https://cno.example.org") == \
        "https://cno.example.org/twilio/status"
    assert status_callback_url("https://h.example.org/cno/") == \
        "https://h.example.org/cno/twilio/status"
    assert status_callback_url(None) is None


def test_the_public_url_setting_is_checked_and_trimmed() -> None:
    assert Settings(public_url="https://cno.example.org/").public_url == \
        "https://cno.example.org"
    assert Settings(public_url="  ").public_url is None
    for bad in ("cno.example.org", "ftp://cno.example.org", "https://", "https://x/?a=1"):
        with pytest.raises(ValidationError, match="public_url"):
            Settings(public_url=bad)


def test_the_signature_is_checked_over_the_public_url_not_the_host() -> None:
    params = {"MessageSid": "SM" + "a" * 32, "MessageStatus": "delivered"}
    public = "https://cno.example.org/twilio/status"
    signature = RequestValidator(TOKEN).compute_signature(public, params)
    form = FormData(list(params.items()))
    assert check_signature(TOKEN, public, form, signature)
    assert not check_signature(TOKEN, "http://10.0.0.5:8000/twilio/status", form, signature)
    assert not check_signature(TOKEN, public, form, None)
    assert not check_signature(TOKEN, public, form, "")
    assert not check_signature("f" * 32, public, form, signature)
    changed = FormData([*params.items(), ("ErrorCode", "30003")])
    assert not check_signature(TOKEN, public, changed, signature)


def test_a_webhook_that_is_not_a_small_form_is_refused_unread() -> None:
    import asyncio

    from starlette.requests import Request

    from web.twilio_signature import MAX_BODY, TwilioSignatureRefused, read_form

    def request(body: bytes, kind: str) -> Request:
        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": body, "more_body": False}
        scope = {"type": "http", "method": "POST", "path": "/twilio/status",
                 "headers": [(b"content-type", kind.encode())], "query_string": b""}
        return Request(scope, receive)  # type: ignore[arg-type]

    form = asyncio.run(read_form(request(b"A=1&B=x+y&A=2", "application/x-www-form-urlencoded")))
    assert form.getlist("A") == ["1", "2"] and form["B"] == "x y"
    for body, kind in ((b"A=1", "application/json"), (b"A=" + b"x" * MAX_BODY,
                                                       "application/x-www-form-urlencoded"),
                       (b"\xff\xfe", "application/x-www-form-urlencoded")):
        with pytest.raises(TwilioSignatureRefused):
            asyncio.run(read_form(request(body, kind)))
