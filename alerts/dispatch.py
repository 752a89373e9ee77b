"""Getting alerts to the right staff: routing by roster, claiming due deliveries, sending
them through the channels and recording every outcome (as outbox rows and events).

- Permanent failures (Twilio 21211/21610/21614, SMTP 550, …) are dead-lettered at once,
  and the same person is tried on their other channel (when this worker has it) before
  the alert escalates.
- Refused credentials (Twilio 20003 / HTTP 401, SMTP 535) mark the channel *down* for this
  worker: the delivery goes back to ``pending`` (its attempt not counted), no more of that
  channel's deliveries are claimed, a configuration error is logged once per cycle and the
  heartbeat shows it (``cno-tracker worker status``). Fix the credentials and restart the
  worker: the pending deliveries then go out.
- Transient ones (429, 5xx, timeouts, SMTP 4xx) are retried after an exponential backoff
  with jitter (:class:`RetryPolicy`), up to ``max_attempts``, then dead-lettered.
- An unknown outcome (the provider may have the message) is marked ``unknown`` and not
  retried; it shows in ``cno-tracker alerts list``. A send in flight when its worker dies
  is repeated by the next worker (at most that one message twice).
- Digest deliveries are sent as ONE message per recipient (and channel) listing all their
  due digest deliveries (:func:`alerts.messages.render_digest`).

Log lines are ``key=value``; they carry alert ids, staff ids, channels, provider ids and
the pseudonymous patient reference at most — never an address, a phone number or a body.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from alerts.channels.base import Channel, DeliveryReceipt, Message, Recipient
from alerts.errors import (
    ChannelUnavailableError,
    DeliveryError,
    PermanentDeliveryError,
    UnknownOutcomeError,
)
from alerts.links import LinkSigner
from alerts.messages import render, render_digest, render_escalation
from alerts.optouts import sms_off
from alerts.outbox import DIGEST, IMMEDIATE, PENDING, SENT, UNKNOWN, DeliveryRow, Outbox
from alerts.roster import Roster
from alerts.rules import EscalationPolicy, EscalationTrigger, backoff_seconds
from tracker.clock import Clock
from tracker.protocol import Protocol

log = logging.getLogger("alerts.dispatch")
SMS, EMAIL = "sms", "email"


def opted_out() -> PermanentDeliveryError:
    """The failure recorded for an SMS to someone who replied STOP (their other channel
    is tried, as for any permanent failure)."""
    return PermanentDeliveryError("the recipient replied STOP: SMS to them are off",
                                  code=21610, channel=SMS)

def logfmt(event: str, **fields: object) -> str:
    """``event=<event> key=value …`` (values with spaces or quotes are quoted)."""
    parts = [f"event={event}"]
    for key, value in fields.items():
        if value is None:
            continue
        text = str(value)
        if not text or any(c in text for c in ' "=\n'):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 30.0
    cap_seconds: float = 3600.0
    max_attempts: int = 8
    jitter: float = 0.2

    def retry_at(self, attempt: int, now: datetime, rand: float) -> datetime | None:
        """When attempt ``attempt + 1`` may run, or None when ``attempt`` was the last."""
        if attempt >= self.max_attempts:
            return None
        delay = backoff_seconds(attempt, base=self.base_seconds, cap=self.cap_seconds,
                                jitter=self.jitter, rand=rand)
        return now + timedelta(seconds=delay)


@dataclass
class DispatchReport:
    sent: int = 0
    retrying: int = 0
    dead: int = 0
    unknown: int = 0
    released: int = 0
    digests: int = 0
    outcomes: list[tuple[str, str]] = field(default_factory=list)  # (delivery_id, status)

    def add(self, other: DispatchReport) -> None:
        for name in ("sent", "retrying", "dead", "unknown", "released", "digests"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.outcomes.extend(other.outcomes)


class Dispatcher:
    def __init__(self, outbox: Outbox, channels: Mapping[str, Channel], roster: Roster,
                 clock: Clock, protocol: Protocol, *, worker_id: str, batch_size: int = 100,
                 lease: timedelta = timedelta(seconds=120), retry: RetryPolicy | None = None,
                 rand: Callable[[], float] = random.random,
                 stop: threading.Event | None = None, wall: Clock | None = None,
                 policy: EscalationPolicy | None = None,
                 links: LinkSigner | None = None, public_url: str | None = None) -> None:
        self.outbox = outbox
        self.channels = channels
        self.roster = roster
        self.clock = clock
        self.protocol = protocol
        self.worker_id = worker_id
        self.by = f"alert-worker:{worker_id}"[:128]
        self.batch_size = batch_size
        self.lease = lease
        self.retry = retry or RetryPolicy()
        self.rand = rand
        self.stop = stop or threading.Event()
        self.policy = policy or EscalationPolicy.of(protocol.escalation_minutes)
        #: the wall clock heartbeats are judged by (None: leases only, no heartbeats)
        self.wall = wall
        #: channels whose credentials the provider refused: channel → reason
        self.down: dict[str, str] = {}
        #: signs the one-time acknowledgement links put in e-mails (None: no link)
        self.links = links
        #: SMS carry ``<public url>/a/<first 8 characters of the alert id>`` (None: no link)
        self.public_url = public_url.rstrip("/") if public_url else None

    # ----------------------------------------------------------------- public
    def dispatch(self, *, max_batches: int = 50) -> DispatchReport:
        """Send every due immediate delivery, then every due digest."""
        self.log_channels_down()
        report = self.dispatch_immediate(max_batches=max_batches)
        if not self.stop.is_set():
            report.add(self.dispatch_digest())
        return report

    def _wall_now(self) -> datetime | None:
        return self.wall.now() if self.wall is not None else None

    def log_channels_down(self) -> None:
        """The configuration error of each down channel, once per cycle."""
        for channel, reason in sorted(self.down.items()):
            log.error(logfmt("config.channel_down", channel=channel, reason=reason,
                             action="fix the credentials and restart the worker",
                             worker=self.worker_id))

    def dispatch_immediate(self, *, max_batches: int = 50) -> DispatchReport:
        report = DispatchReport()
        for _ in range(max_batches):
            if self.stop.is_set():
                break
            batch = self.outbox.claim(owner=self.worker_id, now=self.clock.now(),
                                      mode=IMMEDIATE, limit=self.batch_size, lease=self.lease,
                                      skip_channels=self.down, heartbeats_at=self._wall_now())
            if not batch:
                break
            with self.outbox.engine.connect() as conn:
                alerts = self.outbox.get_alerts(conn, (d.alert_id for d in batch))
                off = sms_off(conn)
            for i, delivery in enumerate(batch):
                if self._must_yield(delivery):
                    report.released += self.outbox.release(
                        self.worker_id, now=self.clock.now(),
                        delivery_ids=[d.delivery_id for d in batch[i:]])
                    break
                if delivery.channel in self.down:  # went down earlier in this batch
                    report.released += self.outbox.release(
                        self.worker_id, now=self.clock.now(),
                        delivery_ids=[delivery.delivery_id])
                    continue
                alert = alerts[delivery.alert_id]
                if delivery.channel == SMS and delivery.recipient in off:
                    self._failed([delivery], opted_out(), report, alert.patient)
                    continue
                link = (self.links.url(alert.alert_id, delivery.recipient, self.clock.now())
                        if self.links is not None and delivery.channel == EMAIL else
                        f"{self.public_url}/a/{str(alert.alert_id)[:8]}"
                        if self.public_url is not None and delivery.channel == SMS else None)
                # the reply code only where a reply can come from (SMS, and e-mail to staff
                # who also have the SMS number); the console and file channels show none
                code = delivery.channel in (SMS, EMAIL)
                try:
                    message = (render(alert, link=link, reply_code=code) if delivery.level == 0
                               else render_escalation(alert, level=delivery.level, link=link,
                                                      reply_code=code))
                except ValueError as exc:
                    self._failed([delivery], PermanentDeliveryError(
                        f"cannot render the message ({exc})"), report, alert.patient,
                        other_channel=False)
                    continue
                self._deliver([delivery], message, report, alert.patient)
            if len(batch) < self.batch_size:
                break
        return report

    def dispatch_digest(self) -> DispatchReport:
        """One digest per (recipient, channel) over all their due digest deliveries."""
        report = DispatchReport()
        batch = self.outbox.claim(owner=self.worker_id, now=self.clock.now(), mode=DIGEST,
                                  limit=10_000, lease=self.lease, skip_channels=self.down,
                                  heartbeats_at=self._wall_now())
        if not batch:
            return report
        with self.outbox.engine.connect() as conn:
            alerts = self.outbox.get_alerts(conn, (d.alert_id for d in batch))
            off = sms_off(conn)
        groups: dict[tuple[str, str], list[DeliveryRow]] = {}
        for d in batch:
            groups.setdefault((d.recipient, d.channel), []).append(d)
        ordered = [groups[k] for k in sorted(groups)]
        for i, rows in enumerate(ordered):
            if rows[0].channel in self.down:
                report.released += self.outbox.release(
                    self.worker_id, now=self.clock.now(),
                    delivery_ids=[d.delivery_id for d in rows])
                continue
            if self.stop.is_set():
                report.released += self.outbox.release(
                    self.worker_id, now=self.clock.now(),
                    delivery_ids=[d.delivery_id for g in ordered[i:] for d in g])
                break
            if rows[0].channel == SMS and rows[0].recipient in off:
                self._failed(rows, opted_out(), report, None)
                continue
            day = self.clock.now().astimezone(self.protocol.zone).date()
            message = render_digest([alerts[d.alert_id] for d in rows], on=day)
            report.digests += 1
            self._deliver(rows, message, report, None)
        return report

    # ----------------------------------------------------------------- sending
    def _must_yield(self, delivery: DeliveryRow) -> bool:
        """Stop before a send when asked to, or when the lease is nearly over (another
        worker would take the row again: release it instead)."""
        if self.stop.is_set():
            return True
        assert delivery.lease_until is not None
        return self.clock.now() > delivery.lease_until - self.lease / 4

    def _recipient(self, staff_id: str) -> Recipient:
        try:
            return self.roster.member(staff_id).recipient()
        except KeyError:
            raise PermanentDeliveryError(
                f"staff {staff_id!r} is no longer on the roster") from None

    def _deliver(self, rows: Sequence[DeliveryRow], message: Message, report: DispatchReport,
                 patient: str | None) -> None:
        first = rows[0]
        try:
            channel = self.channels.get(first.channel)
            if channel is None:
                raise PermanentDeliveryError(
                    f"channel {first.channel!r} is not configured on this worker",
                    channel=first.channel)
            recipient = self._recipient(first.recipient)
        except DeliveryError as exc:
            self._failed(rows, exc, report, patient, other_channel=channel is None)
            return
        try:
            receipt: DeliveryReceipt = channel.send(message, recipient)
        except ChannelUnavailableError as exc:
            self._channel_down(first.channel, exc, rows, report)
            return
        except DeliveryError as exc:
            self._failed(rows, exc, report, patient)
            return
        except Exception as exc:  # a bug or an unexpected library error: maybe sent
            self._failed(rows, UnknownOutcomeError(
                f"unexpected error while sending ({type(exc).__name__})"), report, patient)
            return
        now = self.clock.now()
        with self.outbox.transaction() as writer:
            for d in sorted(rows, key=lambda d: d.alert_id):
                self.outbox.record_sent(
                    writer, d, provider_id=receipt.provider_id, channel=receipt.channel,
                    now=now, by=self.by,
                    escalate_at=self.policy.escalate_at(EscalationTrigger.SENT, now))
        for d in rows:
            report.sent += 1
            report.outcomes.append((d.delivery_id, SENT))
            log.info(logfmt("alert.sent", alert=d.alert_id, patient=patient,
                            recipient=d.recipient, channel=receipt.channel, level=d.level,
                            mode=d.mode, attempt=d.attempts, provider_id=receipt.provider_id,
                            worker=self.worker_id))

    def _channel_down(self, channel: str, exc: ChannelUnavailableError,
                      rows: Sequence[DeliveryRow], report: DispatchReport) -> None:
        """Credentials refused: give the rows back and claim nothing more of ``channel``."""
        first = channel not in self.down
        self.down[channel] = exc.reason
        report.released += self.outbox.release(
            self.worker_id, now=self.clock.now(), delivery_ids=[d.delivery_id for d in rows])
        if first:
            log.error(logfmt("config.channel_down", channel=channel, code=exc.code,
                             reason=exc.reason, pending=len(rows),
                             action="fix the credentials and restart the worker",
                             worker=self.worker_id))

    def _other_channel(self, delivery: DeliveryRow) -> str | None:
        """The recipient's next channel this worker can use, after ``delivery``'s."""
        try:
            member = self.roster.member(delivery.recipient)
        except KeyError:
            return None
        return next((c for c in member.channels() if c != delivery.channel
                     and c in self.channels and c not in self.down), None)

    def _failed(self, rows: Sequence[DeliveryRow], exc: DeliveryError,
                report: DispatchReport, patient: str | None, *,
                other_channel: bool = True) -> None:
        now = self.clock.now()
        unknown = isinstance(exc, UnknownOutcomeError)
        permanent = not unknown and not exc.retryable
        reason = exc.reason + (f" (code {exc.code})" if exc.code is not None
                               and str(exc.code) not in exc.reason else "")
        escalate_at = self.policy.escalate_at(
            EscalationTrigger.UNKNOWN if unknown else EscalationTrigger.NOBODY_REACHED, now)
        with self.outbox.transaction() as writer:
            statuses = {}
            for d in sorted(rows, key=lambda d: d.alert_id):
                fallback = self._other_channel(d) if permanent and other_channel else None
                if fallback is not None and self.outbox.add_fallback(
                        writer.conn, d, fallback, now=now):
                    log.warning(logfmt("alert.other_channel", alert=d.alert_id,
                                       recipient=d.recipient, failed=d.channel,
                                       channel=fallback, worker=self.worker_id))
                retry_at = (None if permanent or unknown
                            else self.retry.retry_at(d.attempts, now, self.rand()))
                statuses[d.delivery_id] = self.outbox.record_failure(
                    writer, d, error=reason, permanent=permanent, unknown=unknown,
                    retry_at=retry_at, now=now, by=self.by, escalate_at=escalate_at)
        for d in rows:
            status = statuses[d.delivery_id]
            report.outcomes.append((d.delivery_id, status))
            if status == PENDING:
                report.retrying += 1
            elif status == UNKNOWN:
                report.unknown += 1
            else:
                report.dead += 1
            level = logging.WARNING if status == PENDING else logging.ERROR
            log.log(level, logfmt("alert.failed", alert=d.alert_id, patient=patient,
                                  recipient=d.recipient, channel=d.channel, attempt=d.attempts,
                                  status=status, code=exc.code, reason=exc.reason,
                                  worker=self.worker_id))
