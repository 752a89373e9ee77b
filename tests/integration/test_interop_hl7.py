"""``cno-tracker hl7 import``: the European lab (ISO-8859-1, CR, local codes, a pending
value, a correction), LOINC in the alternate triplet, acks, and no PHI. Both databases."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.support.interop import DATA, PHI, cli, dump, events, ingest_for, messages
from tracker.interop import hl7_in
from tracker.interop.codes import load_code_map

CODES = str(DATA / "eu-lab-codes.toml")
EU = str(DATA / "eu-lab-iso8859.hl7")


def labs(db_url: str) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {}
    for e in events(db_url):
        out.setdefault(e.type, []).append(e)  # type: ignore[attr-defined]
    return out


def test_european_lab_file_with_local_codes(db_url: str) -> None:
    r = cli(db_url, "hl7", "import", EU, "--code-map", CODES, "--enrol")
    assert r.exit_code == 0, r.output
    assert "wrote 4 event(s) for 1 patient(s)" in r.output
    for line in ("OBX GLU (code not mapped)", "OBX MG (value not numeric)",
                 "OBX PHOS (result status P)", "result (superseded later in the same batch)"):
        assert f"skipped 1: {line}" in r.output
    got = {e.data.analyte: e.data for e in labs(db_url)["LabResultRecorded"]}  # type: ignore[attr-defined]
    assert got["calcium"].value == 2.35          # the correction in the same file wins
    assert got["creatinine"].unit == "umol/L"    # µmol/l
    assert got["phosphate"].value == 1.52
    enrol = labs(db_url)["PatientEnrolled"][0].data  # type: ignore[attr-defined]
    assert (str(enrol.birth_date), enrol.sex) == ("2013-04-17", "male")
    r = cli(db_url, "patients", "find", "--system", "UKK", "--value", "4711-0815")
    assert r.exit_code == 0
    r = cli(db_url, "patients", "find", "--system", "UKK", "--value", "12345678901")
    assert r.exit_code == 4   # the national id (NI) is never linked


def test_collection_time_is_obr7_in_local_time(db_url: str) -> None:
    assert cli(db_url, "hl7", "import", EU, "--code-map", CODES, "--enrol").exit_code == 0
    e = next(e for e in labs(db_url)["LabResultRecorded"])
    assert e.occurred_at.isoformat() == "2025-03-03T07:15:00+00:00"  # type: ignore[attr-defined]


def test_correction_and_void_in_later_messages(db_url: str, tmp_path: Path) -> None:
    first, second = messages("eu-lab-iso8859.hl7")
    (tmp_path / "1.hl7").write_bytes(first)
    (tmp_path / "2.hl7").write_bytes(second)
    assert cli(db_url, "hl7", "import", str(tmp_path / "1.hl7"), "--code-map", CODES,
               "--enrol").exit_code == 0
    r = cli(db_url, "hl7", "import", str(tmp_path / "2.hl7"), "--code-map", CODES)
    assert r.exit_code == 0, r.output
    assert "wrote 2 event(s) for 1 patient(s) (1 correction(s), 0 void(s))" in r.output
    corrected = labs(db_url)["EntryCorrected"][0].data  # type: ignore[attr-defined]
    assert corrected.data["value"] == 2.35
    void = second.replace(b"|C|||", b"|D|||").replace(b"UKK000102", b"UKK000103")
    (tmp_path / "3.hl7").write_bytes(void)
    r = cli(db_url, "hl7", "import", str(tmp_path / "3.hl7"), "--code-map", CODES)
    assert r.exit_code == 0, r.output
    assert "(0 correction(s), 1 void(s))" in r.output


def test_charset_from_msh18_or_the_encoding_option(db_url: str) -> None:
    plain = str(DATA / "eu-lab-no-charset.hl7")
    r = cli(db_url, "hl7", "import", plain, "--code-map", CODES, "--enrol")
    assert r.exit_code == 2
    assert "message #1: MSH-18: the message is not valid utf-8; give --encoding" in r.output
    r = cli(db_url, "hl7", "import", plain, "--code-map", CODES, "--enrol",
            "--encoding", "ISO-8859-1")
    assert r.exit_code == 0, r.output
    r = cli(db_url, "hl7", "import", plain, "--encoding", "klingon")
    assert r.exit_code == 2 and "unknown character set" in r.output


def test_loinc_in_the_alternate_triplet_with_lf_separators(db_url: str) -> None:
    r = cli(db_url, "hl7", "import", str(DATA / "loinc-alternate.hl7"), "--enrol")
    assert r.exit_code == 0, r.output
    assert "wrote 3 event(s)" in r.output and "skipped 1: OBX 1130 (code not mapped)" in r.output
    got = {e.data.analyte: e.data for e in labs(db_url)["LabResultRecorded"]}  # type: ignore[attr-defined]
    assert (got["calcium"].value, got["calcium"].unit, got["calcium"].loinc) == \
        (9.4, "mg/dL", "17861-6")   # MG/DL
    r = cli(db_url, "patients", "find", "--system", "USSSA", "--value", "123-45-6789")
    assert r.exit_code == 4


def test_unlinked_patients_without_enrol_are_skipped(db_url: str) -> None:
    r = cli(db_url, "hl7", "import", EU, "--code-map", CODES)
    assert r.exit_code == 0
    assert "wrote 0 event(s)" in r.output and "patient not linked" in r.output
    assert events(db_url) == []


def test_code_map_errors_are_configuration_errors(db_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "codes.toml"
    bad.write_text('[[code]]\nsystem = "L"\ncode = "CA"\nanalyte = "calcum"\n')
    r = cli(db_url, "hl7", "import", EU, "--code-map", str(bad))
    assert r.exit_code == 5 and "[[code]] #1: analyte 'calcum'" in r.output
    bad.write_text("[[code]\n")
    assert cli(db_url, "hl7", "import", EU, "--code-map", str(bad)).exit_code == 5


def test_receive_acks(db_url: str) -> None:
    ingest, app = ingest_for(db_url)
    try:
        code_map = load_code_map(Path(CODES))
        first, _ = messages("eu-lab-iso8859.hl7")
        got = hl7_in.receive(first, ingest, code_map=code_map)
        assert got.code == "AA" and b"MSA|AA|UKK000101" in got.ack
        again = hl7_in.receive(first, ingest, code_map=code_map)
        assert again.code == "AA" and again.outcome is not None
        assert again.outcome.written == 0 and again.outcome.duplicates == 2
        bad = first.replace(b"|2.41|", b"|24.1|").replace(b"UKK000101", b"UKK000109")
        refused = hl7_in.receive(bad, ingest, code_map=code_map)
        assert refused.code == "AE"
        assert b"ERR||OBX^1^5|207^Application internal error^HL70357|E" in refused.ack
        assert b"implausible" in refused.ack
        junk = hl7_in.receive(b"hello there", ingest)
        assert junk.code == "AR" and b"MSA|AR|" in junk.ack
        old = first.replace(b"2.5.1", b"2.1")
        assert hl7_in.receive(old, ingest).code == "AR"
        adt = first.replace(b"ORU^R01", b"ADT^A01")
        expected = b"MSA|AR|UKK000101|MSH-9: ADT\\S\\A01 is not ORU\\S\\R01"
        assert expected in hl7_in.receive(adt, ingest).ack
        all_skipped = first.replace(b"^L|", b"^X|")
        skipped = hl7_in.receive(all_skipped.replace(b"UKK000101", b"UKK000110"), ingest)
        assert skipped.code == "AA"   # nothing of ours in it is still accepted
    finally:
        app.close()


def test_no_phi_in_database_output_or_logs(db_url: str, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    outputs = [cli(db_url, "hl7", "import", EU, "--code-map", CODES).output,
               cli(db_url, "hl7", "import", EU, "--code-map", CODES, "--enrol").output,
               cli(db_url, "hl7", "import", str(DATA / "loinc-alternate.hl7"),
                   "--enrol").output,
               cli(db_url, "hl7", "import", str(DATA / "eu-lab-no-charset.hl7")).output]
    ingest, app = ingest_for(db_url)
    try:
        for m in messages("eu-lab-iso8859.hl7"):
            got = hl7_in.receive(m.replace(b"|2.41|", b"|99|"), ingest)
            outputs += [got.log, got.ack.decode()]
    finally:
        app.close()
    text = "\n".join([*outputs, caplog.text, dump(db_url)])
    if db_url.startswith("sqlite:///"):
        text += Path(db_url.removeprefix("sqlite:///")).read_bytes().decode("latin-1")
    for phi in PHI:
        assert phi not in text, phi


def _oru_for(n: int, patient: int) -> bytes:
    stamp = "20250303081500+0100"
    return "\r".join([
        f"MSH|^~\\&|LAB|HOSP|CNO|CNO|{stamp}||ORU^R01|G{n:08d}|P|2.5.1",
        f"PID|1||H{patient:06d}^^^HOSP^MR||Doe^Jane||20120501|F",
        f"OBR|1|P{n}|F{n}|PANEL^Panel^L|||{stamp}",
        "OBX|1|NM|17861-6^Calcium^LN||9.3|mg/dL|||||F", ""]).encode()


def test_a_group_commit_reads_each_thing_once(db_url: str) -> None:
    """Four messages of enrolled patients in one append (the listener's group commit):
    links with stream versions in one statement, the idempotency keys in one, the heads
    inside the write transaction; nothing read twice (the rows go out pipelined)."""
    from sqlalchemy import event

    from tracker.interop.hl7_in import receive, receive_many

    ingest, app = ingest_for(db_url)
    try:
        for p in range(4):
            assert receive(_oru_for(100 + p, p), ingest).code == "AA"
        statements: list[str] = []
        event.listen(app.engine, "before_cursor_execute",
                     lambda *args: statements.append(args[2]))
        done = receive_many([_oru_for(p, p) for p in range(4)], ingest)
        assert [r.code for r in done] == ["AA"] * 4
        assert "stored with 3 other(s)" in done[0].log
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert len(reads) == 3, reads
    finally:
        app.close()
