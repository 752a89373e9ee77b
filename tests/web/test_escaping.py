"""Everything is escaped: ``<script>`` submitted in every free-text field (notes, reasons,
labels, the login name, refused values echoed back in a form) never comes back as markup
on any page that shows it, on SQLite and PostgreSQL."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.web.conftest import WebHarness, csrf_of
from tests.web.test_forms import _fill

PAYLOAD = '<script>alert("x")</script>'
ESCAPED = "&lt;script&gt;"


def _clean(response: object, where: str) -> str:
    text: str = response.text  # type: ignore[attr-defined]
    assert PAYLOAD not in text and "<script>alert" not in text, f"unescaped on {where}"
    return text


def _post(client: TestClient, path: str, data: dict[str, str]) -> str:
    return _clean(client.post(path, data=data, follow_redirects=True), f"POST {path}")


def test_script_in_every_free_text_field_is_escaped_everywhere(web: WebHarness) -> None:
    web.import_ward()
    alert_id = web.raise_alerts()[0]
    clinician = web.client("clinician")
    ref = "W-0001"

    # medication: reason, route, frequency, dose unit (stored), course id (refused, echoed)
    echoed = _post(clinician, f"/patients/{ref}/medication", {
        **_fill(clinician, f"/patients/{ref}/medication"), "change": "start",
        "course_id": PAYLOAD, "drug": "methotrexate", "occurred_at": "2016-02-25"})
    assert ESCAPED in echoed  # the refused value is shown back, escaped
    _post(clinician, f"/patients/{ref}/medication", {
        **_fill(clinician, f"/patients/{ref}/medication"), "change": "start",
        "course_id": "mtx-1", "drug": "methotrexate", "occurred_at": "2016-02-25",
        "reason": PAYLOAD, "route": PAYLOAD, "frequency": PAYLOAD, "dose_unit": PAYLOAD,
        "dose": "10"})
    started = web.core.store.read_stream(ref)[-1]
    assert started.type == "MedicationStarted" and "<script>" in started.payload

    # lab: a refused value is echoed back in its field
    assert ESCAPED in _post(clinician, f"/patients/{ref}/lab", {
        **_fill(clinician, f"/patients/{ref}/lab"), "analyte": "calcium", "value": PAYLOAD,
        "unit": "mmol/L", "occurred_at": "2016-03-01T08:00"})

    # void and correct: their reasons (preview, then saved)
    lab = next(e for e in web.core.store.read_stream(ref) if e.type == "LabResultRecorded")
    for mode, extra in (("correct", {"data": '{"analyte": "calcium", "value": 2.2, '
                                             '"unit": "mmol/L"}'}), ("void", {})):
        path = f"/patients/{ref}/entries/{lab.event_id}/{mode}"
        form = {**_fill(clinician, path), **extra, "reason": PAYLOAD}
        assert ESCAPED in _post(clinician, path, form)  # the preview
        _post(clinician, path, {**form, "confirm": "yes"})
    assert {"EntryCorrected", "EntryVoided"} <= {e.type for e in web.core.store.read_stream(ref)}

    # an alert's acknowledgement note
    _post(clinician, f"/alerts/{alert_id}/ack", {
        "csrf_token": csrf_of(clinician.get(f"/alerts/{alert_id}").text), "note": PAYLOAD})

    # a login name is echoed back on a refused login
    anonymous = web.anonymous()
    page = anonymous.get("/login")
    _post(anonymous, "/login", {"username": PAYLOAD, "password": "x",
                                "csrf_token": csrf_of(page.text)})

    # every page that shows them
    auditor = web.client("auditor")
    shown: dict[str, bool] = {}
    for client, path in [(clinician, f"/patients/{ref}"), (clinician, f"/patients/{ref}/chart"),
                         (clinician, f"/alerts/{alert_id}"), (clinician, "/alerts?all=1"),
                         (clinician, "/"), (auditor, f"/audit/patients/{ref}"),
                         (auditor, "/audit/users/clinician"), (auditor, f"/patients/{ref}"),
                         (web.client("admin"), "/admin")]:
        response = client.get(path)
        assert response.status_code == 200, path
        shown[path] = ESCAPED in _clean(response, path)
    # the pages that show the free text show it escaped (not merely leave it out)
    assert shown[f"/alerts/{alert_id}"] and shown[f"/patients/{ref}"], shown


def test_script_in_a_path_or_query_is_escaped(web: WebHarness) -> None:
    clinician = web.client("clinician")
    for path in (f"/patients/{PAYLOAD}", f"/patients/W-0001?at={PAYLOAD}",
                 f"/patients/W-0001?known_at={PAYLOAD}", f"/?patient={PAYLOAD}",
                 f"/patients/{PAYLOAD}/lab"):
        _clean(clinician.get(path), path)
    auditor = web.client("auditor")
    for path in (f"/audit?patient={PAYLOAD}", f"/audit/users/{PAYLOAD}"):
        _clean(auditor.get(path), path)
