"""The pure alert rules: fire instants, lookback, dedupe, cancellation, digest instants
(across DST), backoff and routing. No clock, no database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from apscheduler.triggers.cron import CronTrigger

from alerts.dispatch import RetryPolicy
from alerts.outbox import Route
from alerts.roster import parse_roster
from alerts.rules import (
    AlertSpec,
    EscalationPolicy,
    EscalationTrigger,
    KnownAlert,
    backoff_seconds,
    digest_instant,
    event_dedupe_key,
    fire_instant,
    next_digest_instant,
    plan,
    send_not_before,
)
from tracker.due import DueItem
from tracker.protocol import DEFAULT_PROTOCOL

MADRID = DEFAULT_PROTOCOL.zone


def row(key: str = "P1:hypocalcaemia:2025-03-10:e1:now", *, fires_on: date = date(2025, 3, 10),
        severity: str = "urgent", patient: str = "P1") -> DueItem:
    return DueItem(key=key, group=key.rsplit(":", 1)[0], patient=patient, kind="hypocalcaemia",
                  severity=severity, fires_on=fires_on, item_due_on=fires_on,
                  item="hypocalcaemia", cause_event_ids=("e1",))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# ---------------------------------------------------------------- fire instants
def test_fire_instant_is_local_midnight_in_utc_winter_and_summer() -> None:
    assert fire_instant(date(2025, 1, 15), MADRID) == at("2025-01-14T23:00:00+00:00")
    assert fire_instant(date(2025, 7, 15), MADRID) == at("2025-07-14T22:00:00+00:00")


@pytest.mark.parametrize(("now", "raised"), [
    ("2025-03-09T23:59:00+01:00", 0),  # a minute before local midnight
    ("2025-03-09T23:59:59.999999+01:00", 0),
    ("2025-03-10T00:00:00+01:00", 1),  # on the instant
    ("2025-03-10T00:01:00+01:00", 1),
])
def test_fires_on_its_instant_and_not_a_minute_before(now: str, raised: int) -> None:
    p = plan([row()], set(), {}, now=at(now), protocol=DEFAULT_PROTOCOL)
    assert len(p.raise_) == raised
    if raised:
        assert p.raise_[0].fires_at == at("2025-03-09T23:00:00+00:00")


def test_lookback_boundary() -> None:
    fired = fire_instant(date(2025, 3, 10), MADRID)
    on_edge = fired + timedelta(days=DEFAULT_PROTOCOL.alert_lookback_days)
    assert len(plan([row()], set(), {}, now=on_edge, protocol=DEFAULT_PROTOCOL).raise_) == 1
    late = plan([row()], set(), {}, now=on_edge + timedelta(microseconds=1),
                protocol=DEFAULT_PROTOCOL)
    assert late.raise_ == [] and late.too_old == 1
    zero = DEFAULT_PROTOCOL.model_copy(update={"alert_lookback_days": 0})
    assert len(plan([row()], set(), {}, now=fired, protocol=zero).raise_) == 1


def test_re_evaluating_never_raises_twice() -> None:
    now = at("2025-03-10T10:00:00+01:00")
    first = plan([row(), row()], {row().key}, {}, now=now, protocol=DEFAULT_PROTOCOL)
    assert [s.dedupe_key for s in first.raise_] == [row().key]
    for status in ("open", "acknowledged", "cancelled"):
        known = {row().key: KnownAlert("a1", row().key, status, "P1")}
        again = plan([row()], {row().key}, known, now=now + timedelta(days=1),
                     protocol=DEFAULT_PROTOCOL)
        assert again.raise_ == []


def test_urgent_first_then_by_instant() -> None:
    rows = [row("P1:a:x:now", severity="info"), row("P1:b:x:now", severity="urgent"),
            row("P1:c:x:now", fires_on=date(2025, 3, 9), severity="info")]
    p = plan(rows, set(), {}, now=at("2025-03-10T12:00:00+01:00"), protocol=DEFAULT_PROTOCOL)
    assert [s.dedupe_key for s in p.raise_] == ["P1:c:x:now", "P1:b:x:now", "P1:a:x:now"]


# ---------------------------------------------------------------- cancellation
def test_an_open_alert_whose_item_vanished_is_cancelled() -> None:
    now = at("2025-03-10T12:00:00+01:00")
    known = {"k-open": KnownAlert("a1", "k-open", "open", "P1"),
             "k-acked": KnownAlert("a2", "k-acked", "acknowledged", "P1"),
             "k-still": KnownAlert("a3", "k-still", "open", "P1"),
             "k-rebuilding": KnownAlert("a4", "k-rebuilding", "open", "P2")}
    p = plan([], {"k-still"}, known, now=now, protocol=DEFAULT_PROTOCOL, evaluated={"P1"})
    assert [c.alert_id for c in p.cancel] == ["a1"]
    everyone = plan([], {"k-still"}, known, now=now, protocol=DEFAULT_PROTOCOL)
    assert [c.alert_id for c in everyone.cancel] == ["a1", "a4"]


# ---------------------------------------------------------------- digest instants
@pytest.mark.parametrize(("now", "expected"), [
    ("2025-03-10T07:59:59+01:00", "2025-03-10T07:00:00+00:00"),
    ("2025-03-10T08:00:00+01:00", "2025-03-10T07:00:00+00:00"),  # on the hour: today's
    ("2025-03-10T08:00:01+01:00", "2025-03-11T07:00:00+00:00"),
    # spring forward (Sunday 30 March 2025): 08:00 CEST is 06:00 UTC
    ("2025-03-29T09:00:00+01:00", "2025-03-30T06:00:00+00:00"),
    ("2025-03-30T07:30:00+02:00", "2025-03-30T06:00:00+00:00"),
    # fall back (Sunday 26 October 2025): 08:00 CET is 07:00 UTC
    ("2025-10-25T09:00:00+02:00", "2025-10-26T07:00:00+00:00"),
    ("2025-10-25T07:00:00+02:00", "2025-10-25T06:00:00+00:00"),
])
def test_next_digest_instant_follows_local_time(now: str, expected: str) -> None:
    assert next_digest_instant(at(now), MADRID, 8) == at(expected)


@pytest.mark.parametrize("start", ["2025-03-28T12:00:00+00:00", "2025-10-24T12:00:00+00:00"])
def test_digest_instants_agree_with_the_scheduler_cron_trigger(start: str) -> None:
    trigger = CronTrigger(hour=8, minute=0, timezone=MADRID)
    moment = at(start)
    for _ in range(4):
        fire = trigger.get_next_fire_time(None, moment)
        assert fire is not None
        expected = next_digest_instant(moment, MADRID, 8)
        assert fire.astimezone(UTC) == expected
        moment = expected + timedelta(seconds=1)
    assert digest_instant(date(2025, 3, 29), MADRID, 8).hour == 7
    assert digest_instant(date(2025, 3, 30), MADRID, 8).hour == 6


def test_urgent_goes_now_others_at_the_digest() -> None:
    now = at("2025-03-10T23:30:00+01:00")
    base = dict(dedupe_key="k", group="g", patient="P1", kind="hypocalcaemia", item="x",
                due_on=date(2025, 3, 10), fires_at=now, cause_event_ids=())
    urgent = AlertSpec(severity="urgent", **base)  # type: ignore[arg-type]
    info = AlertSpec(severity="info", **base)  # type: ignore[arg-type]
    assert send_not_before(urgent, now, MADRID, 8) == now
    assert send_not_before(info, now, MADRID, 8) == at("2025-03-11T08:00:00+01:00")


# ---------------------------------------------------------------- escalation, retries
def test_escalation_instant_for_each_trigger() -> None:
    policy = EscalationPolicy.of(120)
    now = at("2025-03-10T10:00:00+00:00")
    two_hours = at("2025-03-10T12:00:00+00:00")
    assert policy.escalate_at(EscalationTrigger.SENT, now) == two_hours
    assert policy.escalate_at(EscalationTrigger.UNKNOWN, now) == two_hours
    assert policy.escalate_at(EscalationTrigger.ESCALATED, now) == two_hours
    assert policy.escalate_at(EscalationTrigger.NOBODY_REACHED, now) == now
    assert policy.escalate_at(EscalationTrigger.ESCALATED, now, further=False) is None
    assert {t.value for t in EscalationTrigger} == {
        "sent", "unknown", "nobody_reached", "escalated"}


@pytest.mark.parametrize(("roster", "minutes"), [(None, 120), (45, 45), (120, 120), (1, 1)])
def test_the_rosters_delay_applies_up_to_the_protocols(roster: int | None,
                                                       minutes: int) -> None:
    assert EscalationPolicy.of(120, roster).delay == timedelta(minutes=minutes)


@pytest.mark.parametrize("roster", [121, 0, -5])
def test_a_roster_delay_beyond_the_protocols_is_refused(roster: int) -> None:
    with pytest.raises(ValueError, match=r"delay_minutes = -?\d+ must be between 1 and the "
                                         r"protocol's escalation_minutes \(120\)"):
        EscalationPolicy.of(120, roster)


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter() -> None:
    plain = [backoff_seconds(n, base=30, cap=600, jitter=0.2, rand=0.5) for n in range(1, 7)]
    assert plain == [30, 60, 120, 240, 480, 600]
    assert backoff_seconds(1, base=30, cap=600, jitter=0.2, rand=0.0) == pytest.approx(24)
    assert backoff_seconds(1, base=30, cap=600, jitter=0.2, rand=0.999999) \
        == pytest.approx(36, abs=1e-3)


def test_retry_policy_stops_after_the_last_attempt() -> None:
    policy = RetryPolicy(base_seconds=10, cap_seconds=100, max_attempts=3, jitter=0)
    now = at("2025-03-10T10:00:00+00:00")
    assert policy.retry_at(1, now, 0.5) == now + timedelta(seconds=10)
    assert policy.retry_at(2, now, 0.5) == now + timedelta(seconds=20)
    assert policy.retry_at(3, now, 0.5) is None


def test_long_dedupe_keys_fit_the_event_and_stay_stable() -> None:
    short = "P1:hypocalcaemia:2025-03-10:e1:now"
    assert event_dedupe_key(short) == short
    long = "P1:post_dose_labs_due:" + "+".join(["e" * 36] * 6) + ":due"
    assert len(event_dedupe_key(long)) <= 200
    assert event_dedupe_key(long) == event_dedupe_key(long)
    assert event_dedupe_key(long) != event_dedupe_key(long[:-3] + "overdue")


# ---------------------------------------------------------------- routing
ROSTER = parse_roster("""
[[staff]]
id = "nurse.a"
name = "Nurse A"
roles = ["nurse"]
phone = "+34600000001"
email = "nurse.a@example.org"
preferred_channel = "sms"

[[staff]]
id = "rheum.b"
name = "Rheumatologist B"
roles = ["rheumatologist"]
email = "rheum.b@example.org"
preferred_channel = "email"

[routing]
default = ["nurse"]
[routing.severity]
urgent = ["nurse", "rheumatologist"]

[escalation]
chain = ["rheumatologist"]
""")


def test_routes_use_the_preferred_channel_then_another_then_the_fallback() -> None:
    assert ROSTER.routes("hypocalcaemia", "urgent", 0, {"sms", "email"}) == [
        Route("nurse.a", "sms"), Route("rheum.b", "email")]
    assert ROSTER.routes("hypocalcaemia", "urgent", 0, {"email"}) == [
        Route("nurse.a", "email"), Route("rheum.b", "email")]
    assert ROSTER.routes("hypocalcaemia", "urgent", 0, {"console"}) == [
        Route("nurse.a", "console"), Route("rheum.b", "console")]
    assert ROSTER.routes("hypocalcaemia", "urgent", 0, {"console", "file"}) == [
        Route("nurse.a", "file"), Route("rheum.b", "file")]
    assert ROSTER.routes("relapse_detected", "warning", 0, {"sms"}) == [
        Route("nurse.a", "sms")]
    assert ROSTER.routes("hypocalcaemia", "urgent", 1, {"email"}) == [
        Route("rheum.b", "email")]
    assert ROSTER.routes("hypocalcaemia", "urgent", 2, {"email"}) == []
