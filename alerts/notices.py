"""Messages about the alerting itself, sent straight through a channel (not the outbox):
the roster owner told of an SMS opt-out or opt-in, and ``alerts test-send``.

Neither carries anything clinical: a staff id, the channel and what changed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from alerts.channels.base import Channel, DeliveryReceipt, Message
from alerts.dispatch import logfmt
from alerts.errors import DeliveryError, PermanentDeliveryError
from alerts.messages import render_notice
from alerts.optouts import append_staff, mark_told, sms_off, untold
from alerts.roster import Roster, StaffMember
from events.store import EventStore
from events.vocabulary import RosterOwnerTold

log = logging.getLogger("alerts.notices")
TEST_TEXT = "Test message from the alert system: no action is needed."


def channel_for(member: StaffMember, channels: Mapping[str, Channel], *,
                wanted: str | None = None, off: Collection[str] = ()) -> str:
    """The channel to reach ``member`` by: ``wanted`` or their first usable channel
    (never SMS to someone who replied STOP); :class:`PermanentDeliveryError` if none."""
    usable = [c for c in member.channels() if c in channels
              and not (c == "sms" and member.id in off)]
    if wanted is not None:
        if wanted not in member.channels():
            raise PermanentDeliveryError(f"staff {member.id!r} has no {wanted} address")
        if wanted not in channels:
            raise PermanentDeliveryError(f"channel {wanted!r} is not configured here")
        if wanted == "sms" and member.id in off:
            raise PermanentDeliveryError(f"staff {member.id!r} replied STOP: SMS are off")
        return wanted
    if not usable:
        raise PermanentDeliveryError(f"no configured channel reaches staff {member.id!r}")
    return usable[0]


def test_message(on: datetime, zone: ZoneInfo) -> Message:
    return render_notice(TEST_TEXT, notice_id=f"test-{uuid.uuid4().hex[:12]}",
                         on=on.astimezone(zone).date())


def opt_notice(staff_id: str, opted_out: bool, on: datetime, zone: ZoneInfo) -> Message:
    text = (f"Roster notice: {staff_id} replied STOP. SMS alerts to them are off; their "
            "other channel is used." if opted_out else
            f"Roster notice: {staff_id} replied START. SMS alerts reach them again.")
    return render_notice(text, notice_id=f"notice-{uuid.uuid4().hex[:12]}",
                         on=on.astimezone(zone).date())


def tell_owner(store: EventStore, roster: Roster, channels: Mapping[str, Channel], *,
               now: datetime, zone: ZoneInfo, by: str, down: Collection[str] = ()) -> int:
    """Tell the roster owner of each opt-out change not told yet; returns how many were
    told. A failed send is logged and tried again next cycle."""
    with store.engine.connect() as conn:
        pending = untold(conn)
        off = sms_off(conn) if pending else frozenset()
    if not pending:
        return 0
    if roster.owner is None:
        for change in pending:
            log.warning(logfmt("roster.owner_missing", staff=change.staff_id,
                               opted_out=change.opted_out,
                               action="set owner = <staff id> in the roster"))
        with store.recorder.write() as conn:
            for change in pending:
                mark_told(conn, change.staff_id, change.changed_at, now)
        return 0
    owner = roster.member(roster.owner)
    usable = {k: v for k, v in channels.items() if k not in down}
    told = 0
    for change in pending:
        message = opt_notice(change.staff_id, change.opted_out, now, zone)
        try:
            name = channel_for(owner, usable, off=off)
            receipt: DeliveryReceipt = usable[name].send(message, owner.recipient())
        except DeliveryError as exc:
            log.warning(logfmt("roster.owner_not_told", staff=change.staff_id,
                               owner=owner.id, reason=exc.reason, retry="next cycle"))
            continue
        with store.transaction() as writer:
            mark_told(writer.conn, change.staff_id, change.changed_at, now)
            append_staff(store, writer, change.staff_id, [RosterOwnerTold(
                staff_id=change.staff_id, owner=owner.id, opted_out=change.opted_out,
                channel=receipt.channel,
                provider_id=(receipt.provider_id or None) and receipt.provider_id[:200])],
                now=now, by=by, zone=zone)
        told += 1
        log.info(logfmt("roster.owner_told", staff=change.staff_id, owner=owner.id,
                        channel=receipt.channel, opted_out=change.opted_out))
    return told
