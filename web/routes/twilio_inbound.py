"""``POST /twilio/inbound``: SMS replies to the alert number (Twilio's incoming-message
webhook). No login; instead every request must carry a valid ``X-Twilio-Signature``
(checked by :mod:`web.twilio_signature`, shared with ``/twilio/status``): unsigned or
wrongly signed → 403, nothing recorded.

- ``OK 4F7K`` (case and spaces tolerated) from a roster member's phone acknowledges the
  open alert with that code that was sent to that member, as that member, recorded with
  the reply's ``MessageSid``; two such alerts (one code drawn twice at one instant) are
  both left open, and a reply already recorded is not acted on again.
- Twilio's opt-out words (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT) and opt-in words
  (START, YES, UNSTOP) are recorded (events in ``staff:<id>``); routing then stops (or
  resumes) SMS to that person and the worker tells the roster owner.
- Anything else, and any message from a number not on the roster, is ignored.

The answer is always an empty TwiML document (no reply text: an unknown sender learns
nothing, and a member is not charged a reply). Retried webhooks change nothing twice.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from alerts.dispatch import logfmt
from alerts.optouts import record_opt
from alerts.outbox import Outbox, reply_key
from alerts.replies import parse_reply
from alerts.roster import StaffMember
from web.deps import WebContext, context
from web.twilio_signature import twilio_form

router = APIRouter()
log = logging.getLogger("cno_tracker.web.twilio")
PATH = "/twilio/inbound"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
BY = "sms-reply"


def _twiml() -> Response:
    return Response(EMPTY_TWIML, media_type="text/xml")


def member_by_phone(ctx: WebContext, phone: str) -> StaffMember | None:
    return next((m for m in ctx.roster.staff if m.phone is not None and m.phone == phone),
                None)


def handle(ctx: WebContext, params: dict[str, str]) -> str:
    """Act on one signed reply; returns what happened (for the log)."""
    member = member_by_phone(ctx, params.get("From", ""))
    if member is None:
        return "unknown_sender"
    reply = parse_reply(params.get("Body", ""))
    sid = params.get("MessageSid") or params.get("SmsSid") or None
    sid = sid[:64] if sid else None
    core = ctx.core
    now = core.clock.now()
    outbox = Outbox(core.store, core.protocol.zone)
    if reply.action == "ack":
        assert reply.code is not None
        if sid is not None and core.store.find_idempotency_keys([reply_key(sid)]):
            # Twilio signs no timestamp: a captured reply sent again must not acknowledge
            # a later alert that happens to have been given the same code
            log.info(logfmt("sms.reply_replayed", staff=member.id, sid=sid))
            return "replayed"
        with core.engine.connect() as conn:
            found = outbox.open_by_code(conn, reply.code, sent_to=member.id)
        if not found:
            log.info(logfmt("sms.reply_no_alert", staff=member.id, sid=sid))
            return "no_open_alert"
        if len(found) > 1:
            # two open alerts sent to this person with one code (raised at the same instant
            # by two workers): acknowledging either could be the wrong one, so neither is
            log.warning(logfmt("sms.reply_ambiguous", staff=member.id, sid=sid,
                               alerts=len(found)))
            return "ambiguous"
        for alert in found:
            with outbox.transaction() as writer:
                outbox.acknowledge(writer, alert.alert_id, by=member.id, note=None, now=now,
                                   via="sms", provider_id=sid)
            log.info(logfmt("alert.acknowledged", alert=alert.alert_id, by=member.id,
                            via="sms", sid=sid))
        return "acknowledged"
    if reply.action in ("opt_out", "opt_in"):
        assert reply.word is not None
        with core.store.transaction() as writer:
            changed = record_opt(core.store, writer, member.id,
                                 opted_out=reply.action == "opt_out", word=reply.word,
                                 provider_id=sid, now=now, by=BY, zone=core.protocol.zone)
        if changed:
            log.warning(logfmt("sms." + reply.action, staff=member.id, sid=sid))
        return reply.action if changed else "unchanged"
    return "ignored"


@router.post(PATH)
async def inbound(request: Request) -> Response:
    ctx = context(request)
    params = await twilio_form(request)  # 403 unless signed by Twilio (web.twilio_signature)
    outcome = await run_in_threadpool(handle, ctx, params)
    log.info(logfmt("sms.inbound", outcome=outcome))
    return _twiml()
