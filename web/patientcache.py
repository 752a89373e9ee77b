"""The patient page's evaluation, cached by stream version.

Folding a patient's whole history (and building its timeline) is most of a patient page;
the result only changes when the stream gets a new event, the clinical date or the
known-at instant changes, or the protocol does. So a page first reads the stream's head
(one indexed row) and, when (patient, version, date, known-at, protocol) is cached, reuses
the evaluation, the status JSON and the timeline rows without reading the events. The
chart route shares the same evaluations. The page's rendered content (everything but the
frame with the user's name, navigation and CSRF token) is kept too, per view, role and
audit query: rendering some 70 timeline rows costs more than the fold's look-up. Both are
bounded (least recently used goes first), so memory stays flat; one lock per cache, the
fold and the rendering run outside it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from markupsafe import Markup

from events.envelope import RecordedEvent
from tracker.bootstrap import App
from tracker.status import Evaluation, evaluate
from tracker.timeline import timeline

ViewKey = tuple[str, int, date, datetime | None, str]


@dataclass(frozen=True)
class PatientView:
    version: int
    evaluation: Evaluation
    status: dict[str, Any]
    timeline: list[dict[str, Any]]


class PatientViews:
    def __init__(self, max_entries: int = 512, max_fragments: int = 256) -> None:
        self.max_entries = max_entries
        self.max_fragments = max_fragments
        self.folds = 0  # how many times a history was folded (the cache's misses)
        self.renders = 0  # how many times a page's content was rendered
        self._entries: OrderedDict[ViewKey, PatientView] = OrderedDict()
        self._fragments: OrderedDict[Hashable, Markup] = OrderedDict()
        self._lock = threading.Lock()

    def fragment(self, key: Hashable, make: Callable[[], Markup]) -> Markup:
        """What ``make`` renders for ``key`` (which must name everything the content shows:
        the view's stream version, date, known-at, protocol, the role and the query)."""
        with self._lock:
            found = self._fragments.get(key)
            if found is not None:
                self._fragments.move_to_end(key)
                return found
        made = make()
        with self._lock:
            self.renders += 1
            self._fragments[key] = made
            while len(self._fragments) > self.max_fragments:
                self._fragments.popitem(last=False)
        return made

    def get(self, core: App, ref: str, at: date, known_at: datetime | None,
            missing: Callable[[], Exception]) -> PatientView:
        """The view of ``ref``; ``missing()`` is raised when the patient has no events."""
        fingerprint = core.protocol.fingerprint
        version = core.store.head(ref).version
        if version == 0:
            raise missing()
        key: ViewKey = (ref, version, at, known_at, fingerprint)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        events = core.store.read_stream(ref)
        if not events:
            raise missing()
        view = self._fold(core, ref, events, at, known_at)
        with self._lock:
            self.folds += 1
            self._entries[(ref, view.version, at, known_at, fingerprint)] = view
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return view

    @staticmethod
    def _fold(core: App, ref: str, events: list[RecordedEvent], at: date,
              known_at: datetime | None) -> PatientView:
        ev = evaluate(ref, events, at=at, known_at=known_at, protocol=core.protocol)
        rows = timeline(events, known_at=known_at, zone=core.protocol.zone)
        return PatientView(events[-1].version, ev, ev.as_json(), rows)
