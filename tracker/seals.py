"""Seals: tamper evidence that holds against whoever owns the database. Pure.

A seal is the state of the whole log at one moment — every stream's head version and
hash, the number of events and the last position — signed with HMAC-SHA256 under a key
the database never sees (``CNO_TRACKER_SEAL_KEY``). A superuser can rewrite the events
*and* recompute their hash chain with the project's own function, and can delete a tail
event or a whole stream; none of that can be made to agree with a seal without the key.

What a seal proves: every event that existed when it was made is still there, unchanged
(the head hash of each stream pins its whole chain). What it cannot prove: anything about
events appended after it — they are covered by the next seal only. And a seal kept in the
same database can be deleted with the rest: keep copies (``seal -o FILE``) where the
database's owner cannot reach them.

Keys: ``CNO_TRACKER_SEAL_KEY=ID:SECRET`` signs (the id is recorded in each seal);
``CNO_TRACKER_SEAL_KEYS=ID:SECRET,ID:SECRET`` are former keys still accepted when
verifying, so a key can be rotated without losing the older seals."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

FORMAT = "cno-tracker-seal/1"
KEY_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SECRET_MIN = 16


class SealFormatError(ValueError):
    """A seal document or a key setting that cannot be read."""


def parse_keys(text: str, variable: str) -> dict[str, bytes]:
    """``ID:SECRET[,ID:SECRET…]`` as {id: secret}; the reason names the entry, never the
    secret."""
    keys: dict[str, bytes] = {}
    for number, entry in enumerate(text.split(","), start=1):
        key_id, sep, secret = entry.strip().partition(":")
        if not sep or not KEY_ID_RE.fullmatch(key_id):
            raise SealFormatError(
                f"{variable} entry {number}: give ID:SECRET, the id of letters, digits, "
                "'.', '_' or '-'")
        if len(secret) < SECRET_MIN:
            raise SealFormatError(f"{variable} key {key_id!r}: the secret is shorter than "
                                  f"{SECRET_MIN} characters")
        if key_id in keys:
            raise SealFormatError(f"{variable}: key id {key_id!r} appears twice")
        keys[key_id] = secret.encode()
    return keys


@dataclass(frozen=True)
class SealKeys:
    """The signing key (may be absent) and every key accepted when verifying."""

    signing_id: str | None
    accepted: Mapping[str, bytes]

    @classmethod
    def from_settings(cls, current: str | None, former: str | None) -> SealKeys:
        accepted: dict[str, bytes] = {}
        signing_id = None
        if former:
            accepted.update(parse_keys(former, "CNO_TRACKER_SEAL_KEYS"))
        if current:
            mine = parse_keys(current, "CNO_TRACKER_SEAL_KEY")
            if len(mine) != 1:
                raise SealFormatError("CNO_TRACKER_SEAL_KEY holds one ID:SECRET "
                                      "(former keys go in CNO_TRACKER_SEAL_KEYS)")
            signing_id = next(iter(mine))
            if signing_id in accepted and accepted[signing_id] != mine[signing_id]:
                raise SealFormatError(f"key id {signing_id!r} has two different secrets")
            accepted.update(mine)
        return cls(signing_id, accepted)


@dataclass(frozen=True)
class LogState:
    """What a seal signs: {stream: (head version, head hash)}, the count, the last position."""

    heads: Mapping[str, tuple[int, str]]
    event_count: int
    last_position: int


@dataclass(frozen=True)
class Seal:
    sealed_at: datetime
    key_id: str
    state: LogState
    mac: str

    def document(self) -> dict[str, Any]:
        return {**_signed_part(self.sealed_at, self.key_id, self.state), "mac": self.mac}

    def to_json(self) -> bytes:
        return orjson.dumps(self.document(), option=orjson.OPT_SORT_KEYS)


def _signed_part(sealed_at: datetime, key_id: str, state: LogState) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "sealed_at": sealed_at.isoformat(),
        "key_id": key_id,
        "event_count": state.event_count,
        "last_position": state.last_position,
        "streams": {s: [v, h] for s, (v, h) in sorted(state.heads.items())},
    }


def _mac(secret: bytes, sealed_at: datetime, key_id: str, state: LogState) -> str:
    body = orjson.dumps(_signed_part(sealed_at, key_id, state), option=orjson.OPT_SORT_KEYS)
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def sign(state: LogState, keys: SealKeys, sealed_at: datetime) -> Seal:
    if keys.signing_id is None:
        raise SealFormatError("no signing key: set CNO_TRACKER_SEAL_KEY=ID:SECRET")
    key_id = keys.signing_id
    return Seal(sealed_at, key_id, state, _mac(keys.accepted[key_id], sealed_at, key_id, state))


def parse_seal(raw: bytes | str) -> Seal:
    """A seal document (as written by ``seal -o``), or :class:`SealFormatError`."""
    try:
        doc = orjson.loads(raw)
        if doc.get("format") != FORMAT:
            raise SealFormatError(f"not a seal: format is not {FORMAT!r}")
        heads = {str(s): (int(v), str(h)) for s, (v, h) in doc["streams"].items()}
        state = LogState(heads, int(doc["event_count"]), int(doc["last_position"]))
        return Seal(datetime.fromisoformat(doc["sealed_at"]), str(doc["key_id"]), state,
                    str(doc["mac"]))
    except SealFormatError:
        raise
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise SealFormatError(f"not a readable seal ({type(exc).__name__}: {exc})") from None


def signature_problem(seal: Seal, keys: SealKeys) -> tuple[bool, str | None]:
    """(checked, problem): whether the signature could be checked, and what is wrong."""
    secret = keys.accepted.get(seal.key_id)
    if secret is None:
        return False, None
    expected = _mac(secret, seal.sealed_at, seal.key_id, seal.state)
    if not hmac.compare_digest(expected, seal.mac):
        return True, "its signature does not match: the seal was forged or altered"
    return True, None


def differences(sealed: LogState, now_heads: Mapping[str, tuple[int, str]],
                now_count: int, position_present: bool) -> list[str]:
    """What the log lost or changed since the seal, one line each.

    ``now_heads`` maps each sealed stream to the version and hash the log holds *now at
    the sealed version* (absent: that event, or the whole stream, is gone). Events
    appended since are not differences: the log only grows."""
    out: list[str] = []
    for stream, (version, digest) in sorted(sealed.heads.items()):
        found = now_heads.get(stream)
        if found is None:
            out.append(f"stream {stream!r}: event v{version} (its head when sealed) is missing")
        elif found[1] != digest:
            out.append(f"stream {stream!r}: v{version} has hash {found[1][:12]}…, the seal "
                       f"says {digest[:12]}…: history was rewritten")
    if now_count < sealed.event_count:
        out.append(f"the log holds {now_count} event(s), fewer than the "
                   f"{sealed.event_count} sealed")
    if not position_present and sealed.event_count:
        out.append(f"the event at the sealed last position {sealed.last_position} is missing")
    return out
