"""Every route × every role, on both databases: a role the matrix allows gets the page,
any other gets 403, and nobody gets anything without logging in."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, Depends

from tests.web.conftest import WebHarness, csrf_of
from tracker.accounts import Role
from web.app import _check_every_route_is_guarded, route_actions
from web.deps import Principal, requires
from web.permissions import MATRIX, PUBLIC_PATHS, Action, allowed, matrix_markdown

#: what an allowed request answers, where it is not 200
ALLOWED_STATUS = {("GET", "/a/{short}"): 303, ("POST", "/alerts/{alert_id}/ack"): 303}


def concrete(path: str, alert_id: str, event_id: str = "") -> str:
    return (path.replace("{ref}", "W-0001").replace("{alert_id}", alert_id)
            .replace("{event_id}", event_id)
            .replace("{short}", alert_id[:8]).replace("{name}", "nurse")
            .replace("{username}", "nurse"))


def test_every_route_for_every_role(web: WebHarness) -> None:
    web.import_ward()
    alert_id = web.raise_alerts()[0]
    event_id = web.core.store.read_stream("W-0001")[-1].event_id
    routes = {k: v for k, v in route_actions(web.app.state.routers).items()
              if k[1] not in PUBLIC_PATHS and k[0] != "HEAD"}
    assert ("GET", "/patients/{ref}") in routes and ("POST", "/alerts/{alert_id}/ack") in routes
    assert ("POST", "/fhir") in routes and ("GET", "/fhir/Patient/{ref}/$everything") in routes
    wrong = []
    anonymous = web.anonymous()
    for role in Role:
        # the integration role is a machine: its API token, never a session
        client = web.machine()[0] if role is Role.INTEGRATION else web.client(role.value)
        token = csrf_of(client.get("/login?next=/", follow_redirects=True).text) \
            if role is not Role.INTEGRATION else None
        for (method, path), action in sorted(routes.items()):
            url = concrete(path, alert_id, event_id)
            data = {"csrf_token": token or "", "note": "seen"} if method == "POST" else None
            response = client.request(method, url, data=data, follow_redirects=False)
            may = allowed(role.value, Action(action))
            if may:
                expected = ALLOWED_STATUS.get((method, path), 200)
                ok = response.status_code == expected if (method, path) in ALLOWED_STATUS \
                    or method == "GET" else response.status_code not in (401, 403)
                ok = ok and "/login" not in response.headers.get("location", "")
            else:
                ok = response.status_code == 403
            if not ok:
                wrong.append(f"{role.value} {method} {url}: {response.status_code}")
            if role is Role.CLINICIAN:
                anon = anonymous.request(method, url, data=data, follow_redirects=False)
                if path.startswith("/fhir"):  # a machine route: 401, never a redirect
                    if anon.status_code != 401:
                        wrong.append(f"anonymous {method} {url}: {anon.status_code}")
                elif anon.status_code != 303 or not anon.headers["location"].startswith(
                        "/login?next="):
                    wrong.append(f"anonymous {method} {url}: {anon.status_code}")
    assert not wrong, "\n".join(wrong)


def test_admin_sees_no_clinical_data_and_the_auditor_writes_nothing() -> None:
    clinical = {Action.VIEW_WARD, Action.VIEW_PATIENT, Action.EXPORT, Action.VIEW_ALERTS}
    writes = {Action.ACK_ALERT, Action.ENROL, Action.RECORD_VISIT, Action.RECORD_LAB,
              Action.RECORD_INFUSION, Action.PRESCRIBE, Action.VOID_CORRECT,
              Action.MANAGE_ACCOUNTS, Action.FHIR_WRITE}
    assert not MATRIX[Role.ADMIN] & clinical
    assert not MATRIX[Role.AUDITOR] & writes
    assert MATRIX[Role.INTEGRATION] == {Action.FHIR_WRITE}
    assert not allowed("superuser", Action.VIEW_WARD)


def test_an_unguarded_route_is_refused_at_start() -> None:
    router = APIRouter()

    @router.get("/guarded")
    def guarded(user: Principal = Depends(requires(Action.VIEW_WARD))) -> str:
        return user.username

    @router.get("/open")
    def unguarded() -> str:
        return "oops"

    with pytest.raises(RuntimeError, match="GET /open declares no permission"):
        _check_every_route_is_guarded([router])


def test_the_readme_documents_the_matrix() -> None:
    from tests.web.conftest import ROOT

    assert matrix_markdown() in (ROOT / "README.md").read_text(encoding="utf-8")
