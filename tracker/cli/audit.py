"""Reading for audit: ``timeline`` and ``verify``."""

from __future__ import annotations

import click

from tracker.cli.common import State, emit_json, handles_errors, parse_instant, pass_state
from tracker.cli.everyday import no_patient
from tracker.timeline import describe, timeline


@click.command("timeline")
@click.argument("patient")
@click.option("--json", "as_json", is_flag=True, help="the interchange JSON")
@click.option("--known-at", default=None,
              help="only what was recorded by then (datetime with offset, or a local date)")
@pass_state
@handles_errors
def timeline_cmd(state: State, patient: str, as_json: bool, known_at: str | None) -> None:
    """Every event of PATIENT in clinical order, with void and correction marks."""
    app = state.app()
    events = app.store.read_stream(patient)
    if not events:
        raise no_patient(app, patient)
    rows = timeline(events, known_at=parse_instant(known_at, "--known-at", app.protocol.zone),
                    zone=app.protocol.zone)
    if as_json:
        emit_json(rows)  # interchange: the patient's events in clinical order
    else:
        for row in rows:
            click.echo(describe(row))


@click.command("verify")
@pass_state
@handles_errors
def verify_cmd(state: State) -> None:
    """Recompute every stream's hash chain and name each event that no longer matches."""
    app = state.app()
    breaks = app.store.verify()
    if not breaks:
        click.echo(f"ok: {app.store.count()} event(s), every hash chain intact")
        return
    for b in breaks:
        click.echo(f"TAMPERED {b}", err=True)
    raise SystemExit(6)
