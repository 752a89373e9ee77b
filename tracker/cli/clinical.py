"""Reading the clinical picture: ``status``, ``due``, ``explain``, ``projections rebuild``."""

from __future__ import annotations

import sys
from typing import Any

import click

from tracker.cli.common import (
    State,
    check_ref,
    emit_json,
    handles_errors,
    parse_date,
    parse_instant,
    pass_state,
)
from tracker.cli.everyday import no_patient
from tracker.cli.wardlist import print_ward_list
from tracker.errors import NotFound
from tracker.readmodel import StatusProjector
from tracker.replay import Question, replay
from tracker.status import Evaluation, evaluate
from tracker.worklist import SOON_DAYS, read_worklist, worklist


def evaluation_for(state: State, patient: str, at: str | None, known_at: str | None
                   ) -> Evaluation:
    """PATIENT's status from the store at ``--at`` as known at ``--known-at``."""
    app = state.app()
    zone = app.protocol.zone
    on = parse_date(at, "--at") or app.clock.now().astimezone(zone).date()
    instant = parse_instant(known_at, "--known-at", zone)
    events = app.store.read_stream(patient)
    if not events:
        raise no_patient(app, patient)
    return evaluate(patient, events, at=on, known_at=instant, protocol=app.protocol)


def _summary(status: dict[str, Any]) -> list[str]:
    d, p, t = status["disease"], status["pamidronate"], status["treatment"]
    lines = [f"{status['patient']} at {status['at']}"
             + (f" (as known at {status['known_at']})" if status["known_at"] else ""),
             f"  disease      {d['state']}{' (relapse)' if d['in_relapse'] else ''}; "
             f"last activity {d['last_activity'] or '-'}; relapses {d['relapse_count']}"
             + (f"; remission since {d['remission_since']}" if d["remission_since"] else "")
             + f"; on treatment: {'yes' if d['on_treatment'] else 'no'}"]
    j = status["diagnosis"]["jansson"]
    if j:
        lines.append(f"  diagnosis    Jansson {j['major']} major + {j['minor']} minor: "
                     f"{'confirmed' if j['confirmed'] else 'not confirmed'}"
                     + (f"; unknown: {', '.join(j['unknown'])}" if j["unknown"] else ""))
    lines.append(f"  treatment    step {t['step'] or '-'}; open: "
                 + (", ".join(f"{c['drug']} since {c['since']}" for c in t["open_courses"])
                    or "none"))
    if p["doses"]:
        lines.append(f"  pamidronate  {p['doses']} dose(s) in {p['cycles']} cycle(s); "
                     f"{p['rolling_year_mg_per_kg']} of {p['annual_cap_mg_per_kg']} mg/kg this "
                     f"year; next due {p['next_due'] or '-'}"
                     + ("; NEXT DOSE WOULD EXCEED THE CAP (fits on "
                        f"{p['next_dose_fits_on'] or 'never'})"
                        if p["next_dose_exceeds_cap"] else ""))
    for m in status["monitoring"]:
        if m["status"] != "satisfied":
            lines.append(f"  monitoring   {m['item']}: {m['status']} from {m['due_on']}"
                         + (f"; missing {', '.join(m['missing'])}" if m["missing"] else ""))
    for f in status["findings"]:
        lines.append(f"  finding      {f['kind']} on {f['on']}")
    for dv in status["deviations"]:
        lines.append(f"  deviation    {dv['kind']}: {dv['detail']}")
    for a in status["alerts"]:
        lines.append(f"  alert        {a['severity']:<7} {a['kind']} (due {a['due_on']})")
    return lines


@click.command("status")
@click.argument("patient", callback=check_ref)
@click.option("--at", default=None, help="clinical date to evaluate (default today)")
@click.option("--known-at", default=None,
              help="only what was recorded by then: datetime with offset, or a local date")
@click.option("--json", "as_json", is_flag=True, help="the interchange JSON")
@pass_state
@handles_errors
def status_cmd(state: State, patient: str, at: str | None, known_at: str | None,
               as_json: bool) -> None:
    """The status of PATIENT: disease course, diagnosis, treatment, pamidronate, monitoring."""
    status = evaluation_for(state, patient, at, known_at).as_json()
    if as_json:
        emit_json(status)
    else:
        click.echo("\n".join(_summary(status)))


@click.command("explain")
@click.argument("patient", callback=check_ref)
@click.argument("item", required=False)
@click.option("--at", default=None)
@click.option("--known-at", default=None)
@pass_state
@handles_errors
def explain_cmd(state: State, patient: str, item: str | None, at: str | None,
                known_at: str | None) -> None:
    """Why PATIENT's ITEM holds: the rule in words and the events it rests on.

    ITEM is a state, deviation or due item, e.g. state, remission_since, last_activity,
    step, pamidronate.next_due, monitoring.post_dose_2_labs, deviation.dose_above_60_mg.
    Without ITEM, lists what can be explained."""
    ev = evaluation_for(state, patient, at, known_at)
    subjects = sorted({x.subject for x in ev.explanations})
    if item is None:
        click.echo("explainable: " + ", ".join(subjects))
        return
    chosen = [x for x in ev.explanations
              if x.subject == item or x.subject.endswith("." + item)
              or x.subject.startswith(item + ":") or x.subject.startswith(item + ".")]
    if not chosen:
        raise NotFound(f"nothing called {item!r} for {patient}; try one of: "
                       + ", ".join(subjects))
    by_id = {f.event_id: f for f in ev.facts}
    for x in chosen:
        click.echo(f"{x.subject}: {x.text}")
        for event_id in x.event_ids:
            f = by_id.get(event_id)
            if f is not None:
                click.echo(f"    {f.on.isoformat()} {f.type} by {f.recorded_by} "
                           f"(event {event_id})")
    click.echo(f"(protocol {ev.protocol.fingerprint}, evaluated at {ev.at.isoformat()})")


@click.command("due")
@click.option("--at", default=None, help="the date of the list (default today)")
@click.option("--known-at", default=None,
              help="only what was recorded by then: datetime with offset, or a local date")
@click.option("--soon", "soon_days", default=SOON_DAYS, show_default=True,
              help="also list what falls due within this many days")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="processes that replay a past list (PostgreSQL; default: one per core)")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@handles_errors
def due_cmd(state: State, at: str | None, known_at: str | None, soon_days: int,
            workers: int | None, as_json: bool) -> None:
    """The worklist across patients: due soon, due and overdue, by date.

    Today's list comes from the read model. A list of another date (--at) or as known at
    an earlier instant (--known-at) replays every patient, so that it shows exactly what
    `status --at --known-at` shows for each of them."""
    import os

    app = state.app()
    today = app.clock.now().astimezone(app.protocol.zone).date()
    on = parse_date(at, "--at") or today
    instant = parse_instant(known_at, "--known-at", app.protocol.zone)
    lookback = app.protocol.alert_lookback_days
    if on == today and instant is None:
        StatusProjector(app.store, app.protocol, app.clock).catch_up()
        with app.engine.connect() as conn:
            items = read_worklist(conn, on, soon_days=soon_days, lookback_days=lookback)
        source = "known now, from the read model"
    else:
        question = Question(on, instant, soon_days, lookback)
        done = replay(app.store, app.protocol, question, workers=workers or os.cpu_count() or 1)
        known = "now" if instant is None else "at " + instant.astimezone(
            app.protocol.zone).isoformat(timespec="seconds")
        source = (f"known {known}, replayed "
                  f"{done.patients} patient(s) in {done.processes} process(es)")
        items = worklist(done.rows, on, soon_days=soon_days, lookback_days=lookback)
    if as_json:
        emit_json(items)  # interchange: one object per open item, sorted by date
        return
    click.echo(f"as of {on.isoformat()}, {source}")
    print_ward_list(items, on, app.protocol.alert_lookback_days)


@click.group("projections")
def projections_group() -> None:
    """The read model kept for the worker."""


@projections_group.command("rebuild")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="processes that fold in parallel (PostgreSQL; default: one per core)")
@pass_state
@handles_errors
def rebuild_cmd(state: State, workers: int | None) -> None:
    """Drop the read model and fold the whole log again."""
    import os

    app = state.app()
    projector = StatusProjector(app.store, app.protocol, app.clock)
    total = len(app.store.patient_streams())
    n = workers or (os.cpu_count() or 1)
    with click.progressbar(length=total, label="rebuilding", file=sys.stderr) as bar:
        report = projector.rebuild(progress=bar.update, workers=n)
    click.echo(f"rebuilt {report.patients} patient(s) from {report.events} event(s)")


@projections_group.command("catch-up")
@pass_state
@handles_errors
def catch_up_cmd(state: State) -> None:
    """Fold what is new since the last checkpoint."""
    app = state.app()
    report = StatusProjector(app.store, app.protocol, app.clock).catch_up()
    click.echo(f"folded {report.events} new event(s) into {report.patients} patient(s); "
               f"re-checked {report.rechecked}")
