"""Decoding the interchange format's JSON Lines: one validated line at a time.

Each line is decoded in one pass by a discriminated union of per-type line models, so
``type``, the envelope fields and ``data`` are checked together and every problem comes
back with its field path (``data.pain``) and a reason."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, create_model

from events.errors import Problem
from events.vocabulary import IMPORTABLE_TYPES, EventData
from events.vocabulary.common import PatientRef, When

ByWho = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\s].*$")]
Key = Annotated[str, Field(min_length=1, max_length=200)]


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
        out.append(Problem(line, field, msg))
    return out


def decode_line(raw: bytes | str, line: int | None = None) -> Any:
    """A validated line model, or :class:`events.errors.InvalidEvent`."""
    from events.errors import InvalidEvent

    try:
        return _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            reason = next(e["msg"] for e in exc.errors() if e["type"] == "json_invalid")
            raise InvalidEvent([Problem(line, "line", f"malformed JSON: {reason}")]) from None
        if any(e["type"] == "model_attributes_type" or e["type"] == "model_type"
               for e in exc.errors() if not e["loc"]):
            raise InvalidEvent([Problem(line, "line", "must be a JSON object")]) from None
        raise InvalidEvent(problems_from(exc, line)) from None
