"""Replies to the alert number, and the short codes that make them possible. Pure.

Every alert gets an acknowledgement code (:func:`new_code`): four characters from an
alphabet without look-alikes (no 0/O, 1/I/L, U/V), unique among open alerts. Its SMS
says ``Reply OK 4F7K``; :func:`parse_reply` reads a reply's body, tolerant of case and
spaces (``ok 4f7k``, ``OK4F7K``, `` Ok  4F7K. ``), and recognises Twilio's opt-out and
opt-in words, which Twilio itself acts on (it sends no more SMS after STOP until START).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal

#: 29 characters: digits and capitals without 0/O, 1/I/L, U/V (29**4 = 707,281 codes)
ALPHABET = "23456789ABCDEFGHJKMNPQRSTWXYZ"
CODE_LENGTH = 4
#: Twilio's default opt-out and opt-in keywords (a message that is exactly one of them)
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})
_ACK_RE = re.compile(r"OK\s*[-:#]?\s*([A-Z0-9]{4})")
_WORD_RE = re.compile(r"[A-Z]+")


def new_code(taken: Collection[str], *, choice: Callable[[str], str] = secrets.choice,
             attempts: int = 50) -> str:
    """A code not in ``taken`` (the open alerts' codes)."""
    for _ in range(attempts):
        code = "".join(choice(ALPHABET) for _ in range(CODE_LENGTH))
        if code not in taken:
            return code
    raise RuntimeError("no free acknowledgement code after many attempts")


@dataclass(frozen=True, slots=True)
class Reply:
    """What a reply asks: ``ack`` (with ``code``), ``opt_out`` / ``opt_in`` (with the
    ``word``), or ``other`` (ignored)."""

    action: Literal["ack", "opt_out", "opt_in", "other"]
    code: str | None = None
    word: str | None = None


def parse_reply(body: str) -> Reply:
    text = " ".join(body.upper().split()).strip(" .!")
    match = _ACK_RE.fullmatch(text)
    if match:
        return Reply("ack", code=match.group(1))
    if _WORD_RE.fullmatch(text):
        if text in OPT_OUT_WORDS:
            return Reply("opt_out", word=text)
        if text in OPT_IN_WORDS:
            return Reply("opt_in", word=text)
    return Reply("other")
