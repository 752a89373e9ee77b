"""The ward list's worklist, computed once per change of the read model.

Every ward request still catches the read model up (so a change anyone recorded before
the request is on the list, exactly as ``cno-tracker due`` shows it), but

* concurrent requests share one catch-up: a request waits for the refresh in progress
  and takes its result when that refresh *started after the request arrived* (it then saw
  everything committed before the request);
* the worklist query (:func:`tracker.worklist.read_worklist`, the same as the CLI's) runs
  again only when the read model may have changed: the date moved, the catch-up wrote
  rows, or another process (the worker, another web process) moved the projector's
  checkpoint since our last look. A log that grew only by access events (every patient
  view appends one) changes no row, so the list is served from memory.

With ``max_age`` > 0 (``CNO_TRACKER_WARD_REFRESH_SECONDS``), a list refreshed less than
that many seconds ago is served without even the catch-up, and while one request refreshes
an older list the others get the list it replaces instead of queueing behind the catch-up:
other processes' changes then reach the list up to ``max_age`` (plus one refresh) late,
while this process's own writes (the forms, ``POST
/fhir``) call :meth:`invalidate`, so whoever records something sees it on the next list.

One entry (today's list); the page filters it per request. Memory is bounded by it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from events.store import Checkpoint
from tracker.bootstrap import App
from tracker.readmodel import StatusProjector
from tracker.worklist import SOON_DAYS, read_worklist

T = TypeVar("T")
#: filtered views of one list kept (severity × kind × patient filters in use)
MAX_DERIVED = 64


@dataclass(frozen=True)
class _Entry:
    on: date
    checkpoint: Checkpoint  # the projector's, right after the catch-up behind ``items``
    started: float  # monotonic time the refresh behind ``items`` began
    items: list[dict[str, Any]]


class WardCache:
    def __init__(self, core: App, *, soon_days: int = SOON_DAYS, max_age: float = 0.0) -> None:
        self.core = core
        self.soon_days = soon_days
        self.max_age = max_age
        self.refreshes = 0  # how many times the read model was caught up
        self.queries = 0  # how many times the worklist was read from the database
        self._entry: _Entry | None = None
        self._lock = threading.Lock()
        self._derived_from: list[dict[str, Any]] | None = None
        self._derived: dict[Hashable, Any] = {}
        self._derived_lock = threading.Lock()

    def _fresh(self, entry: _Entry | None, on: date, arrived: float) -> bool:
        return entry is not None and entry.on == on and (
            entry.started >= arrived  # a refresh that began after we arrived
            or arrived - entry.started < self.max_age)

    def items(self, on: date) -> list[dict[str, Any]]:
        """Today's worklist (``on`` is the centre's today): callers must not mutate it."""
        arrived = time.monotonic()
        entry = self._entry
        if self._fresh(entry, on, arrived):
            assert entry is not None
            return entry.items
        if (self.max_age > 0 and entry is not None and entry.on == on
                and entry.started != float("-inf")):
            if not self._lock.acquire(blocking=False):
                # another request is refreshing a list that aged past max_age: this one
                # takes the list being replaced (at most max_age + that refresh old) rather
                # than queueing behind the catch-up; an invalidated list never gets here
                return entry.items
        else:
            self._lock.acquire()
        try:
            return self._refresh(on, arrived)
        finally:
            self._lock.release()

    def _refresh(self, on: date, arrived: float) -> list[dict[str, Any]]:
        """The refresh behind :meth:`items`, under ``_lock``."""
        entry = self._entry
        if self._fresh(entry, on, arrived):
            assert entry is not None
            return entry.items
        started = time.monotonic()
        self.refreshes += 1
        core = self.core
        projector = StatusProjector(core.store, core.protocol, core.clock)
        before = projector.checkpoint()
        report = projector.catch_up()
        after = projector.checkpoint()
        unchanged = (entry is not None and entry.on == on and before == entry.checkpoint
                     and not report.skipped_locked and not report.patients
                     and not report.rechecked)
        if unchanged and entry is not None:
            items = entry.items
        else:
            with core.engine.connect() as conn:
                items = read_worklist(conn, on, soon_days=self.soon_days,
                                      lookback_days=core.protocol.alert_lookback_days)
            self.queries += 1
        # after a skipped (locked) catch-up another process is folding: do not trust
        # this checkpoint as the state behind ``items``
        self._entry = _Entry(on, after if not report.skipped_locked else before,
                             started, items)
        return items

    def invalidate(self) -> None:
        """This process wrote an event: the next list catches up whatever its age."""
        with self._lock:
            if self._entry is not None:
                self._entry = _Entry(self._entry.on, self._entry.checkpoint,
                                     float("-inf"), self._entry.items)

    def derived(self, items: list[dict[str, Any]], key: Hashable, make: Callable[[], T]) -> T:
        """What ``make`` builds from ``items`` (a filtered list, a rendered fragment),
        built once per list and ``key``: a new list drops every derived value."""
        with self._derived_lock:
            if self._derived_from is not items:
                self._derived_from, self._derived = items, {}
            if key in self._derived:
                found: T = self._derived[key]
                return found
        value = make()
        with self._derived_lock:
            if self._derived_from is items and len(self._derived) < MAX_DERIVED:
                self._derived[key] = value
        return value
