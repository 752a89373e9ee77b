"""Reports: ``chart`` (one patient's course as a picture) and ``cohort-report`` (the seed's
Table 4 from the record). The only part of the reports that reads the store or writes a
file; the drawing and the aggregation are pure (tracker/reports)."""

from __future__ import annotations

from pathlib import Path

import click

from tracker.cli.clinical import evaluation_for
from tracker.cli.common import State, check_ref, handles_errors, parse_date, pass_state
from tracker.errors import NotFound
from tracker.status import evaluate


@click.command("chart")
@click.argument("patient", callback=check_ref)
@click.option("--at", default=None, help="clinical date to evaluate (default today)")
@click.option("--known-at", default=None,
              help="only what was recorded by then: datetime with offset, or a local date")
@click.option("-o", "--output", required=True,
              type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="the picture to write: .png or .svg")
@pass_state
@handles_errors
def chart_cmd(state: State, patient: str, at: str | None, known_at: str | None,
              output: Path) -> None:
    """Draw PATIENT's course: disease state, treatment ladder, pamidronate against the
    yearly cap, the labs that drive rules and the monitoring items, on one time axis."""
    from tracker.reports.chart import CHART_FORMATS, course_chart, save_chart

    suffix = output.suffix.lower().lstrip(".")
    if suffix not in CHART_FORMATS:
        raise click.BadParameter(f"{output.name}: give a file ending in .png or .svg",
                                 param_hint="--output")
    ev = evaluation_for(state, patient, at, known_at)
    if not ev.facts:
        raise NotFound(f"nothing recorded for {patient!r} as known at {known_at}")
    fig = course_chart(ev)
    save_chart(fig, output)
    click.echo(f"wrote {output}")


@click.command("cohort-report")
@click.option("--from", "date_from", default=None,
              help="include diagnoses on or after this date (YYYY-MM-DD)")
@click.option("--to", "date_to", default=None,
              help="include diagnoses on or before this date (YYYY-MM-DD)")
@click.option("--at", default=None, help="clinical date of the evaluation (default today)")
@click.option("--max-age", default=14, show_default=True,
              help="include children younger than this many years at diagnosis")
@click.option("--format", "fmt", type=click.Choice(["csv", "html", "json", "md"]), default="md",
              show_default=True)
@click.option("-o", "--output", default=None,
              type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="write to this file instead of standard output")
@pass_state
@handles_errors
def cohort_report_cmd(state: State, date_from: str | None, date_to: str | None,
                      at: str | None, max_age: int, fmt: str, output: Path | None) -> None:
    """The cohort table of the seed paper (Table 4) from the record, with the seed's
    inclusion criteria: Jansson confirmed, under MAX-AGE at diagnosis, diagnosed between
    --from and --to; counts of who was excluded and why."""
    from tracker.reports.cohort import cohort_report, patient_record
    from tracker.reports.render import render

    app = state.app()
    on = parse_date(at, "--at") or app.clock.now().astimezone(app.protocol.zone).date()
    start, end = parse_date(date_from, "--from"), parse_date(date_to, "--to")
    if start and end and start > end:
        raise click.BadParameter("--from is after --to", param_hint="--from")
    streams = app.store.read_streams(app.store.patient_streams())
    records = [patient_record(evaluate(p, events, at=on, known_at=None,
                                       protocol=app.protocol))
               for p, events in streams.items()]
    text = render(cohort_report(records, at=on, date_from=start, date_to=end,
                                max_age=max_age), fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")
