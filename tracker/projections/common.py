"""Small shared pieces of the projections: date arithmetic and result records."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import date
from functools import cache, update_wrapper
from typing import Any, TypeVar, get_type_hints

from dateutil.relativedelta import relativedelta

S = TypeVar("S")
F = TypeVar("F", bound=Callable[..., Any])


class typedispatch:
    """``functools.singledispatch`` for the folds, on the *exact* type of the first
    argument: one dictionary look-up per event instead of an MRO walk behind a weak-key
    cache. Event data classes are final (no subclass is ever dispatched on), so the two
    agree; a type with no handler falls back to the default function."""

    def __init__(self, default: Callable[..., Any]) -> None:
        self.default = default
        self.handlers: dict[type, Callable[..., Any]] = {}
        update_wrapper(self, default)

    def register(self, func: F) -> F:
        hints = get_type_hints(func)
        first = next(iter(inspect.signature(func).parameters))
        self.handlers[hints[first]] = func
        return func

    def __call__(self, data: Any, *args: Any) -> Any:
        return self.handlers.get(type(data), self.default)(data, *args)


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def replace(state: S, **changes: Any) -> S:
    """``dataclasses.replace`` for the folds' frozen states, without re-running
    ``__init__``: a fold makes a new state per event, so this is on the hot path."""
    cls: type = type(state)
    new: S = object.__new__(cls)
    for name in _field_names(cls):
        object.__setattr__(new, name, changes[name] if name in changes
                           else getattr(state, name))
    return new


def add_months(d: date, months: int) -> date:
    """Calendar months with end-of-month clamping: 31 Aug + 6 months = 28/29 Feb."""
    result: date = d + relativedelta(months=months)
    return result


def r3(x: float) -> float:
    """Numbers in the contract are plain JSON numbers rounded to 3 decimals."""
    return round(x + 0.0, 3)


@dataclass(frozen=True, slots=True)
class Finding:
    """An immediate fact that needs a person (interchange: finding kinds)."""

    kind: str
    on: date
    event_id: str | None
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "on": self.on.isoformat(), "event_id": self.event_id,
                "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Deviation:
    """A departure from the protocol, naming the event (interchange: deviation kinds)."""

    event_id: str
    kind: str
    detail: str
    on: date

    def as_json(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "kind": self.kind, "detail": self.detail,
                "on": self.on.isoformat()}


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a state, deviation or due item holds: words a clinician can check, and the
    events they rest on (for ``cno-tracker explain``)."""

    subject: str
    text: str
    event_ids: tuple[str, ...] = field(default_factory=tuple)
