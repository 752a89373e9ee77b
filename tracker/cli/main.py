"""``cno-tracker``: the entry point. Commands live in small modules beside this one."""

from __future__ import annotations

import click

from alerts.cli import alerts_group, worker_cmd
from tracker import db
from tracker.cli.audit import seal_cmd, timeline_cmd, verify_cmd
from tracker.cli.clinical import due_cmd, explain_cmd, projections_group, status_cmd
from tracker.cli.common import State, handles_errors, pass_state
from tracker.cli.everyday import enroll_cmd, info_cmd, package_version
from tracker.cli.failures import FailSafeGroup
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
from tracker.cli.users import users_group
from tracker.settings import load_settings
from web.cli import web_cmd


@click.group(cls=FailSafeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_version(), "--version", prog_name="cno-tracker")
@click.option("--debug", is_flag=True,
              help="also print an unexpected error's traceback on the terminal")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """CNO Tracker: treatment courses, monitoring and alerts for children with CNO/CRMO."""
    ctx.meta["cno_tracker.debug"] = debug
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
    from events.store.engine import make_engine
    from tracker.cli.everyday import database_label

    settings = load_settings()
    db.prepare_sqlite_file(settings.database_url)  # a new file is created 0600, before reading
    engine = make_engine(settings.database_url)
    try:
        before = db.current_revisions(engine)
        db.upgrade(settings.database_url)
        after = db.current_revisions(engine)
    finally:
        engine.dispose()
    where = database_label(settings.database_url)
    if before == after:
        click.echo(f"{where}: schema already at {', '.join(sorted(after))}; nothing to do")
    else:
        click.echo(f"{where}: schema upgraded from {', '.join(sorted(before)) or 'empty'} "
                   f"to {', '.join(sorted(after))}")


for command in (import_cmd, record_cmd, visit_cmd, lab_cmd, infusion_cmd, timeline_cmd,
                verify_cmd, status_cmd, explain_cmd, due_cmd, projections_group, generate_cmd,
                worker_cmd, alerts_group, chart_cmd, cohort_report_cmd, seal_cmd, enroll_cmd,
                info_cmd):
    cli.add_command(command)
cli.add_command(users_group)
cli.add_command(web_cmd)
for command in (patients_group, fhir_group, hl7_group):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="cno-tracker")
