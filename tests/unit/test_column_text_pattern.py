"""``recorded_by`` and ``idempotency_key`` are checked by a pattern pydantic-core matches
natively; it must accept exactly what ``_column_text`` accepts, and a refusal must carry
``_column_text``'s reason (the problems are a contract)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import TypeAdapter, ValidationError

from events.errors import InvalidEvent
from events.lines import SPACES, ByWho, _column_text, decode_line
from events.vocabulary.common import CONTROL_RE

_BY_WHO: TypeAdapter[str] = TypeAdapter(ByWho)


def _accepted_by_pattern(value: str) -> bool:
    try:
        _BY_WHO.validate_python(value)
    except ValidationError:
        return False
    return True


def _accepted_by_column_text(value: str) -> bool:
    try:
        _column_text(value)
    except ValueError:
        return False
    return True


def test_the_pattern_accepts_exactly_what_column_text_accepts_for_every_code_point() -> None:
    differ = []
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue  # lone surrogates never come out of JSON decoding
        c = chr(cp)
        for value in (c, f"a{c}", f"{c}a", f"a{c}b"):
            if _accepted_by_pattern(value) != _accepted_by_column_text(value):
                differ.append(value)
    assert differ == []


ENROL: dict[str, Any] = {"type": "PatientEnrolled", "patient": "P0001",
                         "occurred_at": "2014-01-10",
                         "data": {"birth_date": "2003-05-01", "sex": "female"}}
CONTROL = "contains a control character (e.g. NUL or a line break)"
SPACE = "has leading or trailing whitespace"


@pytest.mark.parametrize(("value", "reason"), [
    (" lead", SPACE), ("trail ", SPACE), ("\u3000x", SPACE), ("x\u2028", SPACE),
    ("x\u00a0", SPACE), ("nul\x00x", CONTROL), (" \x00", CONTROL), ("a\n", CONTROL),
    ("\x85", CONTROL), ("del\x7f", CONTROL),
    ("", "String should have at least 1 character"),
])
def test_refusals_keep_their_reasons_and_order(value: str, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_line(orjson.dumps({**ENROL, "recorded_by": value, "idempotency_key": value,
                                  "data": {"birth_date": "2003-05-01", "sex": "x"}}), 3)
    assert [(p.line, p.field, p.reason) for p in caught.value.problems] == [
        (3, "recorded_by", reason), (3, "idempotency_key", reason),
        (3, "data.sex", "Input should be 'female', 'male', 'other' or 'unknown'")]


def test_too_long_is_said_before_any_character_check() -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_line(orjson.dumps({**ENROL, "recorded_by": " " + "x" * 200 + "\x00"}))
    assert [(p.field, p.reason) for p in caught.value.problems] == [
        ("recorded_by", "String should have at most 128 characters")]


@pytest.mark.parametrize("value", ["import", "lab.feed", "a b", "é", "日本", "x" * 128])
def test_ordinary_values_pass(value: str) -> None:
    assert decode_line(orjson.dumps({**ENROL, "recorded_by": value})).recorded_by == value


def test_the_listed_spaces_are_this_pythons_non_control_white_space() -> None:
    computed = tuple(cp for cp in range(0x110000)
                     if chr(cp).isspace() and CONTROL_RE.match(chr(cp)) is None)
    assert computed == SPACES
