"""``cno-tracker fhir import``: the US-Core-style bundle, mapping, skips, idempotency,
versions, all-or-nothing errors, and no PHI stored, logged or printed. Both databases."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from tests.support.interop import DATA, PHI, bundle, cli, dump, events, write

BUNDLE = str(DATA / "us-core-transaction.json")


def test_unlinked_patients_are_counted_never_stored(db_url: str) -> None:
    r = cli(db_url, "fhir", "import", BUNDLE)
    assert r.exit_code == 0, r.output
    assert "wrote 0 event(s)" in r.output
    assert "skipped 7: Patient (patient not linked" in r.output
    assert events(db_url) == []


def test_enrol_maps_the_bundle(db_url: str) -> None:
    r = cli(db_url, "fhir", "import", BUNDLE, "--enrol")
    assert r.exit_code == 0, r.output
    assert "wrote 7 event(s) for 1 patient(s)" in r.output
    ref = r.output.split("enrolled ")[1].split()[0]
    got = {(e.type, getattr(e.data, "analyte", None)): e for e in events(db_url)}  # type: ignore[attr-defined]
    enrol = got[("PatientEnrolled", None)]
    assert enrol.stream == ref
    assert str(enrol.data.birth_date) == "2013-04-17" and enrol.data.sex == "female"
    calcium = got[("LabResultRecorded", "calcium")].data
    assert (calcium.value, calcium.unit, calcium.loinc) == (9.2, "mg/dL", "17861-6")
    assert calcium.canonical_value == pytest.approx(9.2 / 4.008, abs=1e-5)
    assert got[("LabResultRecorded", "creatinine")].data.canonical_unit == "umol/L"
    infusion = got[("InfusionAdministered", None)].data
    assert (infusion.drug, infusion.dose_mg, infusion.weight_kg) == ("pamidronate", 15, 31.4)
    assert got[("MedicationStarted", None)].data.drug == "pamidronate"
    assert got[("ComorbidityRecorded", None)].data.condition == "ibd"
    for line in ("Observation 2345-7 (code not mapped)", "Observation 1989-3 (status preliminary)",
                 "Encounter (resource type not mapped)", "Condition 195967001 (code not mapped)"):
        assert f"skipped 1: {line}" in r.output
    r = cli(db_url, "patients", "find", "--system", "http://hospital.example.org/mrn",
            "--value", "MRN-448812")
    assert r.output.strip() == ref
    # the SSN is a national id: never linked
    r = cli(db_url, "patients", "find", "--system", "http://hl7.org/fhir/sid/us-ssn",
            "--value", "123-45-6789")
    assert r.exit_code == 4


def test_same_bundle_again_is_duplicates_and_versions_correct_or_void(
        db_url: str, tmp_path: Path) -> None:
    assert cli(db_url, "fhir", "import", BUNDLE, "--enrol").exit_code == 0
    r = cli(db_url, "fhir", "import", BUNDLE, "--enrol")
    assert r.exit_code == 0 and "wrote 0 event(s)" in r.output
    assert "skipped 6 duplicate(s)" in r.output and "(new reference)" not in r.output
    doc = bundle()
    calcium = doc["entry"][3]["resource"]
    calcium["status"] = "amended"
    calcium["meta"]["versionId"] = "2"
    calcium["valueQuantity"]["value"] = 9.8
    creatinine = doc["entry"][4]["resource"]
    creatinine["status"] = "entered-in-error"
    r = cli(db_url, "fhir", "import", write(tmp_path, doc))
    assert r.exit_code == 0, r.output
    assert "wrote 2 event(s) for 1 patient(s) (1 correction(s), 1 void(s))" in r.output
    again = cli(db_url, "fhir", "import", write(tmp_path, doc))
    assert "wrote 0 event(s)" in again.output
    kinds = [e.type for e in events(db_url)]  # type: ignore[attr-defined]
    assert kinds.count("EntryCorrected") == 1 and kinds.count("EntryVoided") == 1
    corrected = next(e for e in events(db_url) if e.type == "EntryCorrected")  # type: ignore[attr-defined]
    assert corrected.data.data["value"] == 9.8


def test_an_invalid_entry_refuses_the_whole_bundle(db_url: str, tmp_path: Path) -> None:
    doc = bundle()
    doc["entry"][4]["resource"]["valueQuantity"]["value"] = "lots"
    doc["entry"][5]["resource"]["valueQuantity"]["value"] = 400  # mg/dL phosphate
    r = cli(db_url, "fhir", "import", write(tmp_path, doc), "--enrol")
    assert r.exit_code == 2
    assert "entry 4 Observation/lab-2 valueQuantity.value" in r.output
    assert "nothing was written" in r.output
    assert "Traceback" not in r.output and "lots" not in r.output
    doc = bundle()
    doc["entry"][5]["resource"]["valueQuantity"]["value"] = 400
    r = cli(db_url, "fhir", "import", write(tmp_path, doc), "--enrol")
    assert r.exit_code == 2
    assert "entry 5 Observation/lab-3 valueQuantity.value: 400 mg/dL is implausible" in r.output
    assert events(db_url) == []
    # the link made for the refused bundle was undone too
    r = cli(db_url, "patients", "find", "--system", "http://hospital.example.org/mrn",
            "--value", "MRN-448812")
    assert r.exit_code == 4


def test_infusion_without_any_weight_names_the_entry(db_url: str, tmp_path: Path) -> None:
    doc = bundle()
    del doc["entry"][8]  # the body weight
    r = cli(db_url, "fhir", "import", write(tmp_path, doc), "--enrol")
    assert r.exit_code == 2
    assert "entry 9 MedicationAdministration/ma-1 (body weight): no body-weight" in r.output


def test_strict_makes_skips_errors(db_url: str) -> None:
    r = cli(db_url, "fhir", "import", BUNDLE, "--enrol", "--strict")
    assert r.exit_code == 2
    assert "Encounter: skipped: resource type not mapped (--strict)" in r.output
    assert events(db_url) == []


def test_single_resource_and_stdin(db_url: str) -> None:
    assert cli(db_url, "fhir", "import", BUNDLE, "--enrol").exit_code == 0
    obs = bundle()["entry"][3]["resource"]
    obs["id"] = "lab-99"
    obs["subject"] = {"identifier": {"system": "http://hospital.example.org/mrn",
                                     "value": "MRN-448812"}}
    r = cli(db_url, "fhir", "import", "-", stdin=orjson.dumps(obs))
    assert r.exit_code == 0, r.output
    assert "wrote 1 event(s) for 1 patient(s)" in r.output


def test_bad_documents(db_url: str, tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text("{not json")
    r = cli(db_url, "fhir", "import", str(p))
    assert r.exit_code == 2 and "not valid JSON" in r.output
    r = cli(db_url, "fhir", "import", write(tmp_path, {"resourceType": "Bundle",
                                                     "type": "history"}))
    assert r.exit_code == 2 and "Bundle.type" in r.output
    r = cli(db_url, "fhir", "import", write(tmp_path, {"resourceType": "Bundle",
                                                     "type": "batch", "entry": [
                                                         {"resource": {"resourceType": "Nope"}}]}))
    assert r.exit_code == 2 and "entry 0 resourceType: unknown resource type" in r.output
    assert "Nope" not in r.output


def test_no_phi_in_database_output_or_logs(db_url: str, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    outputs = [cli(db_url, "fhir", "import", BUNDLE).output,
               cli(db_url, "fhir", "import", BUNDLE, "--enrol").output,
               cli(db_url, "fhir", "import", BUNDLE, "--enrol").output]
    doc = bundle()
    doc["entry"][3]["resource"]["valueQuantity"]["value"] = "x"
    outputs.append(cli(db_url, "fhir", "import", write(tmp_path, doc)).output)
    text = "\n".join([*outputs, caplog.text, dump(db_url)])
    if db_url.startswith("sqlite:///"):
        text += Path(db_url.removeprefix("sqlite:///")).read_bytes().decode("latin-1")
    for phi in PHI:
        assert phi not in text, phi
