"""Stream kinds: what a stream is about, read from its name.

A stream's name is ``<kind>:<id>`` (``alert:3f2c…``, and whatever kinds other parts of
the application add: ``account:…``, ``access:…``), or a bare patient reference, which
can never contain a colon (the contract's pattern). So the kind is known for every
stream, stored or to come, without a registry and without a column."""

from __future__ import annotations

#: the kind of a stream whose name is a bare patient reference
PATIENT = "patient"
#: the streams the alert outbox writes
ALERT = "alert"

SEPARATOR = ":"


def kind_of(stream: str) -> str:
    """The kind of a stream: the part of its name before the first colon, else patient."""
    kind, sep, _ = stream.partition(SEPARATOR)
    return kind if sep else PATIENT


def stream_name(kind: str, ident: str) -> str:
    """The name of the stream of ``kind`` for ``ident`` (a patient's is the bare id)."""
    if kind == PATIENT:
        return ident
    if not kind or SEPARATOR in kind:
        raise ValueError(f"a stream kind is a non-empty word without {SEPARATOR!r}")
    return f"{kind}{SEPARATOR}{ident}"


def is_patient_stream(stream: str) -> bool:
    return kind_of(stream) == PATIENT
