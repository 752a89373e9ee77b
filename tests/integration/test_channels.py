"""Channels against real local servers: the official twilio client over HTTP to a
Twilio-compatible server, smtplib to aiosmtpd. Nothing under test is mocked."""

from __future__ import annotations

import io
import json
import logging
import re
from datetime import date
from pathlib import Path

import pytest

from alerts.channels.base import Channel, DeliveryReceipt, Message, Recipient
from alerts.channels.console import ConsoleChannel, FileChannel
from alerts.channels.smtp_email import SmtpEmailChannel
from alerts.channels.twilio_sms import BaseUrlHttpClient, TwilioSmsChannel
from alerts.errors import (
    ChannelUnavailableError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UnknownOutcomeError,
)
from tests.support.smtp_server import (
    TEST_SMTP_PASSWORD,
    TEST_SMTP_USER,
    SmtpTestServer,
    free_port,
)
from tests.support.twilio_server import (
    TEST_ACCOUNT_SID,
    TEST_AUTH_TOKEN,
    TEST_FROM,
    TwilioTestServer,
)

pytest_plugins = ["tests.support.twilio_server", "tests.support.smtp_server"]

SID_RE = re.compile(r"^SM[0-9a-f]{32}$")
NURSE = Recipient(staff_id="nurse.lopez", phone="+34600000001", email="nurse.lopez@example.org")
SENDER = "alerts@example.org"


def message(alert_id: str = "a-1", sms: str = "URGENT: labs overdue for P0007, 2015-02-05."
            ) -> Message:
    return Message(alert_id=alert_id, patient_ref="P0007", kind="post_dose_labs_due",
                   severity="urgent", subject="[URGENT] P0007: labs overdue (2015-02-05)",
                   sms_text=sms, email_text="URGENT: labs overdue for P0007.\n",
                   due_on=date(2015, 2, 5))


def sms_channel(server: TwilioTestServer, *, timeout: float = 5,
                token: str = TEST_AUTH_TOKEN) -> TwilioSmsChannel:
    return TwilioSmsChannel(TEST_ACCOUNT_SID, token, TEST_FROM, base_url=server.base_url,
                            timeout=timeout)


def email_channel(server: SmtpTestServer, **kwargs: object) -> SmtpEmailChannel:
    options: dict[str, object] = {"sender": SENDER, "security": "none", "timeout": 5}
    options.update(kwargs)
    return SmtpEmailChannel(server.host, server.port, **options)  # type: ignore[arg-type]


# ------------------------------------------------------------------ Twilio SMS


class TestTwilioSms:
    def test_success_returns_the_sid_and_the_server_got_one_message(
        self, twilio_server: TwilioTestServer
    ) -> None:
        channel = sms_channel(twilio_server)
        receipt = channel.send(message(), NURSE)
        assert isinstance(channel, Channel)
        assert receipt.channel == "sms"
        assert receipt.provider_id is not None and SID_RE.match(receipt.provider_id)
        [got] = twilio_server.messages
        assert (got.sid, got.to, got.from_, got.body) == (
            receipt.provider_id, "+34600000001", TEST_FROM, message().sms_text)
        assert twilio_server.count(to="+34600000001", body=message().sms_text) == 1

    def test_two_sends_get_two_distinct_sids(self, twilio_server: TwilioTestServer) -> None:
        channel = sms_channel(twilio_server)
        first = channel.send(message("a-1"), NURSE)
        second = channel.send(message("a-2"), NURSE)
        assert first.provider_id != second.provider_id
        assert len(twilio_server.messages) == 2

    @pytest.mark.parametrize("code", [21211, 21610, 21614])
    def test_provider_refusals_are_permanent_with_the_twilio_code(
        self, twilio_server: TwilioTestServer, code: int
    ) -> None:
        twilio_server.reject(NURSE.phone or "", code=code, status=400)
        with pytest.raises(PermanentDeliveryError) as caught:
            sms_channel(twilio_server).send(message(), NURSE)
        assert caught.value.code == code
        assert caught.value.channel == "sms"
        assert not caught.value.retryable
        assert twilio_server.messages == []

    def test_invalid_to_number_is_refused_by_the_server_with_21211(
        self, twilio_server: TwilioTestServer
    ) -> None:
        # a short number passes our E.164 check (2-15 digits) but a server may still refuse it
        twilio_server.reject("+3400", code=21211)
        with pytest.raises(PermanentDeliveryError) as caught:
            sms_channel(twilio_server).send(message(), Recipient("x", phone="+3400"))
        assert caught.value.code == 21211
        assert "not a valid number" in caught.value.reason

    @pytest.mark.parametrize("phone", [None, "600000001", "+34 600 000 001", "+0600000001"])
    def test_bad_recipient_number_fails_permanently_before_any_request(
        self, twilio_server: TwilioTestServer, phone: str | None
    ) -> None:
        with pytest.raises(PermanentDeliveryError):
            sms_channel(twilio_server).send(message(), Recipient("x", phone=phone))
        assert twilio_server.requests == []

    def test_server_error_is_transient_and_a_retry_succeeds(
        self, twilio_server: TwilioTestServer
    ) -> None:
        twilio_server.fail_next(1, status=500)
        channel = sms_channel(twilio_server)
        with pytest.raises(TransientDeliveryError) as caught:
            channel.send(message(), NURSE)
        assert caught.value.retryable
        assert twilio_server.messages == []
        assert channel.send(message(), NURSE).provider_id
        assert twilio_server.count(body=message().sms_text) == 1

    @pytest.mark.parametrize("status", [502, 503])
    def test_other_5xx_are_transient(self, twilio_server: TwilioTestServer, status: int) -> None:
        twilio_server.fail_next(1, status=status)
        with pytest.raises(TransientDeliveryError):
            sms_channel(twilio_server).send(message(), NURSE)

    def test_non_json_gateway_error_is_transient_without_a_code(
        self, twilio_server: TwilioTestServer
    ) -> None:
        twilio_server.fail_next(1, status=502, html="<html>Bad Gateway</html>")
        with pytest.raises(TransientDeliveryError) as caught:
            sms_channel(twilio_server).send(message(), NURSE)
        assert caught.value.code is None
        assert caught.value.reason == "Twilio server error (HTTP 502)"

    def test_a_2xx_that_is_not_twilio_json_is_an_unknown_outcome(
        self, twilio_server: TwilioTestServer
    ) -> None:
        twilio_server.fail_next(1, status=201, html="<html>queued</html>")
        with pytest.raises(UnknownOutcomeError, match="unreadable answer"):
            sms_channel(twilio_server).send(message(), NURSE)

    def test_429_is_transient(self, twilio_server: TwilioTestServer) -> None:
        twilio_server.throttle_next(1)
        with pytest.raises(TransientDeliveryError) as caught:
            sms_channel(twilio_server).send(message(), NURSE)
        assert caught.value.code == 20429

    def test_429_without_a_twilio_code_is_transient_too(
        self, twilio_server: TwilioTestServer
    ) -> None:
        twilio_server.fail_next(1, status=429, code=None)
        with pytest.raises(TransientDeliveryError) as caught:
            sms_channel(twilio_server).send(message(), NURSE)
        assert caught.value.code is None

    def test_other_4xx_is_permanent(self, twilio_server: TwilioTestServer) -> None:
        twilio_server.fail_next(1, status=400, code=21602)
        with pytest.raises(PermanentDeliveryError):
            sms_channel(twilio_server).send(message(), NURSE)

    def test_wrong_token_is_channel_down_20003_and_the_token_is_not_in_the_error(
        self, twilio_server: TwilioTestServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        wrong = "wrong-token-ffffffffffff"
        with pytest.raises(ChannelUnavailableError) as caught:
            sms_channel(twilio_server, token=wrong).send(message(), NURSE)
        assert caught.value.code == 20003
        for text in (str(caught.value), repr(caught.value), caplog.text,
                     repr(sms_channel(twilio_server, token=wrong))):
            assert wrong not in text
            assert TEST_AUTH_TOKEN not in text

    def test_read_timeout_after_sending_is_an_unknown_outcome(
        self, twilio_server: TwilioTestServer
    ) -> None:
        twilio_server.delay_next(1, seconds=3)
        with pytest.raises(UnknownOutcomeError) as caught:
            sms_channel(twilio_server, timeout=0.3).send(message(), NURSE)
        assert not caught.value.retryable
        assert "no answer from Twilio within 0.3 s" in caught.value.reason
        # the provider did get it: a blind retry would deliver it twice
        assert twilio_server.count(body=message().sms_text) == 1

    def test_connection_dropped_after_the_body_is_an_unknown_outcome(
        self, twilio_server: TwilioTestServer
    ) -> None:
        twilio_server.drop_next(1)
        with pytest.raises(UnknownOutcomeError) as caught:
            sms_channel(twilio_server).send(message(), NURSE)
        assert "lost after sending" in caught.value.reason
        assert twilio_server.count(body=message().sms_text) == 1

    def test_connection_refused_is_transient(self) -> None:
        channel = TwilioSmsChannel(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, TEST_FROM,
                                   base_url=f"http://127.0.0.1:{free_port()}", timeout=2)
        with pytest.raises(TransientDeliveryError) as caught:
            channel.send(message(), NURSE)
        assert "connect" in caught.value.reason

    def test_reasons_carry_no_phone_number_nor_body(
        self, twilio_server: TwilioTestServer
    ) -> None:
        twilio_server.reject(NURSE.phone or "", code=21610)
        with pytest.raises(DeliveryError) as caught:
            sms_channel(twilio_server).send(message(), NURSE)
        assert "600000001" not in str(caught.value)
        assert "P0007" not in str(caught.value)

    @pytest.mark.parametrize("sender", ["600000099", "+34 600", "", "+0123"])
    def test_bad_sender_is_refused_at_construction(self, sender: str) -> None:
        with pytest.raises(ValueError):
            TwilioSmsChannel(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, sender)

    def test_base_url_client_rewrites_only_twilio_hosts(self) -> None:
        client = BaseUrlHttpClient("http://127.0.0.1:9/prefix")
        assert (client.rewrite("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json?x=1")
                == "http://127.0.0.1:9/prefix/2010-04-01/Accounts/AC1/Messages.json?x=1")
        assert client.rewrite("https://example.org/a") == "https://example.org/a"
        with pytest.raises(ValueError):
            BaseUrlHttpClient("127.0.0.1:9")


# ------------------------------------------------------------------ SMTP e-mail


class TestSmtpEmail:
    def test_success_returns_the_message_id_derived_from_the_alert(
        self, smtp_server: SmtpTestServer
    ) -> None:
        receipt = email_channel(smtp_server).send(message("a-42"), NURSE)
        assert receipt == DeliveryReceipt("<a-42.alert.nurse.lopez@example.org>", "email")
        [got] = smtp_server.messages
        assert got.message_id == receipt.provider_id
        assert got.mail_from == SENDER and got.rcpt_tos == ("nurse.lopez@example.org",)
        assert got.subject == message().subject
        assert got.body == message().email_text
        assert got.message["Auto-Submitted"] == "auto-generated"

    def test_a_repeat_carries_the_same_message_id(self, smtp_server: SmtpTestServer) -> None:
        channel = email_channel(smtp_server)
        first = channel.send(message("a-7"), NURSE)
        second = channel.send(message("a-7"), NURSE)
        other = channel.send(message("a-7"), Recipient("rheum.garcia", email="r@example.org"))
        assert first.provider_id == second.provider_id != other.provider_id
        assert smtp_server.count(message_id=first.provider_id) == 2

    def test_recipient_450_is_transient(self, smtp_server: SmtpTestServer) -> None:
        smtp_server.refuse_recipient(NURSE.email or "", "450 4.2.1 Mailbox busy")
        with pytest.raises(TransientDeliveryError) as caught:
            email_channel(smtp_server).send(message(), NURSE)
        assert caught.value.code == 450
        assert smtp_server.messages == []

    def test_recipient_550_is_permanent(self, smtp_server: SmtpTestServer) -> None:
        smtp_server.refuse_recipient(NURSE.email or "", "550 5.1.1 No such user")
        with pytest.raises(PermanentDeliveryError) as caught:
            email_channel(smtp_server).send(message(), NURSE)
        assert caught.value.code == 550
        assert "nurse.lopez@example.org" not in str(caught.value)

    def test_data_451_is_transient_then_a_retry_succeeds(
        self, smtp_server: SmtpTestServer
    ) -> None:
        smtp_server.answer_data_next(1, "451 4.3.0 Try again later")
        channel = email_channel(smtp_server)
        with pytest.raises(TransientDeliveryError) as caught:
            channel.send(message(), NURSE)
        assert caught.value.code == 451
        channel.send(message(), NURSE)
        assert len(smtp_server.messages) == 1

    def test_data_554_is_permanent(self, smtp_server: SmtpTestServer) -> None:
        smtp_server.answer_data_next(1, "554 5.6.0 Message rejected")
        with pytest.raises(PermanentDeliveryError) as caught:
            email_channel(smtp_server).send(message(), NURSE)
        assert caught.value.code == 554

    def test_timeout_during_data_is_an_unknown_outcome(
        self, smtp_server: SmtpTestServer
    ) -> None:
        smtp_server.delay_data_next(1, seconds=3)
        with pytest.raises(UnknownOutcomeError):
            email_channel(smtp_server, timeout=0.5).send(message(), NURSE)
        assert len(smtp_server.messages) == 1  # the server had it

    def test_server_down_is_transient_and_delivery_resumes_after_restart(
        self, smtp_server: SmtpTestServer
    ) -> None:
        channel = email_channel(smtp_server)
        smtp_server.stop()
        with pytest.raises(TransientDeliveryError) as caught:
            channel.send(message(), NURSE)
        assert caught.value.retryable
        smtp_server.start()
        assert channel.send(message(), NURSE).provider_id
        assert len(smtp_server.messages) == 1

    def test_auth_success(self, smtp_auth_server: SmtpTestServer) -> None:
        channel = email_channel(smtp_auth_server, username=TEST_SMTP_USER,
                                password=TEST_SMTP_PASSWORD)
        channel.send(message(), NURSE)
        assert len(smtp_auth_server.messages) == 1

    def test_wrong_password_is_channel_down_535_and_secret_free(
        self, smtp_auth_server: SmtpTestServer
    ) -> None:
        channel = email_channel(smtp_auth_server, username=TEST_SMTP_USER,
                                password="wrong-password-123")
        with pytest.raises(ChannelUnavailableError) as caught:
            channel.send(message(), NURSE)
        assert caught.value.code == 535
        assert "wrong-password-123" not in str(caught.value) + repr(channel)
        assert smtp_auth_server.messages == []

    def test_starttls_against_a_server_without_it_is_permanent(
        self, smtp_server: SmtpTestServer
    ) -> None:
        with pytest.raises(PermanentDeliveryError):
            email_channel(smtp_server, security="starttls").send(message(), NURSE)

    def test_implicit_tls_against_a_plain_server_fails_without_hanging(
        self, smtp_server: SmtpTestServer
    ) -> None:
        with pytest.raises(TransientDeliveryError):
            email_channel(smtp_server, security="ssl", timeout=2).send(message(), NURSE)
        assert smtp_server.messages == []

    def test_message_id_is_sanitised(self, smtp_server: SmtpTestServer) -> None:
        receipt = email_channel(smtp_server).send(
            message("id with spaces@x>"), Recipient("n<1>", email="n@example.org"))
        assert receipt.provider_id == "<id-with-spaces-x-.alert.n-1-@example.org>"
        assert smtp_server.messages[0].message_id == receipt.provider_id

    @pytest.mark.parametrize("address", [None, "not-an-address", "a@b", "x@example.org\nBcc: y"])
    def test_bad_recipient_address_is_permanent_without_connecting(
        self, smtp_server: SmtpTestServer, address: str | None
    ) -> None:
        with pytest.raises(PermanentDeliveryError):
            email_channel(smtp_server).send(message(), Recipient("x", email=address))
        assert smtp_server.handler.data_commands == 0

    def test_construction_checks(self) -> None:
        with pytest.raises(ValueError):
            SmtpEmailChannel("localhost", 25, sender="not an address", security="none")
        with pytest.raises(ValueError):
            SmtpEmailChannel("localhost", 25, sender=SENDER, username="u")
        with pytest.raises(ValueError):
            SmtpEmailChannel("localhost", 25, sender=SENDER,
                             security="tls")  # type: ignore[arg-type]


# ------------------------------------------------------------------ console and file


def test_console_prints_one_line_and_returns_a_console_id() -> None:
    out = io.StringIO()
    receipt = ConsoleChannel(out).send(message("a-9"), NURSE)
    assert receipt == DeliveryReceipt("console-a-9", "console")
    assert out.getvalue() == f"[urgent] to nurse.lopez: {message().sms_text}\n"


def test_console_defaults_to_the_current_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    ConsoleChannel().send(message(), NURSE)
    assert capsys.readouterr().out.count("\n") == 1


def test_file_channel_appends_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "alerts.jsonl"
    channel = FileChannel(path)
    assert channel.send(message("a-1"), NURSE).provider_id == "file-a-1"
    channel.send(message("a-2"), NURSE)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["alert_id"] for r in records] == ["a-1", "a-2"]
    assert records[0]["staff_id"] == "nurse.lopez" and records[0]["due_on"] == "2015-02-05"


def test_file_channel_unwritable_is_transient(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TransientDeliveryError):
        FileChannel(blocker / "alerts.jsonl").send(message(), NURSE)
