"""The folds' small machinery: month arithmetic, the state copy and the type dispatch."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from tracker.projections.common import add_months, replace


def test_months_clamp_at_the_end_of_the_month() -> None:
    assert add_months(date(2015, 8, 31), 6) == date(2016, 2, 29)
    assert add_months(date(2014, 8, 31), 6) == date(2015, 2, 28)
    assert add_months(date(2015, 1, 31), 1) == date(2015, 2, 28)


@dataclass(frozen=True, slots=True)
class _State:
    a: int
    b: tuple[int, ...] = ()
    c: list[int] = field(default_factory=list)


def test_replace_copies_every_field_but_the_changed_ones() -> None:
    s = _State(1, (2,), [3])
    t = replace(s, a=5)
    assert (t.a, t.b, t.c) == (5, (2,), [3]) and (s.a, s.b) == (1, (2,))
    assert type(t) is _State and t is not s
