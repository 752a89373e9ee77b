"""The FHIR routes of the real app, on both databases: ``POST /fhir`` for an integration
account's API token (the same import as ``cno-tracker fhir import``) and
``GET /fhir/Patient/{ref}/$everything`` for a logged-in reader (an access event; the
patient's alert deliveries and acknowledgements as Communications). Every answer is FHIR
JSON, every exported resource validates against the fhir.resources R4B models, and no
demographic of the input is echoed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome

from tests.support.interop import LINK_KEY, PHI, bundle
from tests.web.conftest import WebHarness
from web.access import AccessLog
from web.app import create_app
from web.security import CSP
from web.settings import WebSettings

FHIR_JSON = "application/fhir+json"


@pytest.fixture(autouse=True)
def link_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNO_TRACKER_LINK_KEY", LINK_KEY)


def after_the_fixture(web: WebHarness) -> None:
    """The bundle's results are of March 2025: move the harness clock past them."""
    web.clock.advance(datetime(2025, 6, 2, 9, 0, tzinfo=UTC) - web.clock.now())


def post(client: TestClient, doc: Any, *, query: str = "?enrol=true",
         content_type: str = FHIR_JSON) -> Any:
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return client.post("/fhir" + query, content=body, headers={"Content-Type": content_type})


def outcome_of(response: Any) -> list[dict[str, Any]]:
    assert response.headers["content-type"].startswith(FHIR_JSON)
    doc = response.json()
    OperationOutcome.model_validate(doc)
    issues: list[dict[str, Any]] = doc["issue"]
    return issues


def no_phi(text: str) -> None:
    leaked = [s for s in PHI if s in text]
    assert not leaked, leaked


def clinical_events(web: WebHarness) -> int:
    return sum(1 for e in web.core.store.read_all() if not e.stream.startswith(
        ("access:", "account:", "alert:")))


def test_an_integration_token_imports_a_bundle_once(web: WebHarness) -> None:
    after_the_fixture(web)
    client, _ = web.machine("lab-feed")
    first = post(client, bundle())
    assert first.status_code == 201, first.text
    assert first.headers["content-security-policy"] == CSP
    assert first.headers["cache-control"] == "no-store"
    text = " ".join(i["diagnostics"] for i in outcome_of(first))
    assert "enrolled L" in text and "written=" in text and "enrolled=1" in text
    no_phi(first.text)
    written = clinical_events(web)
    assert written > 0
    events = [e for e in web.core.store.read_all() if e.recorded_by == "lab-feed"]
    assert events, "recorded_by is the integration account"
    again = post(client, bundle(), content_type="application/json; charset=utf-8")
    assert again.status_code == 200, again.text
    assert "written=0" in " ".join(i["diagnostics"] for i in outcome_of(again))
    assert clinical_events(web) == written


def test_bad_input_names_the_entry_and_path_and_writes_nothing(web: WebHarness) -> None:
    after_the_fixture(web)
    client, _ = web.machine()
    doc = bundle()
    lab = next(e for e in doc["entry"] if e["resource"].get("id") == "lab-1")
    lab["resource"]["valueQuantity"]["value"] = "a lot"
    response = post(client, doc)
    assert response.status_code == 400
    issues = outcome_of(response)
    where = [x for i in issues for x in i.get("expression", [])]
    assert any(w.startswith("entry ") and "Observation/lab-1" in w and "valueQuantity" in w
               for w in where), issues
    assert "a lot" not in response.text
    no_phi(response.text)
    assert clinical_events(web) == 0
    assert post(client, b"{not json").status_code == 400
    strict = post(client, bundle(), query="?enrol=true&strict=true")
    assert strict.status_code == 400 and "strict" in strict.text
    assert clinical_events(web) == 0


def test_no_token_a_wrong_token_or_a_revoked_token_is_401(web: WebHarness) -> None:
    after_the_fixture(web)
    anonymous = web.anonymous()
    for headers in ({}, {"Authorization": "Bearer cnot_wrong"}, {"Authorization": "Basic x"}):
        response = anonymous.post("/fhir", content=b"{}", headers={
            "Content-Type": FHIR_JSON, **headers})
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
        assert outcome_of(response)[0]["code"] == "login"
    _, old = web.machine()
    _, new = web.machine()  # rotated: the old token stops working
    assert post(anonymous, bundle(), query="").status_code == 401
    stale = web.anonymous(headers={"Authorization": f"Bearer {old}"})
    assert post(stale, bundle()).status_code == 401
    fresh = web.anonymous(headers={"Authorization": f"Bearer {new}"})
    assert post(fresh, bundle()).status_code == 201
    web.accounts.disable("integration", by="test")
    assert post(fresh, bundle()).status_code == 401


def test_a_logged_in_human_may_not_post_and_a_token_may_not_read(web: WebHarness) -> None:
    nurse = web.client("nurse")
    response = post(nurse, bundle())
    assert response.status_code == 403
    assert outcome_of(response)[0]["code"] == "forbidden"
    web.import_ward()
    machine, _ = web.machine()
    assert machine.get("/fhir/Patient/W-0001/$everything").status_code == 403
    assert machine.get("/").status_code == 403  # nor any staff page
    assert clinical_events(web) > 0


def test_a_body_above_the_limit_is_413_and_a_wrong_type_415(web: WebHarness) -> None:
    app = create_app(web.core, WebSettings(fhir_max_bytes=2000), accounts=web.accounts,
                     roster=web.roster)
    _, token = web.machine()
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        big = post(client, bundle())
        assert big.status_code == 413
        assert outcome_of(big)[0]["code"] == "too-costly"
        streamed = client.post("/fhir", content=iter([orjson.dumps(bundle())]),
                               headers={"Content-Type": FHIR_JSON})
        assert streamed.status_code == 413  # no Content-Length: counted while read
        assert post(client, b"{}", content_type="text/plain").status_code == 415
    assert clinical_events(web) == 0


def test_everything_is_a_valid_bundle_with_communications(web: WebHarness) -> None:
    web.import_ward()
    alert_ids = web.raise_alerts()
    assert alert_ids
    nurse = web.client("nurse")
    page = nurse.get(f"/alerts/{alert_ids[0]}")
    from tests.web.conftest import csrf_of

    ack = nurse.post(f"/alerts/{alert_ids[0]}/ack", data={
        "csrf_token": csrf_of(page.text), "note": "calcium 2.1 seen"}, follow_redirects=False)
    assert ack.status_code == 303, ack.text
    clinician = web.client("clinician")
    response = clinician.get("/fhir/Patient/W-0001/$everything")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    assert response.headers["cache-control"] == "no-store"
    doc = response.json()
    Bundle.model_validate(doc)
    kinds: dict[str, list[dict[str, Any]]] = {}
    for entry in doc["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        kinds.setdefault(resource["resourceType"], []).append(resource)
    patient = kinds["Patient"][0]
    assert "birthDate" not in patient
    communications = kinds["Communication"]
    assert {c["status"] for c in communications} <= {"completed", "not-done"}
    acks = [c for c in communications if c.get("sender", {}).get("identifier")]
    assert acks and acks[0]["sender"]["identifier"]["value"] == "nurse"
    assert "calcium 2.1" not in response.text  # the note's free text never travels
    assert "payload" not in response.text
    views = AccessLog(web.core.store, web.core.clock).of_user("clinician")
    assert [(a.action, a.patient) for a in views][:1] == [("export", "W-0001")]


def test_everything_as_known_earlier_and_unknown_refs(web: WebHarness) -> None:
    web.import_ward()
    clinician = web.client("clinician")
    past = clinician.get("/fhir/Patient/W-0001/$everything?_at=2016-01-10")
    assert past.status_code == 200
    observations = [e for e in past.json()["entry"]
                    if e["resource"]["resourceType"] == "Observation"
                    and e["resource"]["id"] == "derived-disease-state"]
    assert observations[0]["resource"]["effectiveDateTime"] == "2016-01-10"
    for ref in ("W-9999", "account:clinician"):
        missing = clinician.get(f"/fhir/Patient/{ref}/$everything")
        assert missing.status_code == 404
        assert outcome_of(missing)[0]["code"] == "not-found"
    bad = clinician.get("/fhir/Patient/W-0001/$everything?_at=yesterday")
    assert bad.status_code == 400 and outcome_of(bad)[0]["code"] == "invalid"
    assert web.anonymous().get("/fhir/Patient/W-0001/$everything").status_code == 401


def test_a_refusal_never_echoes_a_submitted_type(web: WebHarness) -> None:
    # a feed that puts a name where a type belongs must not get it back in the outcome
    # (integration engines log answers): the outcome names the place, not the value
    after_the_fixture(web)
    client, _ = web.machine()
    leak = "Emily Carter MRN-448812"
    for doc in ({"resourceType": "Bundle", "type": leak, "entry": []},
                {"resourceType": leak},
                {"resourceType": "Bundle", "type": "collection",
                 "entry": [{"resource": {"resourceType": leak}}]}):
        response = post(client, doc)
        assert response.status_code == 400
        outcome_of(response)
        no_phi(response.text)
    assert clinical_events(web) == 0


def test_an_api_token_never_outlives_its_integration_role(web: WebHarness) -> None:
    # an integration account given a reading role must not turn its token (kept in some
    # interface engine's configuration) into a credential that reads patients
    web.import_ward()
    machine, _ = web.machine("lab-feed")
    web.accounts.set_role("lab-feed", "auditor", member=None, by="test")
    assert machine.get("/fhir/Patient/W-0001/$everything").status_code == 401
    assert machine.get("/", follow_redirects=False).status_code == 303  # to /login


def test_a_bad_view_parameter_is_named_not_echoed(web: WebHarness) -> None:
    web.import_ward()
    clinician = web.client("clinician")
    for param in ("_at", "_known_at"):
        bad = clinician.get(f"/fhir/Patient/W-0001/$everything?{param}=MRN-448812")
        assert bad.status_code == 400
        issues = outcome_of(bad)
        assert issues[0]["diagnostics"].startswith(param + ":"), issues
        no_phi(bad.text)
