"""Data entry forms in-process on SQLite and PostgreSQL: the import's validation, errors
beside their field, one record per form token, recorded_by = the logged-in user."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.web.conftest import WebHarness, csrf_of
from web.access import AccessLog


def token_of(html: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', html)
    assert found, "no form_token on the page"
    return found.group(1)


def _fill(client: TestClient, path: str) -> dict[str, str]:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return {"csrf_token": csrf_of(page.text), "form_token": token_of(page.text)}


def test_a_lab_result_is_recorded_once_by_the_logged_in_user(web: WebHarness) -> None:
    web.import_ward()
    nurse = web.client("nurse")
    form = _fill(nurse, "/patients/W-0001/lab?analyte=calcium")
    fields = {**form, "analyte": "calcium", "value": "2.35", "unit": "mmol/L",
              "occurred_at": "2016-03-01T08:30"}
    first = nurse.post("/patients/W-0001/lab", data=fields, follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == "/patients/W-0001?recorded=saved"
    again = nurse.post("/patients/W-0001/lab", data=fields, follow_redirects=False)
    assert again.headers["location"] == "/patients/W-0001?recorded=already"
    labs = [e for e in web.core.store.read_stream("W-0001") if e.type == "LabResultRecorded"
            and e.occurred_on.isoformat() == "2016-03-01"]
    assert len(labs) == 1
    assert labs[0].recorded_by == "nurse"
    assert labs[0].occurred_at.isoformat() == "2016-03-01T07:30:00+00:00"  # Madrid, +01:00
    accesses = AccessLog(web.core.store, web.clock).of_user("nurse")
    assert accesses[0].action == "record" and accesses[0].patient == "W-0001"


def test_errors_are_shown_beside_their_field_and_nothing_is_written(web: WebHarness) -> None:
    web.import_ward()
    nurse = web.client("nurse")
    before = web.core.store.count()
    form = _fill(nurse, "/patients/W-0001/lab")
    bad_unit = nurse.post("/patients/W-0001/lab", data={
        **form, "analyte": "calcium", "value": "2.35", "unit": "U/L",
        "occurred_at": "2016-03-01T08:30"})
    assert bad_unit.status_code == 400
    assert 'id="unit-error"' in bad_unit.text and 'aria-invalid="true"' in bad_unit.text
    not_number = nurse.post("/patients/W-0001/lab", data={
        **form, "analyte": "calcium", "value": "lots", "unit": "mmol/L",
        "occurred_at": "2016-03-01T08:30"})
    assert 'id="value-error"' in not_number.text and "not a number" in not_number.text
    future = nurse.post("/patients/W-0001/lab", data={
        **form, "analyte": "calcium", "value": "2.3", "unit": "mmol/L",
        "occurred_at": "2017-03-01T08:30"})
    assert future.status_code == 400 and 'id="occurred_at-error"' in future.text
    assert web.core.store.count() == before
    # the corrected form keeps its token and records once
    assert token_of(future.text) == form["form_token"]


def test_a_form_without_its_token_is_refused(web: WebHarness) -> None:
    web.import_ward()
    nurse = web.client("nurse")
    form = _fill(nurse, "/patients/W-0001/lab")
    refused = nurse.post("/patients/W-0001/lab", data={
        "csrf_token": form["csrf_token"], "analyte": "calcium", "value": "2.3",
        "unit": "mmol/L", "occurred_at": "2016-03-01T08:30"})
    assert refused.status_code == 400 and "expired" in refused.text


def test_a_visit_with_lesions_by_site_and_side(web: WebHarness) -> None:
    web.import_ward()
    clinician = web.client("clinician")
    form = _fill(clinician, "/patients/W-0002/visit")
    done = clinician.post("/patients/W-0002/visit", data={
        **form, "occurred_at": "2016-02-29", "pain": "yes", "fever": "no",
        "site_0": "clavicle", "side_0": "left", "site_1": "tibia", "weight_kg": "31,5",
        "height_cm": "140", "pain_score": "4"}, follow_redirects=False)
    assert done.status_code == 303, done.text
    visit = web.core.store.read_stream("W-0002")[-1]
    assert visit.type == "VisitRecorded"
    data = visit.data.model_dump(exclude_none=True)
    assert data["active_lesions"] == [{"site": "clavicle", "side": "left"}, {"site": "tibia"}]
    assert (data["pain"], data["swelling"], data["fever"], data["weight_kg"],
            data["pain_score"]) == (True, False, False, 31.5, 4)


def test_enrol_then_medication_start_and_stop(web: WebHarness) -> None:
    clinician = web.client("clinician")
    form = _fill(clinician, "/enrol")
    enrolled = clinician.post("/enrol", data={
        **form, "patient": "W-0100", "occurred_at": "2016-02-01", "birth_date": "2008-01-01",
        "sex": "female"}, follow_redirects=False)
    assert enrolled.status_code == 303 and enrolled.headers["location"].startswith(
        "/patients/W-0100")
    named = clinician.post("/enrol", data={
        **_fill(clinician, "/enrol"), "patient": "Garcia", "occurred_at": "2016-02-01",
        "birth_date": "2008-01-01", "sex": "female"})
    assert named.status_code == 400 and 'id="patient-error"' in named.text
    start = _fill(clinician, "/patients/W-0100/medication")
    assert clinician.post("/patients/W-0100/medication", data={
        **start, "change": "start", "course_id": "nsaid-1", "drug": "naproxen",
        "occurred_at": "2016-02-02", "reason": "pain"},
        follow_redirects=False).status_code == 303
    stop = _fill(clinician, "/patients/W-0100/medication")
    assert clinician.post("/patients/W-0100/medication", data={
        **stop, "change": "stop", "course_id": "nsaid-1", "occurred_at": "2016-02-20",
        "stop_reason": "remission"}, follow_redirects=False).status_code == 303
    bad = clinician.post("/patients/W-0100/medication", data={
        **_fill(clinician, "/patients/W-0100/medication"), "change": "start",
        "course_id": "x-1", "drug": "naproxen", "regimen": "monthly",
        "occurred_at": "2016-02-02"})
    assert bad.status_code == 400
    assert [e.type for e in web.core.store.read_stream("W-0100")] == [
        "PatientEnrolled", "MedicationStarted", "MedicationStopped"]


def test_roles_that_may_not_enter_data_are_refused(web: WebHarness) -> None:
    web.import_ward()
    for role, path in [("auditor", "/patients/W-0001/lab"), ("admin", "/enrol"),
                       ("pharmacist", "/patients/W-0001/visit"),
                       ("nurse", "/patients/W-0001/medication")]:
        client = web.client(role)
        assert client.get(path).status_code == 403, (role, path)
        token = csrf_of(client.get("/admin" if role == "admin" else "/").text)
        assert client.post(path, data={"csrf_token": token}).status_code == 403, (role, path)


def test_an_infusion_shows_mg_per_kg_and_deviations_before_saving(web: WebHarness) -> None:
    web.import_ward()
    nurse = web.client("nurse")
    before = web.core.store.count()
    form = _fill(nurse, "/patients/W-0001/infusion")
    fields = {**form, "drug": "pamidronate", "dose_mg": "45", "weight_kg": "30",
              "course_id": "pam-1", "occurred_at": "2016-03-01T09:30"}
    preview = nurse.post("/patients/W-0001/infusion", data=fields)
    assert preview.status_code == 200
    assert "1.500 mg/kg" in preview.text
    assert "would create" in preview.text and "Confirm and save" in preview.text
    assert web.core.store.count() == before  # nothing saved yet
    assert token_of(preview.text) == form["form_token"]
    saved = nurse.post("/patients/W-0001/infusion", data={**fields, "confirm": "yes"},
                       follow_redirects=False)
    assert saved.status_code == 303
    again = nurse.post("/patients/W-0001/infusion", data={**fields, "confirm": "yes"},
                       follow_redirects=False)
    assert again.headers["location"].endswith("recorded=already")
    infusions = [e for e in web.core.store.read_stream("W-0001")
                 if e.type == "InfusionAdministered"]
    assert len(infusions) == 4 and infusions[-1].recorded_by == "nurse"


def test_an_infusion_within_the_protocol_says_so(web: WebHarness) -> None:
    web.import_ward()
    nurse = web.client("nurse")
    preview = nurse.post("/patients/W-0002/infusion", data={
        **_fill(nurse, "/patients/W-0002/infusion"), "drug": "pamidronate", "dose_mg": "10",
        "weight_kg": "30", "occurred_at": "2016-03-01T09:30"})
    assert preview.status_code == 200 and "0.333 mg/kg" in preview.text
    no_time = nurse.post("/patients/W-0002/infusion", data={
        **_fill(nurse, "/patients/W-0002/infusion"), "drug": "pamidronate", "dose_mg": "10",
        "weight_kg": "30", "occurred_at": "2016-03-01"})
    assert no_time.status_code == 400 and 'id="occurred_at-error"' in no_time.text


def test_void_and_correct_show_what_changes_then_record_once(web: WebHarness) -> None:
    web.import_ward()
    clinician = web.client("clinician")
    visit = next(e for e in web.core.store.read_stream("W-0002") if e.type == "VisitRecorded")
    path = f"/patients/W-0002/entries/{visit.event_id}/void"
    form = _fill(clinician, path)
    preview = clinician.post(path, data={**form, "reason": "entered for the wrong child"})
    assert preview.status_code == 200 and "Check before saving" in preview.text
    assert "What changes" in preview.text
    saved = clinician.post(path, data={**form, "reason": "entered for the wrong child",
                                       "confirm": "yes"}, follow_redirects=False)
    assert saved.status_code == 303
    assert web.core.store.read_stream("W-0002")[-1].type == "EntryVoided"
    assert web.core.store.read_stream("W-0002")[-1].recorded_by == "clinician"
    no_reason = clinician.post(path, data={**_fill(clinician, path), "reason": ""})
    assert no_reason.status_code == 400 and 'id="reason-error"' in no_reason.text

    lab = next(e for e in web.core.store.read_stream("W-0001")
               if e.type == "LabResultRecorded")
    cpath = f"/patients/W-0001/entries/{lab.event_id}/correct"
    page = clinician.get(cpath)
    assert '"analyte"' in page.text or "&#34;analyte&#34;" in page.text
    cform = _fill(clinician, cpath)
    new = '{"analyte": "haemoglobin", "value": 11.9, "unit": "g/dL"}'
    preview = clinician.post(cpath, data={**cform, "data": new, "reason": "typo"})
    assert preview.status_code == 200 and "Confirm and save" in preview.text
    bad = clinician.post(cpath, data={**cform, "data": '{"analyte": "haemoglobin"}',
                                      "reason": "typo"})
    assert bad.status_code == 400 and 'id="data-error"' in bad.text
    assert clinician.post(cpath, data={**cform, "data": new, "reason": "typo",
                                       "confirm": "yes"},
                          follow_redirects=False).status_code == 303
    assert web.core.store.read_stream("W-0001")[-1].type == "EntryCorrected"
    assert clinician.get("/patients/W-0001/entries/not-an-id/void").status_code == 404
    nurse = web.client("nurse")
    assert nurse.get(path).status_code == 403
