"""The envelope every event travels in, canonical JSON and the hash chain."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from events.upcasting import upcast
from events.vocabulary import EVENT_TYPES, EventData, data_class_for
from events.vocabulary.common import TRUSTED

GENESIS = "0" * 64
_sha256 = hashlib.sha256


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no white space, ISO dates: the same bytes for the same content."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


@lru_cache(maxsize=8192)
def utc_iso(moment: datetime) -> str:
    """ISO UTC with microseconds (cached: an import stamps every event with one instant)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def dump_data(data: EventData) -> dict[str, Any]:
    """``data.model_dump(mode="json", exclude_none=True)``: the serializer that method
    calls, called directly with the same arguments (not through its Python wrapper: an
    import dumps every line's data)."""
    dumped: dict[str, Any] = data.__pydantic_serializer__.to_python(
        data, mode="json", exclude_none=True, warnings=True)
    return dumped


def decode_data(event_type: str, schema_version: int, payload: str | bytes, *,
                trusted: bool = True) -> EventData:
    """A stored payload as its model. Stored payloads are trusted by default (see
    ``events.vocabulary.common.TRUSTED``); ``verify`` decodes them untrusted."""
    cls = EVENT_TYPES.get(event_type) or data_class_for(event_type)
    if schema_version != cls.schema_version:
        upcasted = upcast(event_type, schema_version, orjson.loads(payload))
        payload = orjson.dumps(upcasted)
    # the model's validator itself (what model_validate_json calls, minus its wrapper)
    data: EventData = cls.__pydantic_validator__.validate_json(
        payload, context=TRUSTED if trusted else None)
    return data


class _Decoded:
    """``RecordedEvent.data``: the payload decoded on first use, then kept in the event's
    ``__dict__`` (a non-data descriptor: later reads never come back here). Unlike
    ``functools.cached_property`` (Python 3.11), it takes no lock per first use."""

    def __get__(self, event: RecordedEvent | None, owner: type) -> Any:
        if event is None:
            return self
        data = decode_data(event.type, event.schema_version, event.payload)
        event.__dict__["data"] = data
        return data


def content_hash(event_type: str, stream: str, occurred_at: datetime,
                 data_json: bytes) -> str:
    """What idempotency compares: the same key must carry the same clinical content."""
    # one buffer, one hash call: the same bytes as updating field by field
    return _sha256(b"\x00".join((event_type.encode(), stream.encode(),
                                  utc_iso(occurred_at).encode(), data_json))).hexdigest()


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
    return _sha256(b"".join((prev.encode(), header, data_json))).hexdigest()


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


class PreparedEvent(NamedTuple):
    """An event about to be appended whose payload is already canonical JSON: what a bulk
    writer (the importer) hands the store instead of a :class:`NewEvent`, without the
    data model (its validation, serialisation and hash were done on the way in)."""

    event_id: str
    type: str
    occurred_at: datetime
    occurred_on: date
    recorded_at: datetime
    recorded_by: str
    idempotency_key: str | None
    data_json: bytes
    content_hash: str
    schema_version: int


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

    if TYPE_CHECKING:
        @property
        def data(self) -> EventData:
            """The payload as its model, decoded on first use (trusted: ``decode_data``)."""
    else:
        data = _Decoded()

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


_RECORDED_FIELDS = tuple(f.name for f in fields(RecordedEvent))
_new = object.__new__
_set = object.__setattr__


def recorded_event(values: Sequence[Any]) -> RecordedEvent:
    """A :class:`RecordedEvent` from its field values in order (a stored row, values
    already converted), without the frozen dataclass's per-field ``__setattr__`` calls:
    a log read builds one per row."""
    event = _new(RecordedEvent)
    _set(event, "__dict__", dict(zip(_RECORDED_FIELDS, values, strict=True)))
    return event
