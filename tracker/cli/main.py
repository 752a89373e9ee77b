"""``cno-tracker``: the entry point. Commands live in small modules beside this one and
are imported when they run (see lazy.py): ``--help`` loads click and this table only."""

from __future__ import annotations

import click

from tracker.cli.lazy import Lazy, LazyGroup

#: name -> where the command lives, its one-line help (checked by tests/unit/test_cli_lazy.py)
COMMANDS: dict[str, Lazy] = {
    "alerts": Lazy("alerts.cli:alerts_group",
                   "Alerts raised by the worker: list and acknowledge."),
    "chart": Lazy("tracker.cli.reports:chart_cmd",
                  "Draw PATIENT's course: disease state, treatment ladder, pamidronate "
                  "against the yearly cap, the labs that drive rules and the monitoring "
                  "items, on one time axis."),
    "cohort-report": Lazy("tracker.cli.reports:cohort_report_cmd",
                          "The cohort table of the seed paper (Table 4) from the record, with "
                          "the seed's inclusion criteria: Jansson confirmed, under MAX-AGE at "
                          "diagnosis, diagnosed between --from and --to; counts of who was "
                          "excluded and why."),
    "db": Lazy("tracker.cli.database:db_group", "Database schema."),
    "due": Lazy("tracker.cli.clinical:due_cmd",
                "The worklist across patients: due soon, due and overdue, by date."),
    "enroll": Lazy("tracker.cli.everyday:enroll_cmd",
                   "Enrol PATIENT (a pseudonymous reference, never a name): the first event "
                   "of a record."),
    "explain": Lazy("tracker.cli.clinical:explain_cmd",
                    "Why PATIENT's ITEM holds: the rule in words and the events it rests on."),
    "fhir": Lazy("tracker.cli.interop:fhir_group",
                 "FHIR R4 in and out (validated with the fhir.resources R4B models)."),
    "generate-cohort": Lazy("tracker.cli.records:generate_cmd",
                            "Write a JSONL file of realistic synthetic CNO courses (import "
                            "format)."),
    "hl7": Lazy("tracker.cli.interop:hl7_group",
                "HL7 v2 ORU^R01 in (2.2 to 2.5.1): from a file, or an MLLP listener."),
    "import": Lazy("tracker.cli.records:import_cmd",
                   "Import events from a JSON Lines FILE ('-' for standard input): all or "
                   "nothing."),
    "info": Lazy("tracker.cli.everyday:info_cmd",
                 "The database in use, its schema revision, what it holds, the time zone "
                 "and the protocol in force."),
    "infusion": Lazy("tracker.cli.records:infusion_cmd",
                     "Record an infusion given to PATIENT, then print the protocol deviations "
                     "this dose creates (e.g. above 60 mg, above 1 mg/kg, over the yearly "
                     "cap)."),
    "lab": Lazy("tracker.cli.records:lab_cmd",
                "Record a lab result: PATIENT ANALYTE VALUE UNIT (--at is the collection "
                "time)."),
    "patients": Lazy("tracker.cli.interop:patients_group",
                     "The identity link table: hospital identifiers to pseudonymous "
                     "references."),
    "projections": Lazy("tracker.cli.clinical:projections_group",
                        "The read model kept for the worker."),
    "record": Lazy("tracker.cli.records:record_cmd",
                   "Record one event of TYPE for PATIENT (the same validation as import)."),
    "seal": Lazy("tracker.cli.audit:seal_cmd",
                 "Sign the state of the whole log (HMAC-SHA256 under CNO_TRACKER_SEAL_KEY) "
                 "and append the seal; refused (exit 6) when the log no longer matches the "
                 "latest seal."),
    "status": Lazy("tracker.cli.clinical:status_cmd",
                   "The status of PATIENT: disease course, diagnosis, treatment, "
                   "pamidronate, monitoring."),
    "timeline": Lazy("tracker.cli.audit:timeline_cmd",
                     "Every event of PATIENT in clinical order, with void and correction "
                     "marks."),
    "users": Lazy("tracker.cli.users:users_group",
                  "Staff accounts of the web application (roles: clinician, nurse, "
                  "pharmacist, auditor, admin, integration)."),
    "verify": Lazy("tracker.cli.audit:verify_cmd",
                   "Recompute every stream's hash chain, check the append-only triggers and "
                   "check the log against the latest seal (or --seal FILE); exit 6 naming "
                   "whatever differs."),
    "visit": Lazy("tracker.cli.records:visit_cmd", "Record a clinic visit for PATIENT."),
    "web": Lazy("web.cli:web_cmd",
                "Serve the staff web application (ward list, patients, alerts, data entry, "
                "audit)."),
    "worker": Lazy("alerts.cli:worker_cmd",
                   "Raise, route, send and escalate alerts (runs until SIGTERM unless "
                   "--once)."),
}


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: the installed version, looked up only when asked (reading the
    package metadata costs every other command's start-up)."""
    if not value or ctx.resilient_parsing:
        return
    from tracker.version import package_version

    click.echo(f"cno-tracker, version {package_version()}")
    ctx.exit()


@click.group(cls=LazyGroup, lazy=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_show_version, help="Show the version and exit.")
@click.option("--debug", is_flag=True,
              help="also print an unexpected error's traceback on the terminal")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """CNO Tracker: treatment courses, monitoring and alerts for children with CNO/CRMO."""
    from tracker.cli.common import State

    ctx.meta["cno_tracker.debug"] = debug
    state = ctx.ensure_object(State)
    ctx.call_on_close(state.close)


def main() -> None:
    cli(prog_name="cno-tracker")


if __name__ == "__main__":
    main()
