"""Decoding the interchange format's JSON Lines: one validated line at a time.

Each line is decoded in one pass by a discriminated union of per-type line models, so
``type``, the envelope fields and ``data`` are checked together and every problem comes
back with its field path (``data.pain``) and a reason."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal, Union

import orjson
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, create_model

from events.errors import InvalidEvent, Problem
from events.vocabulary import IMPORTABLE_TYPES, EventData
from events.vocabulary.common import PatientRef, When, no_control_characters


def _column_text(value: str) -> str:
    """No control character, then no surrounding whitespace (one validator, two checks)."""
    no_control_characters(value)
    if value != value.strip():
        raise ValueError("has leading or trailing whitespace")
    return value


#: the code points ``str.isspace()`` holds for that are not control characters (C0, DEL,
#: C1: ``CONTROL_RE``), as this Python's Unicode tables give them. Listed, not computed at
#: import (a walk over every code point costs a sixth of a second of each command's
#: start-up); tests/unit/test_column_text_pattern.py computes them and compares.
SPACES = (0x20, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000)


def _column_text_pattern() -> str:
    """What :func:`_column_text` accepts, as a pattern pydantic-core matches natively (no
    Python call per value): no control character (C0, DEL, C1: ``CONTROL_RE``) anywhere,
    and first and last characters none of those ``str.strip()`` removes (the control
    characters and :data:`SPACES`)."""
    control = "\\x00-\\x1f\\x7f-\\x9f"
    space = "".join(f"\\x{{{c:x}}}" for c in SPACES)
    edge = f"[^{control}{space}]"
    return f"^{edge}(?:[^{control}]*{edge})?$"


#: matched natively (Rust regex: ``$`` is the very end); a mismatch's reason is the one
#: :func:`_column_text` gives for the value (see :func:`problems_from`)
COLUMN_TEXT = _column_text_pattern()


def _column_text_reason(value: object) -> str:
    try:
        _column_text(value)  # type: ignore[arg-type]
    except ValueError as exc:
        return str(exc)
    raise AssertionError(f"{value!r} refused by the pattern, accepted by _column_text")


#: who entered a line, and its idempotency key: stored in their own columns, so no
#: control character (PostgreSQL refuses NUL in text) and no surrounding whitespace
ByWho = Annotated[str, Field(min_length=1, max_length=128, pattern=COLUMN_TEXT)]
Key = Annotated[str, Field(min_length=1, max_length=200, pattern=COLUMN_TEXT)]
#: the top-level fields of those two types
_COLUMN_TEXT_FIELDS = ("recorded_by", "idempotency_key")


def _line_model(name: str, data_cls: type[EventData]) -> Any:
    return create_model(
        f"{name}Line",
        __config__=ConfigDict(extra="forbid", strict=True, frozen=True),
        type=(Literal[name], ...),  # type: ignore[arg-type]
        patient=(PatientRef, ...),
        occurred_at=(When, ...),
        recorded_by=(ByWho | None, None),
        idempotency_key=(Key | None, None),
        data=(data_cls, ...),
    )


LINE_MODELS = {name: _line_model(name, cls) for name, cls in IMPORTABLE_TYPES.items()}
_ADAPTER: TypeAdapter[Any] = TypeAdapter(
    Annotated[Union[tuple(LINE_MODELS.values())], Field(discriminator="type")]  # type: ignore[arg-type]  # noqa: UP007
)
TYPE_LIST = ", ".join(sorted(IMPORTABLE_TYPES))
#: ``_ADAPTER.validate_json`` minus its Python wrapper (it adds only an argument check for
#: by_alias / by_name, neither given here): the compiled validator's own method
_VALIDATE_JSON = _ADAPTER.validator.validate_json


def problems_from(exc: ValidationError, line: int | None, *, prefix: str = "") -> list[Problem]:
    out = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        kind = err["type"]
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            tag = (err.get("ctx") or {}).get("tag")
            reason = (f"unknown type {tag!r}; expected one of: {TYPE_LIST}" if tag
                      else f"missing; expected one of: {TYPE_LIST}")
            out.append(Problem(line, "type", reason))
            continue
        if loc and isinstance(loc[0], str) and loc[0] in LINE_MODELS:
            loc = loc[1:]  # the discriminator's tag
        field = prefix + ".".join(str(x) for x in loc) if loc else (prefix.rstrip(".") or "line")
        msg = err["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            msg = "unknown field"
        elif kind == "missing":
            msg = "required field is missing"
        elif (kind == "string_pattern_mismatch" and len(loc) == 1
              and loc[0] in _COLUMN_TEXT_FIELDS):
            msg = _column_text_reason(err["input"])
        out.append(Problem(line, field, msg))
    return out


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen.add(key)
    return dict(pairs)


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(key)


def _pairs(body: bytes) -> int:
    """The key-value pairs of a JSON text without backslashes: every ``"`` delimits a
    string, so each ``"`` followed by optional whitespace and ``:`` ends a key."""
    if b"\t" in body or b"\r" in body or b"\n" in body or b"  :" in body:
        return len(_KEY_END.findall(body))
    return body.count(b'":') + body.count(b'" :')


_KEY_END = re.compile(rb'"[ \t\r\n]*:')


def duplicate_key(raw: bytes | str) -> str | None:
    """The first key that appears twice in one JSON object of ``raw``, if any.

    Parsers disagree on duplicates (orjson and pydantic keep the last, others the first),
    so a line with one could mean one patient here and another elsewhere. Fast paths: a
    line that orjson re-encodes byte for byte has no duplicate (every key of the decoded
    objects is written once), nor has a line without backslashes whose key count equals
    the re-encoding's (a dropped duplicate would leave the line with one key more). Other
    lines (escapes, or a count that differs) are parsed again with the standard library's
    ``object_pairs_hook``, which names the key. Malformed JSON is left to the validator,
    which names the error."""
    body = (raw.encode() if isinstance(raw, str) else raw).strip()
    try:
        again = orjson.dumps(orjson.loads(body))
    except orjson.JSONDecodeError:
        again = None  # e.g. an integer beyond 64 bits: the exact check decides
    if again is not None and (again == body or (
            b"\\" not in body and again.count(b'":') == _pairs(body))):
        return None
    try:
        json.loads(body, object_pairs_hook=_refuse_duplicates)
    except _DuplicateKey as exc:
        return exc.key
    except ValueError:
        return None
    return None


def _enrolment_order(model: Any, line: int | None) -> list[Problem]:
    """A child is born on or before the day it is enrolled."""
    when = model.occurred_at
    enrolled_on = when.date() if isinstance(when, datetime) else when
    if model.data.birth_date > enrolled_on:
        return [Problem(line, "data.birth_date",
                        f"is after the enrolment date occurred_at ({enrolled_on})")]
    return []


def decode_line(raw: bytes | str, line: int | None = None) -> Any:
    """A validated line model, or :class:`events.errors.InvalidEvent`."""
    key = duplicate_key(raw)
    if key is not None:
        raise InvalidEvent([Problem(line, "line", f"duplicate key {key!r} in one JSON object")])
    try:
        model = _VALIDATE_JSON(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            reason = next(e["msg"] for e in exc.errors() if e["type"] == "json_invalid")
            raise InvalidEvent([Problem(line, "line", f"malformed JSON: {reason}")]) from None
        if any(e["type"] == "model_attributes_type" or e["type"] == "model_type"
               for e in exc.errors() if not e["loc"]):
            raise InvalidEvent([Problem(line, "line", "must be a JSON object")]) from None
        raise InvalidEvent(problems_from(exc, line)) from None
    if model.type == "PatientEnrolled":
        problems = _enrolment_order(model, line)
        if problems:
            raise InvalidEvent(problems)
    return model
