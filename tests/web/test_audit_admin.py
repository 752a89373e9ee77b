"""/audit and /admin in-process (TestClient) on SQLite and PostgreSQL: the access log is in
access streams, the pages show it, and the roles that may not see them are refused."""

from __future__ import annotations

from tests.web.conftest import WebHarness, csrf_of
from tracker.readmodel import is_patient_stream
from web.access import AccessLog


def test_accesses_are_events_in_the_users_access_stream(web: WebHarness) -> None:
    log = AccessLog(web.core.store, web.clock)
    log.record("lopez", "nurse", "view", patient="P0007", target="/patients/P0007")
    log.record("lopez", "nurse", "export", target="/ward.csv")
    log.record("ruiz", "clinician", "view", patient="P0070", target="/patients/P0070")
    events = web.core.store.read_stream("access:lopez")
    assert [e.type for e in events] == ["RecordAccessed", "RecordAccessed"]
    assert not is_patient_stream("access:lopez")
    assert web.core.store.read_stream("P0007") == []  # never in the clinical stream
    assert [(a.user, a.action) for a in log.of_patient("P0007")] == [("lopez", "view")]
    assert [a.action for a in log.of_user("lopez")] == ["export", "view"]  # newest first
    assert log.users() == ["lopez", "ruiz"]


def test_an_auditor_sees_a_patients_access_history_and_a_users_activity(
        web: WebHarness) -> None:
    web.add_user("nurse", "nurse")
    AccessLog(web.core.store, web.clock).record("nurse", "nurse", "view", patient="P0007",
                                                target="/patients/P0007")
    auditor = web.client("auditor")
    page = auditor.get("/audit/patients/P0007")
    assert page.status_code == 200
    assert "Access history of P0007" in page.text and ">nurse<" in page.text
    assert "/patients/P0007" in page.text
    # the auditor's look is itself recorded
    assert [a.action for a in AccessLog(web.core.store, web.clock).of_user("auditor")] == [
        "audit"]
    activity = auditor.get("/audit/users/nurse")
    assert activity.status_code == 200 and "P0007" in activity.text
    assert "AccountCreated" in activity.text
    assert auditor.get("/audit?patient=P0007").status_code == 200
    assert auditor.get("/audit").status_code == 200
    assert auditor.get("/audit/patients/not%20a%20ref").status_code == 400


def test_verify_shows_every_chain_intact(web: WebHarness) -> None:
    web.import_ward()
    page = web.client("auditor").get("/audit/verify")
    assert page.status_code == 200
    assert "every hash chain is intact" in page.text


def test_clinical_roles_and_admin_are_refused_the_audit(web: WebHarness) -> None:
    for role in ("nurse", "clinician", "pharmacist", "admin"):
        assert web.client(role).get("/audit").status_code == 403, role
        assert web.client(role).get("/audit/patients/P0007").status_code == 403, role


def test_a_nurse_is_refused_admin(web: WebHarness) -> None:
    nurse = web.client("nurse")
    assert nurse.get("/admin").status_code == 403
    refused = nurse.post("/admin/users", data={
        "username": "evil", "role": "admin", "password": "x" * 20,
        "csrf_token": csrf_of(nurse.get("/").text)})
    assert refused.status_code == 403
    assert web.accounts.get("evil") is None


def test_admin_sees_accounts_roster_and_health_and_no_clinical_data(web: WebHarness) -> None:
    web.import_ward()
    admin = web.client("admin")
    page = admin.get("/admin")
    assert page.status_code == 200
    assert "nurse.lopez" in page.text  # the roster
    assert "Worker and database health" in page.text
    assert "W-0001" not in page.text
    assert admin.get("/").status_code == 403
    assert admin.get("/patients/W-0001").status_code == 403


def test_admin_adds_changes_and_disables_an_account(web: WebHarness) -> None:
    admin = web.client("admin")
    token = csrf_of(admin.get("/admin").text)
    made = admin.post("/admin/users", data={
        "username": "garcia", "role": "nurse", "member": "nurse.lopez",
        "password": "a long enough password", "csrf_token": token}, follow_redirects=False)
    assert made.status_code == 303
    assert web.accounts.require("garcia").member == "nurse.lopez"
    bad = admin.post("/admin/users", data={
        "username": "x2", "role": "nurse", "password": "short", "csrf_token": token})
    assert bad.status_code == 400 and "at least 12 characters" in bad.text
    assert 'id="password-error"' in bad.text  # next to its field
    assert web.accounts.get("x2") is None
    admin.post("/admin/users/garcia/role", data={"role": "pharmacist", "member": "",
                                                 "csrf_token": token})
    assert web.accounts.require("garcia").role == "pharmacist"
    # a disabled user's live session stops at its next request
    garcia = web.anonymous()
    assert web.login(garcia, "garcia", "a long enough password").status_code == 303  # type: ignore[attr-defined]
    assert garcia.get("/", follow_redirects=False).status_code == 200
    admin.post("/admin/users/garcia/disable", data={"csrf_token": token})
    assert web.accounts.require("garcia").disabled
    assert garcia.get("/", follow_redirects=False).status_code == 303
    types = [h["type"] for h in web.accounts.history("garcia")]
    assert types == ["AccountCreated", "AccountRoleChanged", "AccountDisabled"]
    assert web.accounts.history("garcia")[-1]["recorded_by"] == "admin"


def test_admin_posts_need_the_csrf_token(web: WebHarness) -> None:
    admin = web.client("admin")
    refused = admin.post("/admin/users", data={
        "username": "garcia", "role": "nurse", "password": "a long enough password"})
    assert refused.status_code == 403
    assert web.accounts.get("garcia") is None
