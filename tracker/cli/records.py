"""Writing: ``import``, ``record`` and the friendly daily commands (visit, lab, infusion)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import IO, Any

import click
import orjson

from events.vocabulary import IMPORTABLE_TYPES, UNITS
from tracker.cli.common import State, check_by, handles_errors, pass_state
from tracker.errors import ImportRefused
from tracker.import_pool import MAX_WORKERS
from tracker.importing import MAX_LINE_BYTES, ImportReport, bounded_lines, import_lines

PROGRESS_MIN_BYTES = 1_000_000
#: the progress bar moves every this many lines
PROGRESS_STEP = 500


def _count_lines(stream: IO[bytes]) -> int:
    """Lines in a file, read in blocks (a line may be as long as the file)."""
    count, last = 0, b"\n"
    for block in iter(lambda: stream.read(1 << 20), b""):
        count += block.count(b"\n")
        last = block[-1:]
    return count + (last != b"\n")


def _run_import(state: State, lines: Any, *, by: str, dry_run: bool,
                total: int | None = None, max_line_bytes: int = MAX_LINE_BYTES,
                workers: int | None = None) -> ImportReport:
    app = state.app()
    if total:
        with click.progressbar(length=total, label="importing", file=sys.stderr) as bar:
            def tick(n: int) -> None:
                if n % PROGRESS_STEP == 0:  # a call per line would cost more than the bar
                    bar.update(n - bar.pos)
            report = import_lines(lines, app.store, clock=app.clock, protocol=app.protocol,
                                  default_by=by, dry_run=dry_run, on_line=tick,
                                  max_line_bytes=max_line_bytes, workers=workers)
            bar.update(max(0, report.lines - bar.pos))
            return report
    return import_lines(lines, app.store, clock=app.clock, protocol=app.protocol,
                        default_by=by, dry_run=dry_run, max_line_bytes=max_line_bytes,
                        workers=workers)


@click.command("import")
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=Path))
@click.option("--by", default="import", show_default=True, callback=check_by,
              help="who entered the events, for lines without recorded_by")
@click.option("--dry-run", is_flag=True, help="validate everything, write nothing")
@click.option("--max-line-bytes", type=click.IntRange(1, 1 << 30), default=MAX_LINE_BYTES,
              envvar="CNO_TRACKER_MAX_LINE_BYTES", show_default=True,
              help="longest line accepted; a longer one is refused with its number")
@click.option("--workers", type=click.IntRange(0, MAX_WORKERS), default=None,
              envvar="CNO_TRACKER_IMPORT_WORKERS",
              help="processes validating lines beside this one; 0: none  "
                   f"[default: one per core, at most {MAX_WORKERS}]")
@pass_state
@handles_errors
def import_cmd(state: State, file: Path, by: str, dry_run: bool, max_line_bytes: int,
               workers: int | None) -> None:
    """Import events from a JSON Lines FILE ('-' for standard input): all or nothing."""
    if str(file) == "-":
        if sys.stdin is None or sys.stdin.closed:
            raise click.BadParameter("standard input is closed", param_hint="FILE")
        report = _run_import(state, bounded_lines(sys.stdin.buffer, max_line_bytes), by=by,
                             dry_run=dry_run, max_line_bytes=max_line_bytes, workers=workers)
    else:
        if not file.exists():
            raise click.BadParameter(f"{file} does not exist", param_hint="FILE")
        total = None
        if file.is_file() and file.stat().st_size >= PROGRESS_MIN_BYTES:
            with file.open("rb") as fh:
                total = _count_lines(fh)
        with file.open("rb") as fh:
            report = _run_import(state, bounded_lines(fh, max_line_bytes), by=by,
                                 dry_run=dry_run, total=total, max_line_bytes=max_line_bytes,
                                 workers=workers)
    click.echo(report.summary())


def record_one(state: State, event_type: str, patient: str, when: str, data: dict[str, Any],
               *, by: str | None, key: str | None) -> str | None:
    """Record one event through the import's validation; its id, or None for a repeat."""
    line: dict[str, Any] = {"type": event_type, "patient": patient, "occurred_at": when,
                            "data": data}
    if by:
        line["recorded_by"] = by
    if key:
        line["idempotency_key"] = key
    if event_type != "PatientEnrolled":
        from tracker.cli.everyday import require_patient

        require_patient(state.app(), patient)
    try:
        report = _run_import(state, [orjson.dumps(line)], by=by or "cli", dry_run=False)
    except ImportRefused as exc:  # one entry, not a file: its problems have no line
        raise ImportRefused([dataclasses.replace(p, line=None) for p in exc.problems]) from None
    if report.written:
        click.echo(f"recorded {event_type} for {patient}: {report.event_ids[0]}")
        return report.event_ids[0]
    click.echo(f"already recorded (idempotency key {key!r}); nothing written")
    return None


_common = [
    click.option("--at", "when", required=True,
                 help="when it happened: a local date (2015-03-02) or datetime with offset"),
    click.option("--by", default=None, callback=check_by, help="who is recording it"),
    click.option("--key", default=None, help="idempotency key (re-running changes nothing)"),
]


def common_options(fn: Any) -> Any:
    for option in reversed(_common):
        fn = option(fn)
    return fn


def _record_epilog() -> str:
    names = sorted(IMPORTABLE_TYPES)
    rows = [", ".join(names[i:i + 4]) for i in range(0, len(names), 4)]
    return ("\b\nEvent types (TYPE; their data fields: docs/import-format.md):\n  "
            + ",\n  ".join(rows))


def _lab_epilog() -> str:
    rows = [f"  {name:<26} {', '.join([rule.canonical, *rule.alternatives])}"
            for name, rule in UNITS.items()]
    return "\b\nAnalytes and accepted units (the first is canonical):\n" + "\n".join(rows)


@click.command("record", epilog=_record_epilog())
@click.argument("event_type", metavar="TYPE")
@click.argument("patient")
@common_options
@click.option("--data", "data_json", required=True, help="the type's data as a JSON object")
@pass_state
@handles_errors
def record_cmd(state: State, event_type: str, patient: str, when: str, by: str | None,
               key: str | None, data_json: str) -> None:
    """Record one event of TYPE for PATIENT (the same validation as import)."""
    try:
        data = orjson.loads(data_json)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--data") from None
    record_one(state, event_type, patient, when, data, by=by, key=key)


@click.command("visit")
@click.argument("patient")
@common_options
@click.option("--pain/--no-pain", default=False)
@click.option("--swelling/--no-swelling", default=False)
@click.option("--limitation/--no-limitation", "functional_limitation", default=False,
              help="functional limitation")
@click.option("--fever/--no-fever", default=None)
@click.option("--active/--not-active", "physician_global_active", default=None,
              help="physician's global assessment of activity")
@click.option("--pain-score", type=click.IntRange(0, 10), default=None)
@click.option("--symptom-free-since", default=None, help="date symptoms stopped")
@click.option("--lesion", "lesions", multiple=True,
              help="an active lesion as SITE or SITE:SIDE (repeatable)")
@click.option("--weight", "weight_kg", type=float, default=None, help="kg")
@click.option("--height", "height_cm", type=float, default=None, help="cm")
@pass_state
@handles_errors
def visit_cmd(state: State, patient: str, when: str, by: str | None, key: str | None,
              **fields: Any) -> None:
    """Record a clinic visit for PATIENT."""
    lesions = []
    for item in fields.pop("lesions"):
        site, _, side = item.partition(":")
        lesions.append({"site": site, **({"side": side} if side else {})})
    data = {k: v for k, v in fields.items() if v is not None}
    if lesions:
        data["active_lesions"] = lesions
    record_one(state, "VisitRecorded", patient, when, data, by=by, key=key)


@click.command("lab", epilog=_lab_epilog())
@click.argument("patient")
@click.argument("analyte")
@click.argument("value", type=float)
@click.argument("unit")
@common_options
@click.option("--loinc", default=None)
@pass_state
@handles_errors
def lab_cmd(state: State, patient: str, analyte: str, value: float, unit: str, when: str,
            by: str | None, key: str | None, loinc: str | None) -> None:
    """Record a lab result: PATIENT ANALYTE VALUE UNIT (--at is the collection time)."""
    data: dict[str, Any] = {"analyte": analyte, "value": value, "unit": unit}
    if loinc:
        data["loinc"] = loinc
    record_one(state, "LabResultRecorded", patient, when, data, by=by, key=key)


@click.command("infusion")
@click.argument("patient")
@click.option("--dose-mg", type=float, required=True)
@click.option("--weight-kg", type=float, required=True)
@click.option("--drug", default="pamidronate", show_default=True,
              type=click.Choice(["pamidronate", "zoledronic_acid", "infliximab"]))
@click.option("--course", "course_id", default=None)
@click.option("--paracetamol/--no-paracetamol", "premedication_paracetamol", default=None)
@click.option("--hours", "duration_hours", type=float, default=None)
@click.option("--diluent-ml", type=float, default=None)
@common_options
@pass_state
@handles_errors
def infusion_cmd(state: State, patient: str, when: str, by: str | None, key: str | None,
                 **fields: Any) -> None:
    """Record an infusion given to PATIENT, then print the protocol deviations this dose
    creates (e.g. above 60 mg, above 1 mg/kg, over the yearly cap)."""
    from tracker.cli.clinical import evaluation_for

    data = {k: v for k, v in fields.items() if v is not None}
    event_id = record_one(state, "InfusionAdministered", patient, when, data, by=by, key=key)
    if event_id is None:
        return
    ev = evaluation_for(state, patient, None, None)
    found = [d for d in [*ev.pamidronate.deviations, *ev.treatment.deviations]
             if d.event_id == event_id]
    for d in found:
        click.echo(f"  deviation    {d.kind}: {d.detail}")
    if not found:
        click.echo("  no protocol deviation for this dose")


@click.command("generate-cohort")
@click.option("--patients", type=click.IntRange(0), required=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--until", default=None, help="last date of the courses (default: yesterday)")
@click.option("--start-year", type=int, default=None,
              help="first year of diagnoses (default: three years before --until)")
@click.option("-o", "--output", default="-", show_default=True, help="file, or - for stdout")
def generate_cmd(patients: int, seed: int, until: str | None, start_year: int | None,
                 output: str) -> None:
    """Write a JSONL file of realistic synthetic CNO courses (import format)."""
    from datetime import date, timedelta
    from zoneinfo import ZoneInfo

    from tracker.protocol import load_protocol
    from tracker.settings import load_settings
    from tracker.synthetic import write_cohort

    end = date.fromisoformat(until) if until else date.today() - timedelta(days=1)
    first = start_year if start_year is not None else end.year - 3
    target: Any = sys.stdout.buffer if output == "-" else output
    settings = load_settings()
    zone = settings.timezone or load_protocol(settings.protocol_file).timezone
    n = write_cohort(target, patients, seed, end, start_year=first, zone=ZoneInfo(zone))
    click.echo(f"wrote {n} line(s) for {patients} patient(s)", err=True)
