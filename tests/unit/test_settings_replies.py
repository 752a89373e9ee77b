"""Settings of issue 13 items 3-5: the Messaging Service SID, the urgent validity period,
the link key (production rules) and how the SMS channel is built from them."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from alerts.wiring import build_channels, build_links
from tracker.errors import ConfigurationError
from tracker.settings import Settings, weak_secrets

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "fedcba9876543210" * 2
SERVICE = "MG" + "0123456789abcdef" * 2


def test_a_messaging_service_sid_replaces_the_from_number() -> None:
    for settings in (
            Settings(twilio_account_sid=SID, twilio_auth_token=SecretStr(TOKEN),
                     twilio_messaging_service_sid=SERVICE),
            Settings(twilio_account_sid=SID, twilio_auth_token=SecretStr(TOKEN),
                     twilio_from_number=SERVICE)):  # accepted in the sender variable too
        sms = build_channels(settings)["sms"]
        assert sms.messaging_service_sid == SERVICE  # type: ignore[attr-defined]
        assert sms.from_number is None  # type: ignore[attr-defined]
        assert sms.urgent_validity_seconds == 900  # type: ignore[attr-defined]


def test_without_a_sender_the_error_names_both_variables() -> None:
    with pytest.raises(ConfigurationError) as caught:
        build_channels(Settings(twilio_account_sid=SID, twilio_auth_token=SecretStr(TOKEN)))
    assert "CNO_TRACKER_TWILIO_FROM_NUMBER (or CNO_TRACKER_TWILIO_MESSAGING_SERVICE_SID)" \
        in str(caught.value)


@pytest.mark.parametrize("seconds", [0, 36001])
def test_the_validity_period_is_bounded(seconds: int) -> None:
    with pytest.raises(ValidationError):
        Settings(twilio_urgent_validity_seconds=seconds)


def test_production_refuses_a_bad_service_sid_and_a_weak_link_key() -> None:
    settings = Settings(twilio_messaging_service_sid="MG123", link_key=SecretStr("tiny-key"))
    reasons = weak_secrets(settings)
    assert any("CNO_TRACKER_TWILIO_MESSAGING_SERVICE_SID" in r for r in reasons)
    assert any("CNO_TRACKER_LINK_KEY" in r for r in reasons)
    assert not any("tiny-key" in r for r in reasons)
    assert weak_secrets(Settings(twilio_messaging_service_sid=SERVICE,
                                 link_key=SecretStr("k" * 32))) == []


def test_links_need_both_the_public_url_and_the_key() -> None:
    assert build_links(Settings(public_url="https://t.example.org")) is None
    assert build_links(Settings(link_key=SecretStr("k" * 32))) is None
    signer = build_links(Settings(public_url="https://t.example.org",
                                  link_key=SecretStr("k" * 32)))
    assert signer is not None and "k" * 32 not in repr(signer)
    with pytest.raises(ConfigurationError, match="CNO_TRACKER_LINK_KEY"):
        build_links(Settings(public_url="https://t.example.org", link_key=SecretStr("k")))
