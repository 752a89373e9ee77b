"""The append-only event store (SQLAlchemy Core; SQLite and PostgreSQL)."""

from events.store.recorder import Recorder, recorder_for
from events.store.sql import START, ChainBreak, Checkpoint, EventStore
from events.store.streams import ALERT, PATIENT, is_patient_stream, kind_of, stream_name
from events.store.tables import metadata

__all__ = ["ALERT", "PATIENT", "START", "ChainBreak", "Checkpoint", "EventStore", "Recorder",
           "is_patient_stream", "kind_of", "metadata", "recorder_for", "stream_name"]
