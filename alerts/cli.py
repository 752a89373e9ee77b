"""``cno-tracker worker`` and ``cno-tracker alerts list|show|ack``."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import click
import orjson

from events.envelope import utc_iso
from tracker.cli.common import State, check_by, emit_json, handles_errors, pass_state
from tracker.errors import CommandRefused, ConfigurationError, NotFound

if TYPE_CHECKING:  # the worker's modules (twilio, APScheduler) load only when used
    from alerts.health import WorkerHealth
    from alerts.outbox import AlertRow, DeliveryRow


@click.group("worker", invoke_without_command=True)
@click.option("--once", is_flag=True, help="run one full cycle and exit")
@click.option("--worker-id", default=None, help="this worker's id in leases and logs")
@click.option("--batch-size", default=100, show_default=True, type=click.IntRange(1))
@click.option("--lease-seconds", default=120.0, show_default=True,
              type=click.FloatRange(min=1))
@click.option("--poll-seconds", default=30.0, show_default=True,
              type=click.FloatRange(min=0.1))
@click.option("--now", default=None,
              help="with --once: evaluate at this ISO instant (demos, replays)")
@click.pass_context
@pass_state
@handles_errors
def worker_cmd(state: State, ctx: click.Context, once: bool, worker_id: str | None,
               batch_size: int, lease_seconds: float, poll_seconds: float,
               now: str | None) -> None:
    """Raise, route, send and escalate alerts (runs until SIGTERM unless --once).

    `cno-tracker worker status` tells whether a worker is alive."""
    if ctx.invoked_subcommand is not None:
        return
    if now is not None and not once:
        raise click.UsageError("--now is only allowed with --once")
    from alerts.errors import WorkerConfigurationError
    from alerts.wiring import build_worker
    from alerts.worker import configure_logging

    configure_logging()
    try:
        worker = build_worker(state.app(), worker_id=worker_id, batch_size=batch_size,
                              lease_seconds=lease_seconds, poll_seconds=poll_seconds, now=now)
        if once:
            with worker:
                worker.run_once()
        else:
            worker.run_forever()
    except WorkerConfigurationError as exc:
        raise ConfigurationError(str(exc)) from None


@worker_cmd.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@pass_state
@handles_errors
def worker_status_cmd(state: State, ctx: click.Context, as_json: bool) -> None:
    """Workers' heartbeats, lag behind the log, deliveries per channel, channels down.

    Exit 0 when a worker's heartbeat is fresh and no channel is down, else exit 1."""
    from alerts.health import worker_health

    app = state.app()
    health = worker_health(app.engine, app.clock.now())
    if as_json:
        emit_json(health_json(health))
    else:
        for line in health_lines(health):
            click.echo(line)
    ctx.exit(0 if health.ok else 1)


def health_json(health: WorkerHealth) -> dict[str, Any]:
    return {
        "ok": health.ok, "now": _iso(health.now), "alive": len(health.alive),
        "last_cycle_ended_at": _iso(health.last_cycle_ended_at),
        "lag_positions": health.lag_positions, "channels_down": health.channels_down,
        "deliveries": health.deliveries, "sms_opted_out": health.sms_opted_out,
        "workers": [{
            "worker_id": w.worker_id, "alive": w.alive, "host": w.host, "pid": w.pid,
            "version": w.version, "started_at": _iso(w.started_at), "beat_at": _iso(w.beat_at),
            "cycle_started_at": _iso(w.cycle_started_at),
            "cycle_ended_at": _iso(w.cycle_ended_at), "stopped_at": _iso(w.stopped_at),
            "channels_down": w.channels_down,
        } for w in health.workers],
    }


def health_lines(health: WorkerHealth) -> list[str]:
    alive = health.alive
    lines = [f"workers: {len(alive)} alive" + (
        "" if alive else " — NO FRESH HEARTBEAT: alerts are not being sent")]
    for w in health.workers:
        state = "alive" if w.alive else ("stopped" if w.stopped_at else "dead (heartbeat expired)")
        ago = (health.now - w.beat_at).total_seconds()
        cycle = (f"last cycle {_iso(w.cycle_started_at)} → {_iso(w.cycle_ended_at)}"
                 if w.cycle_started_at else "no cycle yet")
        lines.append(f"  {w.worker_id}  {state}  {w.host} pid {w.pid}  v{w.version}  "
                     f"beat {ago:.0f} s ago  {cycle}")
    lag = health.lag_positions
    lines.append("lag behind the log: " + ("projector never ran" if lag is None
                                           else f"{lag} position(s)"))
    if health.deliveries:
        for channel, counts in health.deliveries.items():
            lines.append(f"deliveries {channel}: " + ", ".join(
                f"{n} {status}" for status, n in counts.items()))
    else:
        lines.append("deliveries: none waiting, unknown or dead")
    for channel, reason in health.channels_down.items():
        lines.append(f"CHANNEL DOWN {channel}: {reason} (fix the credentials, restart the "
                     "worker)")
    if health.sms_opted_out:
        lines.append("SMS off (replied STOP; their other channel is used): "
                     + ", ".join(health.sms_opted_out))
    return lines


@click.group("alerts")
def alerts_group() -> None:
    """Alerts raised by the worker: list and acknowledge."""


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return utc_iso(value) if hasattr(value, "tzinfo") and hasattr(value, "hour") \
        else value.isoformat()


def alert_json(alert: AlertRow, deliveries: list[DeliveryRow]) -> dict[str, Any]:
    return {
        "alert_id": alert.alert_id, "patient": alert.patient, "kind": alert.kind,
        "severity": alert.severity, "item": alert.item, "due_on": _iso(alert.due_on),
        "fires_at": _iso(alert.fires_at), "status": alert.status, "level": alert.level,
        "dedupe_key": alert.dedupe_key, "cause_event_ids": orjson.loads(alert.cause_event_ids),
        "raised_at": _iso(alert.raised_at), "first_sent_at": _iso(alert.first_sent_at),
        "escalate_at": _iso(alert.escalate_at), "closed_at": _iso(alert.closed_at),
        "closed_by": alert.closed_by, "close_reason": alert.close_reason,
        "deliveries": [{
            "recipient": d.recipient, "channel": d.channel, "level": d.level,
            "mode": d.mode, "status": d.status, "attempts": d.attempts,
            "not_before": _iso(d.not_before), "sent_at": _iso(d.sent_at),
            "provider_id": d.provider_id, "last_error": d.last_error,
        } for d in deliveries],
    }


@alerts_group.command("list")
@click.option("--open", "open_only", is_flag=True, help="only alerts not yet acknowledged")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@handles_errors
def list_cmd(state: State, open_only: bool, as_json: bool) -> None:
    """Alerts with the state of their deliveries (unknown outcomes need a person)."""
    from alerts.outbox import Outbox

    app = state.app()
    outbox = Outbox(app.store, app.protocol.zone)
    with app.engine.connect() as conn:
        rows = outbox.alerts(conn, open_only=open_only)
        by_alert: dict[str, list[DeliveryRow]] = {}
        for d in outbox.deliveries(conn, [a.alert_id for a in rows]) if rows else []:
            by_alert.setdefault(d.alert_id, []).append(d)
    if as_json:
        emit_json([alert_json(a, by_alert.get(a.alert_id, [])) for a in rows])
        return
    if not rows:
        click.echo("no open alerts" if open_only else "no alerts")
        return
    notes = _ack_notes(app.store, [a.alert_id for a in rows if a.status == "acknowledged"])
    for group in group_repeats(rows):
        a = group[-1]
        counts = Counter(d.status for g in group for d in by_alert.get(g.alert_id, []))
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no deliveries"
        flag = "  ATTENTION: outcome unknown" if counts.get("unknown") else ""
        closed = f" by {a.closed_by}" if a.closed_by and a.status == "acknowledged" else ""
        note = notes.get(a.alert_id)
        due = a.due_on.isoformat() if group[0].due_on == a.due_on else \
            f"{group[0].due_on.isoformat()}..{a.due_on.isoformat()}"
        repeats = f" x{len(group)} (also {', '.join(g.alert_id[:8] for g in group[:-1])})" \
            if len(group) > 1 else ""
        click.echo(f"{a.alert_id}  {a.status}{closed}  {a.severity:<7}  {a.patient}  "
                   f"{a.kind}{repeats}  due {due}  level {a.level}  [{summary}]{flag}"
                   + (f"  note: {note}" if note else ""))


def group_repeats(rows: list[AlertRow]) -> list[list[AlertRow]]:
    """Alerts of one patient, kind, severity, status and level, in the order first raised:
    repeats of one concern (e.g. five 'dose check needed' for one child) on one line."""
    groups: dict[tuple[str, str, str, str, int], list[AlertRow]] = {}
    for a in rows:
        groups.setdefault((a.patient, a.kind, a.severity, a.status, a.level), []).append(a)
    return [sorted(g, key=lambda a: (a.due_on, a.raised_at)) for g in groups.values()]


def _ack_notes(store: Any, alert_ids: list[str]) -> dict[str, str]:
    """The note of each acknowledgement, from the alerts' own streams."""
    from alerts.outbox import stream_of

    notes: dict[str, str] = {}
    streams = store.read_streams(stream_of(i) for i in alert_ids) if alert_ids else {}
    for events in streams.values():
        for e in events:
            if e.type == "AlertAcknowledged" and e.data.note:
                notes[e.data.alert_id] = e.data.note
    return notes


def _history_line(e: Any, zone: Any) -> str:
    d = e.data
    when = utc_iso(e.recorded_at)[:19].replace("T", " ") + "Z"
    if e.type == "AlertRaised":
        what = (f"raised by {e.recorded_by}: {d.kind}, {d.severity}, due "
                f"{d.due_at.astimezone(zone).date().isoformat()}, rule {d.rule or '-'}, "
                f"{len(d.cause_event_ids)} cause event(s)")
    elif e.type == "AlertSent":
        what = (f"sent to {d.recipient} by {d.channel} (attempt {d.attempt}"
                + (f", provider id {d.provider_id}" if d.provider_id else "") + ")")
    elif e.type == "AlertFailed":
        outcome = "outcome unknown" if d.outcome_unknown else \
            "permanent failure" if d.permanent else "failed, will retry"
        what = f"{outcome}: {d.recipient} by {d.channel} (attempt {d.attempt}): {d.error}"
    elif e.type == "AlertDelivered":
        what = (f"delivered to {d.recipient} by {d.channel} (provider id {d.provider_id}, "
                f"by {d.source})")
    elif e.type == "AlertUndelivered":
        code = f", code {d.error_code}" if d.error_code is not None else ""
        what = (f"{d.status}: {d.recipient} by {d.channel} (provider id {d.provider_id}"
                f"{code}, by {d.source})")
    elif e.type == "AlertEscalated":
        what = f"escalated to {d.to_role} (level {d.level})"
    elif e.type == "AlertAcknowledged":
        via = {"sms": " by SMS reply", "link": " from the e-mail link"}.get(d.via or "", "")
        what = (f"acknowledged by {d.by}{via}"
                + (f" (message {d.provider_id})" if d.provider_id else "")
                + (f": {d.note}" if d.note else ""))
    elif e.type == "AlertCancelled":
        what = f"cancelled: {d.reason}"
    else:
        what = e.type
    return f"  {when}  {what}"


@alerts_group.command("show")
@click.argument("alert")
@pass_state
@handles_errors
def show_cmd(state: State, alert: str) -> None:
    """One ALERT's whole history (its id, or a unique prefix): raised, every delivery with
    channel, time and outcome, escalations, acknowledgement with its note."""
    from alerts.outbox import Outbox, stream_of

    app = state.app()
    outbox = Outbox(app.store, app.protocol.zone)
    with app.engine.connect() as conn:
        found = outbox.find(conn, alert)
        if len(found) == 1:
            deliveries = outbox.deliveries(conn, [found[0].alert_id])
    if not found:
        raise NotFound(f"no alert {alert!r}")
    if len(found) > 1:
        raise CommandRefused(f"{alert!r} matches several alerts: give more of the id")
    a = found[0]
    closed = f" by {a.closed_by}" if a.closed_by else ""
    click.echo(f"alert {a.alert_id}: {a.patient} {a.kind} ({a.severity}, item {a.item}), "
               f"due {a.due_on.isoformat()}; {a.status}{closed}; level {a.level}")
    for e in app.store.read_stream(stream_of(a.alert_id)):
        click.echo(_history_line(e, app.protocol.zone))
    for d in deliveries:
        sent = f", sent {utc_iso(d.sent_at)[:19]}Z" if d.sent_at else ""
        error = f", last error: {d.last_error}" if d.last_error else ""
        click.echo(f"  delivery  {d.recipient} by {d.channel} ({d.mode}, level {d.level}): "
                   f"{d.status} after {d.attempts} attempt(s){sent}{error}")
    if a.escalate_at is not None and a.status == "open":
        click.echo(f"  escalates at {utc_iso(a.escalate_at)[:19]}Z unless acknowledged")


@alerts_group.command("ack")
@click.argument("alert")
@click.option("--by", "by", callback=check_by, required=True, help="who acknowledges (staff id)")
@click.option("--note", default=None, help="what was done (no patient detail)")
@pass_state
@handles_errors
def ack_cmd(state: State, alert: str, by: str, note: str | None) -> None:
    """Acknowledge ALERT (its id, or a unique prefix): escalation and repeats stop."""
    from alerts.outbox import Outbox

    if not by.strip():
        raise CommandRefused("--by must name who acknowledges")
    app = state.app()
    outbox = Outbox(app.store, app.protocol.zone)
    with app.engine.connect() as conn:
        found = outbox.find(conn, alert)
    if not found:
        raise NotFound(f"no alert {alert!r}")
    if len(found) > 1:
        raise CommandRefused(f"{alert!r} matches several alerts: give more of the id")
    target = found[0]
    with outbox.transaction() as writer:
        before = outbox.acknowledge(writer, target.alert_id, by=by.strip()[:128],
                                    note=note, now=app.clock.now())
    if before.status == "acknowledged":
        click.echo(f"alert {target.alert_id} was already acknowledged by {before.closed_by}")
    elif before.status == "cancelled":
        raise CommandRefused(
            f"alert {target.alert_id} was cancelled ({before.close_reason}): nothing to "
            "acknowledge")
    else:
        click.echo(f"alert {target.alert_id} acknowledged by {by.strip()}")


@alerts_group.command("test-send")
@click.argument("member")
@click.option("--channel", type=click.Choice(["sms", "email"]), default=None,
              help="default: the member's first channel configured here")
@pass_state
@handles_errors
def test_send_cmd(state: State, member: str, channel: str | None) -> None:
    """Send MEMBER (a roster staff id) a neutral test message, recorded as an event.

    Exit 0 sent, 1 the provider refused or the outcome is unknown, 2 the member has no
    such address, 4 no such member, 5 the channel is not configured here."""
    from alerts.errors import DeliveryError, UnknownOutcomeError
    from alerts.notices import channel_for, test_message
    from alerts.optouts import append_staff, sms_off
    from alerts.wiring import build_channels, build_roster
    from events.vocabulary import TestMessageSent

    app = state.app()
    roster = build_roster(app.settings)
    try:
        person = roster.member(member)
    except KeyError:
        raise NotFound(f"no staff member {member!r} on the roster") from None
    channels = build_channels(app.settings)
    if channel is not None and channel not in person.channels():
        raise CommandRefused(f"--channel: staff {member!r} has no {channel} address")
    if channel is not None and channel not in channels:
        raise ConfigurationError(f"--channel: {channel} is not configured here (see the "
                                 "CNO_TRACKER_TWILIO_* / CNO_TRACKER_SMTP_* settings)")
    with app.engine.connect() as conn:
        off = sms_off(conn)
    try:
        name = channel_for(person, channels, wanted=channel, off=off)
    except DeliveryError as exc:
        raise CommandRefused(exc.reason) from None
    now = app.clock.now()
    outcome, provider_id, error = "sent", None, None
    try:
        receipt = channels[name].send(test_message(now, app.protocol.zone), person.recipient())
        provider_id = receipt.provider_id
    except DeliveryError as exc:
        outcome = "unknown" if isinstance(exc, UnknownOutcomeError) else "failed"
        error = exc.reason[:500]
    with app.store.transaction() as writer:
        append_staff(app.store, writer, person.id, [TestMessageSent(
            staff_id=person.id, channel=name, outcome=outcome,  # type: ignore[arg-type]
            provider_id=(provider_id or None) and provider_id[:200], error=error)],
            now=now, by="alerts-test-send", zone=app.protocol.zone)
    if outcome != "sent":
        click.echo(f"test message to {person.id} by {name}: {outcome}: {error}", err=True)
        raise SystemExit(1)
    click.echo(f"test message sent to {person.id} by {name}"
               + (f" (provider id {provider_id})" if provider_id else ""))
