"""The documented error tree of the ``events`` package.

EventError
├── InvalidEvent          one or more problems, each with line, field and reason
├── UnknownEventType      a type name that is not in the vocabulary
├── UpcastError           a stored payload whose schema version cannot be brought up to date
└── StoreError            the store refused an operation
    ├── ConcurrencyConflict   the stream moved on since the caller read it
    ├── DuplicateIdempotencyKey  the key exists with different content
    └── AppendOnlyViolation   an UPDATE or DELETE of an event was attempted
"""

from __future__ import annotations

from dataclasses import dataclass


class EventError(Exception):
    """Base of every error raised by the ``events`` package."""


@dataclass(frozen=True)
class Problem:
    """One reason an input was refused."""

    line: int | None
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.field}: {self.reason}"


class InvalidEvent(EventError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems[:5]) + (
            f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))


class UnknownEventType(EventError):
    pass


class UpcastError(EventError):
    pass


class StoreError(EventError):
    pass


class ConcurrencyConflict(StoreError):
    def __init__(self, stream: str, expected: int, actual: int | None) -> None:
        self.stream, self.expected, self.actual = stream, expected, actual
        super().__init__(
            f"stream {stream!r} is at version {actual}, expected {expected}: "
            "someone else appended first; re-read and retry")


class DuplicateIdempotencyKey(StoreError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"idempotency key {key!r} was already used for different content")


class AppendOnlyViolation(StoreError):
    pass
