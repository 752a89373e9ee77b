"""``cno-tracker``: the entry point. Commands live in small modules beside this one."""

from __future__ import annotations

import click

from alerts.cli import alerts_group, worker_cmd
from tracker import db
from tracker.cli.audit import timeline_cmd, verify_cmd
from tracker.cli.clinical import due_cmd, explain_cmd, projections_group, status_cmd
from tracker.cli.common import State, handles_errors, pass_state
from tracker.cli.interop import fhir_group, hl7_group, patients_group
from tracker.cli.records import (
    generate_cmd,
    import_cmd,
    infusion_cmd,
    lab_cmd,
    record_cmd,
    visit_cmd,
)
from tracker.cli.reports import chart_cmd, cohort_report_cmd
from tracker.settings import load_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """CNO Tracker: treatment courses, monitoring and alerts for children with CNO/CRMO."""
    state = ctx.ensure_object(State)
    ctx.call_on_close(state.close)


@cli.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@pass_state
@handles_errors
def db_upgrade(state: State) -> None:
    """Bring the schema up to date (safe to run from several releases at once)."""
    settings = load_settings()
    db.upgrade(settings.database_url)
    click.echo("database schema is up to date")


for command in (import_cmd, record_cmd, visit_cmd, lab_cmd, infusion_cmd, timeline_cmd,
                verify_cmd, status_cmd, explain_cmd, due_cmd, projections_group, generate_cmd,
                worker_cmd, alerts_group, chart_cmd, cohort_report_cmd):
    cli.add_command(command)
for command in (patients_group, fhir_group, hl7_group):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="cno-tracker")
