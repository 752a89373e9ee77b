"""Small shared pieces of the projections: date arithmetic and result records."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import date
from functools import cache, update_wrapper
from typing import Any, Protocol, TypeVar, cast, get_type_hints

from dateutil.relativedelta import relativedelta

S = TypeVar("S")
F = TypeVar("F", bound=Callable[..., Any])


class Dispatcher(Protocol):
    handlers: dict[type, Callable[..., Any]]

    def __call__(self, data: Any, *args: Any) -> Any: ...

    def register(self, func: F) -> F: ...


def typedispatch(default: Callable[..., Any]) -> Dispatcher:
    """``functools.singledispatch`` for the folds, on the *exact* type of the first
    argument: one dictionary look-up per event instead of an MRO walk behind a weak-key
    cache. Event data classes are final (no subclass is ever dispatched on), so the two
    agree; a type with no handler falls back to the default function."""
    handlers: dict[type, Callable[..., Any]] = {}
    lookup = handlers.get

    def dispatch(data: Any, *args: Any) -> Any:
        return lookup(type(data), default)(data, *args)

    def register(func: F) -> F:
        hints = get_type_hints(func)
        first = next(iter(inspect.signature(func).parameters))
        handlers[hints[first]] = func
        return func

    update_wrapper(dispatch, default)
    dispatch.handlers = handlers  # type: ignore[attr-defined]
    dispatch.register = register  # type: ignore[attr-defined]
    return cast(Dispatcher, dispatch)


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


@cache
def _replacer(cls: type) -> Callable[[Any, dict[str, Any]], Any]:
    """A copy function written for one frozen state class: every field assigned by name,
    no loop, no ``getattr`` (the folds make a new state per event)."""
    body = [f"    _set(obj, {n!r}, changes[{n!r}] if {n!r} in changes else state.{n})"
            for n in _field_names(cls)]
    source = "\n".join(["def copy_(state, changes):", "    obj = _new(_cls)", *body,
                         "    return obj"])
    namespace: dict[str, Any] = {"_new": object.__new__, "_set": object.__setattr__,
                                 "_cls": cls}
    exec(source, namespace)
    return cast(Callable[[Any, dict[str, Any]], Any], namespace["copy_"])


def replace(state: S, **changes: Any) -> S:
    """``dataclasses.replace`` for the folds' frozen states, without re-running
    ``__init__``: a fold makes a new state per event, so this is on the hot path."""
    cls: type = type(state)
    return cast(S, _replacer(cls)(state, changes))


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
