"""``cno-tracker patients``, ``fhir`` and ``hl7``: hospital data in and out, with the
identity link table at the door (tracker.interop)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tracker.cli.common import State, check_by, handles_errors, pass_state
from tracker.errors import NotFound
from tracker.interop.codes import CodeMap
from tracker.interop.identity import LinkTable, link_key_from_env
from tracker.interop.ingest import Ingest, Outcome


def link_table(state: State) -> LinkTable:
    key = link_key_from_env()  # before the database: a missing key is exit 5 at once
    return LinkTable(state.app().engine, key)


def make_ingest(state: State, *, enrol: bool, by: str) -> Ingest:
    links = link_table(state)
    app = state.app()
    return Ingest(app.store, links, clock=app.clock, protocol=app.protocol, enrol=enrol,
                  recorded_by=by)


def print_outcome(what: str, outcome: Outcome) -> None:
    for line in outcome.summary(what):
        click.echo(line)


def read_input(file: Path) -> bytes:
    if str(file) == "-":
        return sys.stdin.buffer.read()
    if not file.exists():
        raise click.BadParameter(f"{file} does not exist", param_hint="FILE")
    return file.read_bytes()


@click.group("patients")
def patients_group() -> None:
    """The identity link table: hospital identifiers to pseudonymous references.

    Needs CNO_TRACKER_LINK_KEY. `patients unlink REF` is the erasure path: the clinical
    record stays, pseudonymous and no longer linkable to the hospital identifier."""


@patients_group.command("link")
@click.argument("ref")
@click.option("--system", required=True, help="the identifier's system (e.g. the MRN's URI)")
@click.option("--value", required=True, help="the identifier's value")
@pass_state
@handles_errors
def link_cmd(state: State, ref: str, system: str, value: str) -> None:
    """Link the hospital identifier (--system, --value) to the reference REF."""
    links = link_table(state)
    try:
        from events.vocabulary.common import check_patient_ref

        check_patient_ref(ref)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="REF") from None
    added = links.link(ref, [(system, value)], state.app().clock.now())
    click.echo(f"linked one identifier to {ref}" if added else f"already linked to {ref}")


@patients_group.command("find")
@click.option("--system", required=True)
@click.option("--value", required=True)
@pass_state
@handles_errors
def find_cmd(state: State, system: str, value: str) -> None:
    """Print the reference linked to the identifier (exit 4 when there is none)."""
    ref = link_table(state).find(system, value)
    if ref is None:
        raise NotFound("no patient is linked to that identifier")
    click.echo(ref)


@patients_group.command("unlink")
@click.argument("ref")
@pass_state
@handles_errors
def unlink_cmd(state: State, ref: str) -> None:
    """Erase every link of REF (the erasure path): its record stays pseudonymous."""
    n = link_table(state).unlink(ref)
    if n == 0:
        raise NotFound(f"{ref} has no links")
    click.echo(f"erased {n} link(s) of {ref}; its record can no longer be linked to them")


@click.group("fhir")
def fhir_group() -> None:
    """FHIR R4 in and out (validated with the fhir.resources R4B models)."""


@fhir_group.command("import")
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=Path))
@click.option("--enrol", is_flag=True,
              help="enrol patients seen for the first time under a fresh random reference")
@click.option("--strict", is_flag=True, help="a skipped resource is an error")
@click.option("--by", callback=check_by, default="fhir-import", show_default=True,
              help="recorded_by")
@pass_state
@handles_errors
def fhir_import_cmd(state: State, file: Path, enrol: bool, strict: bool, by: str) -> None:
    """Import a FHIR Bundle (transaction, batch, collection) or resource: all or nothing."""
    from tracker.interop.fhir_in import import_fhir

    ingest = make_ingest(state, enrol=enrol, by=by)
    print_outcome(str(file), import_fhir(read_input(file), ingest, strict=strict))


def _code_map(path: Path | None) -> CodeMap:
    from tracker.interop.codes import EMPTY_CODE_MAP, load_code_map

    return load_code_map(path) if path is not None else EMPTY_CODE_MAP


@click.group("hl7")
def hl7_group() -> None:
    """HL7 v2 ORU^R01 in (2.2 to 2.5.1): from a file, or an MLLP listener."""


_code_map_option = click.option(
    "--code-map", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
    envvar="CNO_TRACKER_HL7_CODE_MAP",
    help="TOML of [[code]] tables (system, code, analyte) for local lab codes "
         "(or CNO_TRACKER_HL7_CODE_MAP)")


@hl7_group.command("import")
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=Path))
@click.option("--enrol", is_flag=True,
              help="enrol patients seen for the first time under a fresh random reference")
@_code_map_option
@click.option("--encoding", default=None,
              help="character set when MSH-18 is empty (e.g. ISO-8859-1); default UTF-8")
@click.option("--by", callback=check_by, default="hl7-import", show_default=True,
              help="recorded_by")
@pass_state
@handles_errors
def hl7_import_cmd(state: State, file: Path, enrol: bool, code_map: Path | None,
                   encoding: str | None, by: str) -> None:
    """Import the ORU^R01 messages of FILE ('-' for stdin): all or nothing."""
    from tracker.interop.hl7_in import import_file

    if encoding is not None:
        _check_encoding(encoding)
    codes = _code_map(code_map)
    ingest = make_ingest(state, enrol=enrol, by=by)
    print_outcome(str(file), import_file(read_input(file), ingest, code_map=codes,
                                         encoding=encoding))


def _check_encoding(name: str) -> None:
    import codecs

    try:
        codecs.lookup(name)
    except LookupError:
        raise click.BadParameter(f"unknown character set {name!r}", param_hint="--encoding") \
            from None


@hl7_group.command("listen")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=2575, show_default=True,
              envvar="CNO_TRACKER_HL7_PORT", help="(or CNO_TRACKER_HL7_PORT)")
@click.option("--enrol", is_flag=True,
              help="enrol patients seen for the first time under a fresh random reference")
@_code_map_option
@click.option("--encoding", default=None, help="character set when MSH-18 is empty")
@click.option("--idle-timeout", type=click.FloatRange(0.1), default=60.0, show_default=True,
              help="seconds a connection may stay silent (or in mid-frame)")
@click.option("--by", callback=check_by, default="hl7-listener", show_default=True,
              help="recorded_by")
@pass_state
@handles_errors
def hl7_listen_cmd(state: State, host: str, port: int, enrol: bool, code_map: Path | None,
                   encoding: str | None, idle_timeout: float, by: str) -> None:
    """Receive ORU^R01 over MLLP and acknowledge each (AA, AE with ERR, AR)."""
    import functools
    import logging

    from tracker.interop.hl7_in import receive_many
    from tracker.interop.mllp import run_listener

    if encoding is not None:
        _check_encoding(encoding)
    codes = _code_map(code_map)
    ingest = make_ingest(state, enrol=enrol, by=by)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    handle = functools.partial(receive_many, ingest=ingest, code_map=codes, encoding=encoding)
    run_listener(handle, host, port, idle_timeout=idle_timeout)


@fhir_group.command("export")
@click.argument("ref")
@click.option("--at", default=None, help="clinical date to evaluate (default today)")
@click.option("--known-at", default=None,
              help="only what was recorded by then: datetime with offset, or a local date")
@click.option("--include-birth-date", is_flag=True,
              help="put the birth date in the Patient (left out by default)")
@click.option("-o", "--output", default="-", show_default=True, help="file, or - for stdout")
@pass_state
@handles_errors
def fhir_export_cmd(state: State, ref: str, at: str | None, known_at: str | None,
                    include_birth_date: bool, output: str) -> None:
    """Write REF's record as a FHIR R4 collection Bundle (JSON)."""
    import orjson

    from tracker.cli.clinical import evaluation_for
    from tracker.interop.fhir_out import export_bundle

    ev = evaluation_for(state, ref, at, known_at)
    doc = orjson.dumps(export_bundle(ev, include_birth_date=include_birth_date,
                                     now=state.app().clock.now()), option=orjson.OPT_INDENT_2)
    if output == "-":
        click.echo(doc.decode())
    else:
        Path(output).write_bytes(doc + b"\n")
        click.echo(f"wrote {output}", err=True)
