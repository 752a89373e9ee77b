"""The envelope every event travels in, canonical JSON and the hash chain."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cached_property, lru_cache
from typing import Any

import orjson

from events.upcasting import upcast
from events.vocabulary import EventData, data_class_for
from events.vocabulary.common import TRUSTED

GENESIS = "0" * 64


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no white space, ISO dates: the same bytes for the same content."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


@lru_cache(maxsize=8192)
def utc_iso(moment: datetime) -> str:
    """ISO UTC with microseconds (cached: an import stamps every event with one instant)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def dump_data(data: EventData) -> dict[str, Any]:
    return data.model_dump(mode="json", exclude_none=True)


def decode_data(event_type: str, schema_version: int, payload: str | bytes, *,
                trusted: bool = True) -> EventData:
    """A stored payload as its model. Stored payloads are trusted by default (see
    ``events.vocabulary.common.TRUSTED``); ``verify`` decodes them untrusted."""
    cls = data_class_for(event_type)
    if schema_version != cls.schema_version:
        upcasted = upcast(event_type, schema_version, orjson.loads(payload))
        payload = orjson.dumps(upcasted)
    return cls.model_validate_json(payload, context=TRUSTED if trusted else None)


def content_hash(event_type: str, stream: str, occurred_at: datetime,
                 data_json: bytes) -> str:
    """What idempotency compares: the same key must carry the same clinical content."""
    h = hashlib.sha256()
    h.update(event_type.encode())
    h.update(b"\x00")
    h.update(stream.encode())
    h.update(b"\x00")
    h.update(utc_iso(occurred_at).encode())
    h.update(b"\x00")
    h.update(data_json)
    return h.hexdigest()


def chain_hash(prev: str, *, event_id: str, stream: str, version: int, event_type: str,
               schema_version: int, occurred_at: datetime, occurred_on: date,
               recorded_at: datetime, recorded_by: str, idempotency_key: str | None,
               data_json: bytes) -> str:
    """SHA-256 over the previous link and the canonical JSON of everything stored."""
    header = canonical_json({
        "event_id": event_id, "stream": stream, "version": version, "type": event_type,
        "schema_version": schema_version, "occurred_at": utc_iso(occurred_at),
        "occurred_on": occurred_on.isoformat(), "recorded_at": utc_iso(recorded_at),
        "recorded_by": recorded_by, "idempotency_key": idempotency_key,
    })
    h = hashlib.sha256()
    h.update(prev.encode())
    h.update(header)
    h.update(data_json)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended (its stream and version are given by ``append``)."""

    event_id: str
    type: str
    data: EventData
    occurred_at: datetime
    occurred_on: date
    recorded_at: datetime
    recorded_by: str
    idempotency_key: str | None = None
    #: the canonical JSON of ``data`` and the content hash, when the caller computed them
    #: already (the importer does, to compare idempotency keys); derived otherwise
    data_json: bytes | None = None
    content_hash: str | None = None

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None or self.recorded_at.tzinfo is None:
            raise ValueError("occurred_at and recorded_at must be timezone-aware")
        if type(self.data).__name__ != self.type:
            raise ValueError(f"data is a {type(self.data).__name__}, not a {self.type}")


@dataclass(frozen=True)
class RecordedEvent:
    """An event as stored: decoded lazily, so scanning a log costs only what is read."""

    position: int
    tx: int
    event_id: str
    stream: str
    version: int
    type: str
    schema_version: int
    occurred_at: datetime
    occurred_on: date
    recorded_at: datetime
    recorded_by: str
    idempotency_key: str | None
    payload: str
    hash: str

    @property
    def patient(self) -> str:
        return self.stream

    @cached_property
    def data(self) -> EventData:
        return decode_data(self.type, self.schema_version, self.payload)

    def as_dict(self) -> dict[str, Any]:
        """The audit view of one event (interchange: timeline)."""
        return {
            "event_id": self.event_id, "patient": self.stream, "version": self.version,
            "position": self.position, "type": self.type,
            "schema_version": self.schema_version,
            "occurred_at": utc_iso(self.occurred_at), "occurred_on": self.occurred_on.isoformat(),
            "recorded_at": utc_iso(self.recorded_at), "recorded_by": self.recorded_by,
            "idempotency_key": self.idempotency_key, "data": dump_data(self.data),
        }
