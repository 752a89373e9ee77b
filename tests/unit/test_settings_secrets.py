"""Production refuses weak secrets (issue 9 item 8); no reason ever shows the value."""

from __future__ import annotations

import pytest

from tracker.errors import ConfigurationError
from tracker.settings import load_settings

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "fedcba9876543210" * 2
SERVICE = "MG" + "0123456789abcdef" * 2
GOOD = {
    "CNO_TRACKER_ENVIRONMENT": "production",
    "CNO_TRACKER_DATABASE_URL": "postgresql://cno@db.internal:5432/cno",
    "CNO_TRACKER_TWILIO_ACCOUNT_SID": SID,
    "CNO_TRACKER_TWILIO_AUTH_TOKEN": TOKEN,
    "CNO_TRACKER_TWILIO_FROM_NUMBER": "+34600000000",
    "CNO_TRACKER_SMTP_PASSWORD": "correct horse",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in GOOD:
        monkeypatch.delenv(name, raising=False)
    for name, value in GOOD.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def refusal(env: pytest.MonkeyPatch, name: str, value: str) -> str:
    env.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    message = str(info.value)
    assert name in message
    if len(value.strip()) > 3:
        assert value.strip() not in message
    return message


def test_strong_secrets_of_the_right_shape_are_accepted(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.twilio_account_sid == SID


def test_a_messaging_service_sid_is_a_valid_sender(env: pytest.MonkeyPatch) -> None:
    env.setenv("CNO_TRACKER_TWILIO_FROM_NUMBER", SERVICE)
    assert load_settings().twilio_from_number == SERVICE


@pytest.mark.parametrize("value", [" changeme ", "CHANGEME", "ChangeMe", "\tpassword\n",
                                   " Secret", "TODO", "xxx", "   "])
@pytest.mark.parametrize("name", ["CNO_TRACKER_TWILIO_AUTH_TOKEN", "CNO_TRACKER_SMTP_PASSWORD",
                                  "CNO_TRACKER_TWILIO_ACCOUNT_SID"])
def test_placeholders_are_refused_after_trimming_and_case_folding(
        env: pytest.MonkeyPatch, name: str, value: str) -> None:
    assert "placeholder" in refusal(env, name, value)


@pytest.mark.parametrize("sid", ["AC" + "0" * 31, "AC" + "0" * 33, "AB" + "0" * 32,
                                 "AC" + "g" * 32, SID + "\n", " " + SID, SERVICE])
def test_an_account_sid_not_of_twilios_shape_is_refused(env: pytest.MonkeyPatch,
                                                        sid: str) -> None:
    assert "account SID" in refusal(env, "CNO_TRACKER_TWILIO_ACCOUNT_SID", sid)


@pytest.mark.parametrize("token", ["0" * 31, "0" * 33, "z" * 32, TOKEN + " ", "hunter2hunter2"])
def test_an_auth_token_not_of_twilios_shape_is_refused(env: pytest.MonkeyPatch,
                                                       token: str) -> None:
    assert "auth token" in refusal(env, "CNO_TRACKER_TWILIO_AUTH_TOKEN", token)


@pytest.mark.parametrize("sender", ["MG" + "0" * 31, "600000000", "+0600000000", "sender"])
def test_a_sender_neither_e164_nor_a_messaging_service_is_refused(
        env: pytest.MonkeyPatch, sender: str) -> None:
    assert "Messaging Service" in refusal(env, "CNO_TRACKER_TWILIO_FROM_NUMBER", sender)


@pytest.mark.parametrize(("password", "refused"), [("a", True), ("1234567", True),
                                                   ("12345678", False)])
def test_an_smtp_password_under_8_characters_is_refused(
        env: pytest.MonkeyPatch, password: str, refused: bool) -> None:
    if refused:
        assert "shorter than 8" in refusal(env, "CNO_TRACKER_SMTP_PASSWORD", password)
    else:
        env.setenv("CNO_TRACKER_SMTP_PASSWORD", password)
        assert load_settings().smtp_password is not None


def test_development_keeps_accepting_test_credentials(env: pytest.MonkeyPatch) -> None:
    env.setenv("CNO_TRACKER_ENVIRONMENT", "development")
    env.setenv("CNO_TRACKER_DATABASE_URL", "sqlite:///x.db")
    env.setenv("CNO_TRACKER_TWILIO_AUTH_TOKEN", "changeme")
    env.setenv("CNO_TRACKER_SMTP_PASSWORD", "a")
    assert load_settings().environment == "development"


@pytest.mark.parametrize(("value", "reason"), [
    ("nokey", "give ID:SECRET"), ("k1:short", "shorter than 16"),
    ("k1:0123456789abcdef,k2:0123456789abcdef", "holds one"),
    ("bad id:0123456789abcdef", "give ID:SECRET")])
def test_an_unreadable_seal_key_refuses_start_up(env: pytest.MonkeyPatch, value: str,
                                                 reason: str) -> None:
    env.setenv("CNO_TRACKER_SEAL_KEY", value)
    with pytest.raises(ConfigurationError, match=reason) as info:
        load_settings()
    assert "0123456789abcdef" not in str(info.value)
