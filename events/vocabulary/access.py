"""Who looked at or changed what: one event per patient page view, chart, export and
change, in a day's access stream ``access:<YYYY-MM-DD>`` (UTC), never in the clinical
stream. The patient is the pseudonymous reference; nothing clinical is recorded here."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from events.vocabulary.common import EventData

Name = Annotated[str, Field(min_length=1, max_length=64)]


class RecordAccessed(EventData):
    importable = False
    user: Name
    role: Name
    #: what was done: view, chart, timeline, export, record, void, correct, ack, …
    action: Name
    patient: Name | None = None  # None for views across patients (ward list, export)
    #: the page or the event touched (a path, an event id), never a clinical value
    target: Annotated[str, Field(max_length=200)] | None = None
