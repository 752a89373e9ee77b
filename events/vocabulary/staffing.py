"""What happened to a staff member's alert channels: SMS opt-out words (STOP / START)
replied to the alert number, the roster owner being told, and test messages.

Written by the system, never imported from outside; each staff member has the stream
``staff:<staff id>`` (never a patient stream). No phone number, address or message body
is recorded: the staff id, the channel, the word and the provider's message id."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from events.vocabulary.common import EventData

StaffId = Annotated[str, Field(min_length=1, max_length=64)]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]


class _StaffEvent(EventData):
    importable = False
    staff_id: StaffId


class SmsOptedOut(_StaffEvent):
    """The person replied an opt-out word: the provider sends them no more SMS."""

    word: Annotated[str, Field(min_length=1, max_length=16)]
    provider_id: ShortText | None = None  # the inbound message's SID


class SmsOptedIn(_StaffEvent):
    """The person replied an opt-in word (START, YES, UNSTOP): SMS reach them again."""

    word: Annotated[str, Field(min_length=1, max_length=16)]
    provider_id: ShortText | None = None


class RosterOwnerTold(_StaffEvent):
    """The roster owner was sent a notice about ``staff_id``'s SMS opt-out or opt-in."""

    owner: StaffId
    opted_out: bool
    channel: ShortText
    provider_id: ShortText | None = None


class TestMessageSent(_StaffEvent):
    """``cno-tracker alerts test-send``: a neutral test message and its outcome."""

    channel: ShortText
    outcome: Literal["sent", "failed", "unknown"]
    provider_id: ShortText | None = None
    error: Annotated[str, Field(max_length=500)] | None = None
