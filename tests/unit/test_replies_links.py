"""Reply parsing, acknowledgement codes, the SMS texts that carry them, and the signed
one-time links (pure parts)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import pytest

from alerts.links import LinkRefused, LinkSigner, is_token
from alerts.messages import SMS_LIMIT, render, render_escalation
from alerts.replies import ALPHABET, CODE_LENGTH, OPT_IN_WORDS, OPT_OUT_WORDS, new_code, parse_reply

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("body", ["OK 4F7K", "ok 4f7k", "  Ok   4F7K  ", "OK4F7K", "ok 4f7k.",
                                  "OK: 4F7K", "ok\n4f7k"])
def test_ok_code_is_read_whatever_the_case_and_spaces(body: str) -> None:
    reply = parse_reply(body)
    assert (reply.action, reply.code) == ("ack", "4F7K")


@pytest.mark.parametrize("body", ["", "OK", "OK 4F7", "OK 4F7KX", "thanks OK 4F7K", "4F7K",
                                  "STOP please", "hello"])
def test_anything_else_is_ignored(body: str) -> None:
    assert parse_reply(body).action == "other"


def test_twilio_opt_out_and_opt_in_words() -> None:
    assert {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"} == OPT_OUT_WORDS
    assert {"START", "YES", "UNSTOP"} == OPT_IN_WORDS
    for word in OPT_OUT_WORDS:
        assert parse_reply(f" {word.lower()} ") == parse_reply(word)
        assert parse_reply(word).action == "opt_out" and parse_reply(word).word == word
    for word in OPT_IN_WORDS:
        assert parse_reply(word.capitalize()).action == "opt_in"


def test_codes_avoid_look_alikes_and_taken_codes() -> None:
    assert not set("01ILOUV") & set(ALPHABET)
    picks = iter("2222" + "3333")
    code = new_code({"2222"}, choice=lambda _: next(picks))
    assert code == "3333" and len(code) == CODE_LENGTH
    with pytest.raises(RuntimeError):
        new_code({"2222"}, choice=lambda _: "2", attempts=3)


@dataclass
class FakeAlert:
    alert_id: str = "3f2a9c1e-0000-4000-8000-000000000001"
    patient_ref: str = "P" + "0" * 63  # the longest allowed reference
    kind: str = "corticoid_course_long"  # the longest label
    severity: str = "warning"
    due_on: date = date(2026, 12, 2)
    status: str = "open"
    ack_code: str | None = "4F7K"


def test_the_sms_carries_the_code_and_stays_under_the_limit() -> None:
    alert = FakeAlert()
    sms = render(alert).sms_text
    assert "Reply OK 4F7K" in sms and len(sms) < SMS_LIMIT
    escalated = render_escalation(alert, level=99).sms_text
    assert "Reply OK 4F7K" in escalated and len(escalated) < SMS_LIMIT
    assert "Reply OK" not in render(FakeAlert(ack_code=None)).sms_text


def test_the_sms_carries_the_short_link_when_it_fits() -> None:
    short = FakeAlert(patient_ref="P0007", kind="post_dose_labs_due")
    sms = render(short, link="https://t.example.org/a/3f2a9c1e").sms_text
    assert sms.endswith("Reply OK 4F7K or open https://t.example.org/a/3f2a9c1e.")
    assert len(sms) < SMS_LIMIT
    no_code = render(replace(short, ack_code=None), link="https://t.example.org/a/3f2a9c1e")
    assert no_code.sms_text.endswith("Open https://t.example.org/a/3f2a9c1e.")
    escalated = render_escalation(short, level=1, link="https://t.example.org/a/3f2a9c1e")
    assert escalated.sms_text.endswith("or open https://t.example.org/a/3f2a9c1e.")


def test_a_link_that_would_overflow_the_sms_gives_way_to_the_tracker() -> None:
    long_url = "https://" + "t" * 60 + ".example.org/a/3f2a9c1e"
    sms = render(FakeAlert(), link=long_url).sms_text  # the longest reference and label
    assert long_url not in sms and sms.endswith("Reply OK 4F7K or open the tracker.")
    assert len(sms) < SMS_LIMIT


def test_a_signed_e_mail_link_never_goes_into_the_sms() -> None:
    alert = FakeAlert(patient_ref="P0007", kind="post_dose_labs_due")
    url = SIGNER.url("alert-1", "nurse.a", T0)
    message = render(alert, link=url)
    assert url not in message.sms_text and url in message.email_text


def test_the_email_carries_the_link_and_the_code() -> None:
    text = render(FakeAlert(), link="https://t.example.org/a/abc.def").email_text
    assert "https://t.example.org/a/abc.def" in text and "reply OK 4F7K" in text


SIGNER = LinkSigner(b"k" * 32, "https://t.example.org/")


def test_a_link_is_valid_until_24_hours_later_exactly() -> None:
    url = SIGNER.url("alert-1", "nurse.a", T0)
    assert url.startswith("https://t.example.org/a/")
    token = url.rsplit("/", 1)[1]
    assert is_token(token) and not is_token("3f2a9c1e")
    claim = SIGNER.verify(token, T0 + timedelta(hours=24) - timedelta(seconds=1))
    assert (claim.alert_id, claim.staff_id) == ("alert-1", "nurse.a")
    with pytest.raises(LinkRefused) as caught:
        SIGNER.verify(token, T0 + timedelta(hours=24))
    assert caught.value.reason == "expired"


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature changed
    lambda t: t[:5] + ("A" if t[5] != "A" else "B") + t[6:],  # payload changed
    lambda t: t.replace(".", ""),  # no signature
    lambda t: "not-base64!." + t.split(".")[1],
])
def test_tampered_links_are_refused(mangle: object) -> None:
    token = SIGNER.token("alert-1", "nurse.a", T0)
    with pytest.raises(LinkRefused) as caught:
        SIGNER.verify(mangle(token), T0)  # type: ignore[operator]
    assert caught.value.reason == "tampered"


def test_another_key_does_not_verify_and_short_keys_are_refused() -> None:
    token = LinkSigner(b"x" * 32, "https://t.example.org").token("a", "b", T0)
    with pytest.raises(LinkRefused):
        SIGNER.verify(token, T0)
    with pytest.raises(ValueError):
        LinkSigner(b"short", "https://t.example.org")
