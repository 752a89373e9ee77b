"""Reading for audit: ``timeline`` and ``verify``."""

from __future__ import annotations

from pathlib import Path

import click

from tracker.cli.common import (
    State,
    check_ref,
    emit_json,
    handles_errors,
    parse_instant,
    pass_state,
)
from tracker.cli.everyday import no_patient
from tracker.errors import ConfigurationError
from tracker.sealing import (
    LogNoLongerSealed,
    check_seal,
    latest_seal,
    missing_protections,
    seal_log,
)
from tracker.seals import Seal, SealFormatError, SealKeys, parse_seal
from tracker.timeline import describe, timeline


@click.command("timeline")
@click.argument("patient", callback=check_ref)
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


TAMPERING = 6


def _keys(state: State) -> SealKeys:
    return state.app().settings.seal_keys()


def _seal_findings(state: State, seal_file: Path | None) -> tuple[list[str], list[str]]:
    """(problems, what could not be checked) of the external or the latest seal."""
    app = state.app()
    seal: Seal | None
    if seal_file is not None:
        label = f"seal {seal_file}"
        try:
            seal = parse_seal(seal_file.read_bytes())
        except SealFormatError as exc:
            raise click.BadParameter(f"{seal_file}: {exc}", param_hint="--seal") from None
    else:
        try:
            found = latest_seal(app.store)
        except SealFormatError as exc:
            return [f"the latest seal in the database is unreadable: {exc}"], []
        if found is None:
            return [], ["deleted streams, deleted tail events and consistent rewrites: "
                        "there is no seal yet (run `cno-tracker seal`)"]
        label = f"seal #{found[0]}"
        seal = found[1]
    check = check_seal(app.store, seal, _keys(state))
    label += f" of {seal.sealed_at.isoformat()}"
    return ([f"{label}: {p}" for p in check.problems],
            [f"{label}: {u}" for u in check.unchecked])


@click.command("verify")
@click.option("--seal", "seal_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="check this seal (written by `seal -o`) instead of the latest stored one")
@pass_state
@handles_errors
def verify_cmd(state: State, seal_file: Path | None) -> None:
    """Recompute every stream's hash chain, check the append-only triggers and check the
    log against the latest seal (or --seal FILE); exit 6 naming whatever differs."""
    app = state.app()
    breaks = app.store.verify()
    problems = [f"TAMPERED {b}" for b in breaks]
    problems += [f"UNPROTECTED {p}" for p in missing_protections(app.store)]
    sealed, unchecked = _seal_findings(state, seal_file)
    problems += [f"TAMPERED {p}" for p in sealed]
    for note in unchecked:
        click.echo(f"not checked: {note}", err=True)
    if problems:
        for line in problems:
            click.echo(line, err=True)
        raise SystemExit(TAMPERING)
    seal_note = "" if unchecked else ", the seal matches"
    click.echo(f"ok: {app.store.count()} event(s), every hash chain intact, "
               f"append-only triggers in place{seal_note}")


@click.command("seal")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="also write the seal to this new file (keep it where the database's "
                   "owner cannot reach: WORM storage, another host)")
@pass_state
@handles_errors
def seal_cmd(state: State, output: Path | None) -> None:
    """Sign the state of the whole log (HMAC-SHA256 under CNO_TRACKER_SEAL_KEY) and append
    the seal; refused (exit 6) when the log no longer matches the latest seal."""
    app = state.app()
    keys = _keys(state)
    if keys.signing_id is None:
        raise ConfigurationError("no seal key: set CNO_TRACKER_SEAL_KEY=ID:SECRET "
                                 "(at least 16 characters of secret)")
    if output is not None and not output.parent.is_dir():
        raise click.BadParameter(f"{output}: the folder {output.parent} does not exist",
                                 param_hint="--output")
    if output is not None and output.exists():
        raise click.BadParameter(f"{output} exists: a seal never overwrites another",
                                 param_hint="--output")
    try:
        seal_id, seal = seal_log(app.store, keys, app.clock)
    except (LogNoLongerSealed, SealFormatError) as exc:
        for line in getattr(exc, "problems", [str(exc)]):
            click.echo(f"TAMPERED {line}", err=True)
        click.echo("error: the log no longer matches the latest seal; not sealing over it "
                   "(run `cno-tracker verify`)", err=True)
        raise SystemExit(TAMPERING) from None
    if output is not None:
        with output.open("xb") as fh:
            fh.write(seal.to_json() + b"\n")
    where = f" and {output}" if output is not None else ""
    click.echo(f"sealed #{seal_id}: {seal.state.event_count} event(s) in "
               f"{len(seal.state.heads)} stream(s) up to position {seal.state.last_position}, "
               f"key {seal.key_id!r}; written to the seals table{where}")
