"""Every pattern of the code base matches whole values only (issue 9 item 1): for each,
the value itself is accepted and the value with a final newline (what ``$`` lets
through), surrounding whitespace or a control character is refused. The event
vocabulary's patterns are tested through the line decoder in test_line_hardening.py."""

from __future__ import annotations

import re

import pytest

from alerts.channels.base import ADDRESS_RE, E164_RE, is_address, is_e164
from alerts.roster import ROLE_RE, STAFF_ID_RE
from events.vocabulary.common import IDENTIFIER_RE, LOINC_RE, PATIENT_RE, check_patient_ref
from tracker.seals import KEY_ID_RE
from tracker.settings import (
    E164_RE as SETTINGS_E164_RE,
)
from tracker.settings import (
    TWILIO_ACCOUNT_SID_RE,
    TWILIO_AUTH_TOKEN_RE,
    TWILIO_MESSAGING_SERVICE_RE,
)

VALID = {
    "PATIENT_RE": (PATIENT_RE, "P0007"),
    "IDENTIFIER_RE": (IDENTIFIER_RE, "course:c3"),
    "LOINC_RE": (LOINC_RE, "17861-6"),
    "KEY_ID_RE": (KEY_ID_RE, "k2026-12"),
    "TWILIO_ACCOUNT_SID_RE": (TWILIO_ACCOUNT_SID_RE, "AC" + "0a" * 16),
    "TWILIO_AUTH_TOKEN_RE": (TWILIO_AUTH_TOKEN_RE, "0a" * 16),
    "TWILIO_MESSAGING_SERVICE_RE": (TWILIO_MESSAGING_SERVICE_RE, "MG" + "0a" * 16),
    "settings E164_RE": (SETTINGS_E164_RE, "+34600000000"),
    "alerts E164_RE": (E164_RE, "+34600000000"),
    "ADDRESS_RE": (ADDRESS_RE, "nurse.lopez@example.org"),
    "STAFF_ID_RE": (STAFF_ID_RE, "nurse.lopez"),
    "ROLE_RE": (ROLE_RE, "nurse"),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_the_whole_value_is_accepted(name: str) -> None:
    regex, value = VALID[name]
    assert regex.fullmatch(value)


@pytest.mark.parametrize("name", sorted(VALID))
@pytest.mark.parametrize("spoil", ["{}\n", "{}\r\n", " {}", "{} ", "{}\x00", "\n{}", "{}\t"])
def test_anything_around_the_value_is_refused(name: str, spoil: str) -> None:
    regex, value = VALID[name]
    assert regex.fullmatch(spoil.format(value)) is None
    assert re.fullmatch(regex.pattern, spoil.format(value)) is None


def test_the_checkers_use_whole_matches() -> None:
    assert is_e164("+34600000000") and not is_e164("+34600000000\n")
    assert is_address("a@example.org") and not is_address("a@example.org\n")
    assert check_patient_ref("P0007") == "P0007"
    with pytest.raises(ValueError):
        check_patient_ref("P0007\n")
