"""Everyday commands around the record: ``enroll`` and ``info``, and the lookup every
patient command shares (an unknown patient is "not found", exit 4, naming the database)."""

from __future__ import annotations

from typing import get_args

import click
from sqlalchemy.engine import make_url

from events.store import EventStore
from events.vocabulary.patient import PatientEnrolled
from tracker import db
from tracker.bootstrap import App
from tracker.cli.common import State, check_by, handles_errors, parse_date, pass_state
from tracker.errors import NotFound
from tracker.readmodel import is_patient_stream
from tracker.version import package_version

SEXES = get_args(PatientEnrolled.model_fields["sex"].annotation)


def database_label(url: str) -> str:
    """The database URL as a person may see it: the password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is refused elsewhere; never echo it whole
        return "<unparsable database URL>"


def no_patient(app: App, patient: str) -> NotFound:
    """The error of a command about a patient the store has never enrolled (exit 4)."""
    return NotFound(f"no patient {patient!r} in {database_label(app.settings.database_url)}"
                    " (enroll them first: cno-tracker enroll)")


def require_patient(app: App, patient: str) -> None:
    if app.store.stream_version(patient) == 0:
        raise no_patient(app, patient)


@click.command("enroll")
@click.argument("patient")
@click.option("--born", required=True, help="birth date (YYYY-MM-DD)")
@click.option("--sex", required=True, type=click.Choice(SEXES))
@click.option("--onset", default=None, help="date symptoms began (YYYY-MM-DD)")
@click.option("--first-consultation", default=None,
              help="date of the first consultation (YYYY-MM-DD; default: --at)")
@click.option("--at", "when", default=None,
              help="date of enrolment (default: the first consultation, else today)")
@click.option("--by", callback=check_by, default=None, help="who is recording it")
@click.option("--key", default=None, help="idempotency key (re-running changes nothing)")
@pass_state
@handles_errors
def enroll_cmd(state: State, patient: str, born: str, sex: str, onset: str | None,
               first_consultation: str | None, when: str | None, by: str | None,
               key: str | None) -> None:
    """Enrol PATIENT (a pseudonymous reference, never a name): the first event of a record."""
    from tracker.cli.records import record_one

    for value, param in ((born, "--born"), (onset, "--onset"),
                         (first_consultation, "--first-consultation")):
        parse_date(value, param)
    app = state.app()
    today = app.clock.now().astimezone(app.protocol.zone).date().isoformat()
    on = when or first_consultation or today
    data = {"birth_date": born, "sex": sex}
    if onset:
        data["symptom_onset"] = onset
    data["first_consultation"] = first_consultation or on[:10]
    record_one(state, "PatientEnrolled", patient, on, data, by=by, key=key)


def counts(store: EventStore) -> tuple[int, int]:
    """(events, patients) in the store; alert streams are not patients."""
    return store.count(), sum(1 for s in store.streams() if is_patient_stream(s))


@click.command("info")
@pass_state
@handles_errors
def info_cmd(state: State) -> None:
    """The database in use, its schema revision, what it holds, the time zone and the
    protocol in force."""
    app = state.app()
    current = db.current_revisions(app.engine)
    heads = db.head_revisions(app.settings.database_url)
    schema = ", ".join(sorted(current)) or "none"
    schema += " (up to date)" if current == heads else \
        f" (behind {', '.join(sorted(heads))}: run cno-tracker db upgrade)"
    n_events, n_patients = counts(app.store)
    rows = [("version", package_version()),
            ("database", database_label(app.settings.database_url)),
            ("schema", schema),
            ("events", str(n_events)),
            ("patients", str(n_patients)),
            ("time zone", app.protocol.timezone),
            ("protocol", app.protocol.fingerprint
             + (f" ({app.settings.protocol_file})" if app.settings.protocol_file
                else " (the seed protocol)")),
            ("environment", app.settings.environment)]
    for label, value in rows:
        click.echo(f"{label:<12} {value}")
