"""Upcasters: bring a stored payload of an older ``schema_version`` up to date.

History is never rewritten: the stored row keeps the old payload (and its hash); every
read runs the chain ``v1 -> v2 -> …`` before validation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from events.errors import UpcastError
from events.vocabulary import EVENT_TYPES

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]

_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    def register(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(event_type, from_version)] = fn
        return fn
    return register


def current_version(event_type: str) -> int:
    return EVENT_TYPES[event_type].schema_version


def upcast(event_type: str, schema_version: int, payload: Payload) -> Payload:
    target = current_version(event_type)
    version = schema_version
    while version < target:
        step = _UPCASTERS.get((event_type, version))
        if step is None:
            raise UpcastError(f"no upcaster for {event_type} v{version} -> v{version + 1}")
        payload = step(payload)
        version += 1
    if version > target:
        raise UpcastError(
            f"{event_type} v{schema_version} is newer than this software (v{target}): upgrade")
    return payload


@upcaster("VisitRecorded", 1)
def _visit_v1_lesions_as_objects(payload: Payload) -> Payload:
    """v1 wrote ``active_lesions`` as ``"site:side"`` strings (side optional)."""
    lesions = []
    for item in payload.get("active_lesions") or []:
        if isinstance(item, str):
            site, _, side = item.partition(":")
            lesions.append({"site": site, "side": side or None})
        else:
            lesions.append(item)
    return {**payload, "active_lesions": lesions}
