"""Twilio's webhooks: ``POST /twilio/status``, the message status callback every SMS is
sent with (``CNO_TRACKER_PUBLIC_URL/twilio/status``).

Public (Twilio has no session) but signed: :func:`web.twilio_signature.twilio_form` refuses
anything Twilio did not sign (403, nothing recorded). A signed callback is recorded by
:class:`alerts.receipts.ReceiptBook` — one ``AlertDelivered`` / ``AlertUndelivered`` per
delivery however often Twilio retries, out-of-order statuses never regress it, an
undelivered urgent SMS goes to the person's other channel or escalates now — and answered
204; a callback for a message SID we never sent is answered 204 too and ignored (Twilio
stops retrying). The answer never says more than that."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from starlette.responses import Response

from alerts.outbox import Outbox
from alerts.receipts import Receipt, ReceiptBook, parse_error_code
from alerts.rules import EscalationPolicy
from web.deps import context
from web.receipt_batches import ReceiptBatcher
from web.twilio_signature import twilio_form

log = logging.getLogger("cno_tracker.web.twilio")
router = APIRouter()
STATUS_PATH = "/twilio/status"
RECORDED_BY = "twilio:status-callback"
#: the longest MessageSid we look up (Twilio's are 34 characters)
SID_MAX = 64


def receipt_batcher(request: Request) -> ReceiptBatcher:
    """One :class:`ReceiptBatcher` per application, made on first use."""
    batcher: ReceiptBatcher | None = getattr(request.app.state, "receipts", None)
    if batcher is None:
        ctx = context(request)
        protocol = ctx.core.protocol
        policy = EscalationPolicy.of(protocol.escalation_minutes,
                                     ctx.roster.escalation.delay_minutes)
        book = ReceiptBook(Outbox(ctx.core.store, protocol.zone), ctx.roster, policy=policy)
        batcher = ReceiptBatcher(book, ctx.core.clock, by=RECORDED_BY)
        request.app.state.receipts = batcher
    return batcher


@router.post(STATUS_PATH)
async def status_callback(request: Request) -> Response:
    # the signature check is called, not declared with Depends: FastAPI's dependency
    # resolution costs as much as the check at hundreds of callbacks a second
    form = await twilio_form(request)
    sid = (form.get("MessageSid") or form.get("SmsSid") or "").strip()
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip()
    if not sid or len(sid) > SID_MAX or not status:
        log.info("event=twilio.status_ignored reason=\"no MessageSid or MessageStatus\"")
        return Response(status_code=204)
    receipt = Receipt(sid, status, parse_error_code(form.get("ErrorCode")))
    outcome = await asyncio.wrap_future(receipt_batcher(request).submit(receipt))
    log.debug("event=twilio.status sid=%s status=%s result=%s", sid, status[:16],
              outcome.result.value)
    return Response(status_code=204)
