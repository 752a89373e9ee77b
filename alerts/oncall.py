"""On-call schedules: who holds a role at an instant. Pure: no clock, no I/O.

Three kinds of entry, each for one role, all in the centre's *local* time (TOML local
date-times without an offset: ``2026-03-23T08:00:00``, or a bare date for its midnight)::

    [[rotation]]                       # a repeating rota
    role = "on_call_consultant"
    start = 2026-03-23T08:00:00        # the first turn starts here (local wall-clock time)
    every_days = 7                     # each turn lasts this many days (default 7: weekly)
    members = ["consult.c", "consult.d"]   # in turn order, round and round

    [[shift]]                          # a date range
    role = "nurse"
    member = "nurse.a"
    start = 2026-03-28T20:00:00
    end = 2026-03-30T08:00:00          # exclusive

    [[override]]                       # same shape as a shift; wins over everything
    role = "on_call_consultant"
    member = "consult.e"
    start = 2026-10-24
    end = 2026-10-26

Who is on call for ``role`` at an instant (converted to local wall-clock time first):
the members of the overrides covering it; else of the shifts covering it; else the
rotations' current turn (several rotations of one role add up); else nobody is scheduled
and the roster's ``on_call`` flags decide, as before schedules existed.

**[reading]** Turns and ranges are measured in *wall-clock* time: a weekly turn starting
Monday 08:00 starts Monday 08:00 whatever the daylight-saving changes between (so a turn
spanning the spring change lasts 167 real hours, the autumn one 169). In the autumn
repeated hour, both instants shown as 02:30 are the same wall-clock time, so they fall
in the same turn.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def _local(value: Any) -> Any:
    """A TOML local date-time (or a date: its midnight); an offset is refused."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ValueError("must be the centre's local time, without an offset "
                             "(e.g. 2026-03-23T08:00:00)")
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return value


class Rotation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: str
    start: datetime
    every_days: int = Field(default=7, ge=1, le=366)
    members: tuple[str, ...] = Field(min_length=1)

    _start = field_validator("start", mode="before")(_local)

    @field_validator("members")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a member is listed twice")
        return value

    def at(self, local: datetime) -> str | None:
        """The member whose turn it is at wall-clock ``local`` (None before ``start``)."""
        if local < self.start:
            return None
        turn = (local - self.start) // timedelta(days=self.every_days)
        return self.members[turn % len(self.members)]


class Shift(BaseModel):
    """A date range ``[start, end)``; ``[[override]]`` entries have the same shape."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: str
    member: str
    start: datetime
    end: datetime

    _bounds = field_validator("start", "end", mode="before")(_local)

    @model_validator(mode="after")
    def _ordered(self) -> Shift:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def covers(self, local: datetime) -> bool:
        return self.start <= local < self.end


class Schedule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rotation: tuple[Rotation, ...] = ()
    shift: tuple[Shift, ...] = ()
    override: tuple[Shift, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rotation or self.shift or self.override)

    def entries(self) -> Iterable[tuple[str, int, str, Sequence[str]]]:
        """(section, index, role, members) of every entry, for validation."""
        for i, r in enumerate(self.rotation):
            yield "rotation", i, r.role, r.members
        for i, s in enumerate(self.shift):
            yield "shift", i, s.role, (s.member,)
        for i, o in enumerate(self.override):
            yield "override", i, o.role, (o.member,)

    def on_call(self, role: str, at: datetime, zone: tzinfo) -> tuple[str, ...]:
        """The staff ids on call for ``role`` at the aware instant ``at``, in schedule
        order; empty when no entry of this role covers it."""
        if at.tzinfo is None:
            raise ValueError("at must be an aware instant")
        local = at.astimezone(zone).replace(tzinfo=None)
        for entries in (self.override, self.shift):
            found = [s.member for s in entries if s.role == role and s.covers(local)]
            if found:
                return tuple(dict.fromkeys(found))
        turns = [r.at(local) for r in self.rotation if r.role == role]
        return tuple(dict.fromkeys(m for m in turns if m is not None))
