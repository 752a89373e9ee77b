"""Pure alert rules (clinical-rules §6): from the due-item schedule and ``now`` to the
alerts to raise and the alerts to cancel. No clock, no database, no I/O.

- An item *fires* at local midnight (centre time zone) of its ``fires_on`` date, converted
  to UTC (:func:`fire_instant`): on that instant and not a minute before.
- Its alert's dedupe key is the due item's stable key, so re-evaluating raises nothing
  twice (the database enforces it too: ``alerts.dedupe_key`` is UNIQUE).
- An item that fired more than ``alert_lookback_days`` before ``now`` is history: no
  alert is raised for it (a worker started on an old database does not page everyone).
- An open alert whose key has vanished from the schedule (lab arrived, entry voided) is
  cancelled: its pending deliveries stop.
- Urgent alerts go out at once, day or night; the others wait for the next morning digest
  (:func:`next_digest_instant`).

**[reading]** "Within N days" for the lookback: an item whose fire instant is *exactly*
``alert_lookback_days`` before ``now`` is still raised; one a microsecond older is not.
**[reading]** A cancelled alert is not raised again if its key reappears (e.g. a void is
itself voided): the key names the same causes, and dedupe keys are never reused.
**[reading]** An alert already sent whose item then vanishes is also closed (its retries
and escalation stop): the reason is recorded in the AlertCancelled event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from alerts.vocabulary import AlertStatus
from tracker.alertkinds import Severity
from tracker.due import DueItem
from tracker.protocol import Protocol

URGENT = Severity.URGENT
EVENT_KEY_LIMIT = 200  # the longest dedupe key an AlertRaised event may carry


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """An alert to raise now."""

    dedupe_key: str
    group: str
    patient: str
    kind: str
    severity: str
    item: str
    due_on: date
    fires_at: datetime
    cause_event_ids: tuple[str, ...]

    @property
    def urgent(self) -> bool:
        return self.severity == URGENT


@dataclass(frozen=True, slots=True)
class KnownAlert:
    """What the rules need to know about an alert already in the outbox."""

    alert_id: str
    dedupe_key: str
    status: str  # open | acknowledged | cancelled
    patient: str = ""


@dataclass(frozen=True, slots=True)
class Cancellation:
    alert_id: str
    dedupe_key: str
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    raise_: list[AlertSpec] = field(default_factory=list)
    cancel: list[Cancellation] = field(default_factory=list)
    too_old: int = 0  # fired items skipped because they are older than the lookback


def fire_instant(fires_on: date, zone: ZoneInfo) -> datetime:
    """Local midnight of ``fires_on`` in ``zone``, as a UTC instant."""
    return datetime.combine(fires_on, time(0), tzinfo=zone).astimezone(UTC)


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def digest_instant(day: date, zone: ZoneInfo, hour: int) -> datetime:
    """The digest of local date ``day``: ``hour``:00 local time, in UTC (DST-aware: in
    Europe/Madrid 08:00 is 07:00 UTC in winter and 06:00 UTC in summer)."""
    return datetime.combine(day, time(hour), tzinfo=zone).astimezone(UTC)


def next_digest_instant(now: datetime, zone: ZoneInfo, hour: int) -> datetime:
    """The first digest instant at or after ``now``."""
    today = local_date(now, zone)
    candidate = digest_instant(today, zone, hour)
    if candidate >= now:
        return candidate
    return digest_instant(today + timedelta(days=1), zone, hour)


def send_not_before(spec: AlertSpec, now: datetime, zone: ZoneInfo, hour: int) -> datetime:
    """When the first delivery of ``spec`` may go: now when urgent, else the next digest."""
    return now if spec.urgent else next_digest_instant(now, zone, hour)


class EscalationTrigger(StrEnum):
    """What happened to an open urgent alert that (re)starts its escalation clock."""

    SENT = "sent"  # its first delivery went out
    UNKNOWN = "unknown"  # a delivery's outcome is unknown: maybe told, count it as sent
    NOBODY_REACHED = "nobody_reached"  # every delivery of its level failed for good
    ESCALATED = "escalated"  # it has just moved one role up the chain


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """The one rule for *when* an urgent alert escalates (clinical-rules §6: "not
    acknowledged within 2 hours escalates to the next role *(configurable)*").

    **[reading]** The protocol's ``escalation_minutes`` (120) is the clinical ceiling; a
    roster's ``[escalation] delay_minutes`` is the centre's own, shorter or equal, delay
    for its staff. :meth:`of` takes the roster's when given and refuses one longer than
    the protocol's (an escalation later than the protocol allows is a clinical change,
    made in the protocol file, not in the staff list)."""

    delay: timedelta

    @classmethod
    def of(cls, protocol_minutes: int, roster_minutes: int | None = None) -> EscalationPolicy:
        if protocol_minutes < 1:
            raise ValueError("the protocol's escalation_minutes must be at least 1")
        if roster_minutes is None:
            return cls(timedelta(minutes=protocol_minutes))
        if not 1 <= roster_minutes <= protocol_minutes:
            raise ValueError(
                f"the roster's [escalation] delay_minutes = {roster_minutes} must be between "
                f"1 and the protocol's escalation_minutes ({protocol_minutes})")
        return cls(timedelta(minutes=roster_minutes))

    def escalate_at(self, trigger: EscalationTrigger, now: datetime, *,
                    further: bool = True) -> datetime | None:
        """The instant the alert escalates (again) from, unless acknowledged before it;
        None when ``further`` is False (the chain has no next role)."""
        if not further:
            return None
        if trigger is EscalationTrigger.NOBODY_REACHED:
            return now
        return now + self.delay


def backoff_seconds(attempt: int, *, base: float, cap: float, jitter: float,
                    rand: float) -> float:
    """The delay before retry number ``attempt`` (1 = after the first failure):
    ``min(cap, base·2^(attempt-1))`` scaled by ``1 ± jitter`` (``rand`` in [0, 1))."""
    raw = min(cap, base * 2 ** max(0, attempt - 1))
    return max(0.0, raw * (1 + jitter * (2 * rand - 1)))


def event_dedupe_key(key: str) -> str:
    """The dedupe key as carried by an AlertRaised event (at most 200 characters: a
    longer key keeps its start and gains a hash of the whole)."""
    if len(key) <= EVENT_KEY_LIMIT:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{key[:EVENT_KEY_LIMIT - 34]}#{digest}"


def plan(due: Iterable[DueItem], present_keys: Collection[str],
         known: Mapping[str, KnownAlert], *, now: datetime, protocol: Protocol,
         evaluated: Collection[str] | None = None) -> Plan:
    """What to raise and what to cancel at ``now``.

    :param due: due rows that may have fired (e.g. ``fires_on <= local today``).
    :param present_keys: the keys of every due row that still exists (for cancellation).
    :param known: the alerts already raised, by dedupe key.
    :param evaluated: the patients the read model holds a status for; an open alert of a
        patient not in it is never cancelled (the read model is being rebuilt, or the
        patient not yet folded: absence of its rows proves nothing). None: all patients.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    zone = protocol.zone
    horizon = now - timedelta(days=protocol.alert_lookback_days)
    out: list[AlertSpec] = []
    too_old = 0
    seen: set[str] = set()
    for row in due:
        if row.key in known or row.key in seen:
            continue
        fires_at = fire_instant(row.fires_on, zone)
        if fires_at > now:
            continue
        if fires_at < horizon:
            too_old += 1
            continue
        seen.add(row.key)
        out.append(AlertSpec(
            dedupe_key=row.key, group=row.group, patient=row.patient, kind=row.kind,
            severity=row.severity, item=row.item, due_on=row.item_due_on, fires_at=fires_at,
            cause_event_ids=row.cause_event_ids))
    cancel = [Cancellation(a.alert_id, a.dedupe_key, "item no longer due")
              for a in sorted(known.values(), key=lambda a: a.dedupe_key)
              if a.status == AlertStatus.OPEN and a.dedupe_key not in present_keys
              and (evaluated is None or a.patient in evaluated)]
    out.sort(key=lambda s: (s.fires_at, s.severity != URGENT, s.dedupe_key))
    return Plan(raise_=out, cancel=cancel, too_old=too_old)
