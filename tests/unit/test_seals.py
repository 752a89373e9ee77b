"""The pure part of seals: keys, signing, reading a seal back, what differs."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from tracker.seals import (
    LogState,
    SealFormatError,
    SealKeys,
    differences,
    parse_keys,
    parse_seal,
    sign,
    signature_problem,
)

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
STATE = LogState({"P0001": (3, "a" * 64), "P0002": (1, "b" * 64)}, 4, 17)
KEYS = SealKeys.from_settings("k1:0123456789abcdef", None)


def test_a_seal_round_trips_through_its_document_and_still_verifies() -> None:
    seal = sign(STATE, KEYS, AT)
    again = parse_seal(seal.to_json())
    assert again == seal
    assert signature_problem(again, KEYS) == (True, None)


def test_any_change_to_the_signed_state_breaks_the_signature() -> None:
    doc = orjson.loads(sign(STATE, KEYS, AT).to_json())
    for path, value in ((("event_count",), 5), (("last_position",), 16),
                        (("streams", "P0001"), [3, "c" * 64]),
                        (("sealed_at",), "2027-01-01T00:00:00+00:00")):
        changed = orjson.loads(orjson.dumps(doc))
        target = changed
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        checked, problem = signature_problem(parse_seal(orjson.dumps(changed)), KEYS)
        assert checked and problem is not None and "forged or altered" in problem


def test_another_key_with_the_same_id_does_not_verify() -> None:
    other = SealKeys.from_settings("k1:another-secret-of-16", None)
    assert signature_problem(sign(STATE, KEYS, AT), other)[1] is not None


def test_an_unknown_key_id_cannot_be_checked() -> None:
    other = SealKeys.from_settings("k2:0123456789abcdef", None)
    assert signature_problem(sign(STATE, KEYS, AT), other) == (False, None)


def test_rotation_keeps_former_keys_for_verifying_only() -> None:
    rotated = SealKeys.from_settings("k2:fedcba9876543210", "k1:0123456789abcdef")
    assert rotated.signing_id == "k2"
    assert signature_problem(sign(STATE, KEYS, AT), rotated) == (True, None)
    assert sign(STATE, rotated, AT).key_id == "k2"


def test_a_key_id_with_two_secrets_is_refused() -> None:
    with pytest.raises(SealFormatError, match="two different secrets"):
        SealKeys.from_settings("k1:0123456789abcdef", "k1:fedcba9876543210")


@pytest.mark.parametrize(("text", "reason"), [
    ("k1", "ID:SECRET"), (":0123456789abcdef", "ID:SECRET"), ("k1:0123456789abcde", "shorter"),
    ("k1:0123456789abcdef,k1:0123456789abcdef", "twice"), ("k\n1:0123456789abcdef", "ID:SECRET")])
def test_unreadable_keys_are_refused_without_showing_the_secret(text: str, reason: str) -> None:
    with pytest.raises(SealFormatError, match=reason) as info:
        parse_keys(text, "CNO_TRACKER_SEAL_KEYS")
    assert "0123456789abcde" not in str(info.value)


def test_signing_needs_a_signing_key() -> None:
    with pytest.raises(SealFormatError, match="CNO_TRACKER_SEAL_KEY"):
        sign(STATE, SealKeys.from_settings(None, "k1:0123456789abcdef"), AT)


@pytest.mark.parametrize("raw", [b"", b"[]", b'{"format": "other"}',
                                 b'{"format": "cno-tracker-seal/1"}', b"\xff"])
def test_a_document_that_is_not_a_seal_is_refused(raw: bytes) -> None:
    with pytest.raises(SealFormatError):
        parse_seal(raw)


def test_an_untouched_or_grown_log_has_no_differences() -> None:
    assert differences(STATE, {"P0001": (3, "a" * 64), "P0002": (1, "b" * 64)}, 4, True) == []
    assert differences(STATE, {"P0001": (3, "a" * 64), "P0002": (1, "b" * 64)}, 90, True) == []


def test_each_difference_is_named() -> None:
    found = differences(STATE, {"P0001": (3, "f" * 64)}, 3, False)
    assert found == [
        "stream 'P0001': v3 has hash ffffffffffff…, the seal says aaaaaaaaaaaa…: history was "
        "rewritten",
        "stream 'P0002': event v1 (its head when sealed) is missing",
        "the log holds 3 event(s), fewer than the 4 sealed",
        "the event at the sealed last position 17 is missing",
    ]
