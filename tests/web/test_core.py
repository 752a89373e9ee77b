"""The core of the web application: login, sessions, CSRF, headers, errors, health."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi import APIRouter, Depends

from tests.web.conftest import PASSWORD, WebHarness, csrf_of
from web.deps import Principal, requires
from web.permissions import Action
from web.routes.auth import LOGIN_CSRF_COOKIE, safe_next
from web.security import CSP


def test_login_starts_a_session_and_logout_ends_it(web: WebHarness) -> None:
    client = web.anonymous()
    assert client.get("/", follow_redirects=False).headers["location"] == "/login?next=%2F"
    web.add_user("nurse.a", "nurse")
    response = web.login(client, "nurse.a", next_="/alerts")
    assert response.status_code == 303 and response.headers["location"] == "/alerts"
    cookie = response.headers["set-cookie"]
    assert "cno_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http in the test client
    page = client.get("/")
    assert page.status_code == 200 and "nurse.a (nurse)" in page.text
    token = csrf_of(page.text)
    assert client.post("/logout", data={"csrf_token": "wrong"}).status_code == 403
    assert client.get("/").status_code == 200  # a forged logout changed nothing
    out = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_wrong_password_or_unknown_user_gets_one_message(web: WebHarness) -> None:
    web.add_user("nurse.a", "nurse")
    client = web.anonymous()
    for name, password in (("nurse.a", "wrong password!"), ("nobody", PASSWORD)):
        response = web.login(client, name, password)
        assert response.status_code == 401
        assert "Wrong username or password, or the account is locked" in response.text
        assert "cno_session" not in response.headers.get("set-cookie", "")


def test_the_fifth_failure_locks_the_account_for_15_minutes(web: WebHarness) -> None:
    web.add_user("nurse.a", "nurse")
    client = web.anonymous()
    for _ in range(5):
        assert web.login(client, "nurse.a", "wrong password!").status_code == 401
    assert web.login(client, "nurse.a").status_code == 401  # locked: even the right one
    web.clock.advance(timedelta(minutes=15))
    assert web.login(client, "nurse.a").status_code == 303


def test_login_needs_its_own_csrf_token(web: WebHarness) -> None:
    web.add_user("nurse.a", "nurse")
    client = web.anonymous()
    client.get("/login")
    assert client.cookies.get(LOGIN_CSRF_COOKIE)
    forged = client.post("/login", data={"username": "nurse.a", "password": PASSWORD,
                                         "csrf_token": "guess"}, follow_redirects=False)
    assert forged.status_code == 403 and "cno_session" not in forged.headers.get(
        "set-cookie", "")


def test_a_new_login_never_reuses_a_session_cookie(web: WebHarness) -> None:
    web.add_user("nurse.a", "nurse")
    client = web.anonymous()
    web.login(client, "nurse.a")
    first = client.cookies.get("cno_session")
    client.cookies.delete("cno_session")
    web.login(client, "nurse.a")
    assert client.cookies.get("cno_session") not in (None, first)


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "", "x",
                                    "/\\evil.example"])
def test_next_never_leaves_the_site(target: str) -> None:
    assert safe_next(target) == "/"


def test_next_keeps_a_local_path() -> None:
    assert safe_next("/patients/P0007?at=2016-01-01") == "/patients/P0007?at=2016-01-01"


def test_idle_and_absolute_timeouts_reach_the_browser(web: WebHarness) -> None:
    client = web.client("nurse")
    web.clock.advance(timedelta(minutes=14, seconds=59))
    assert client.get("/", follow_redirects=False).status_code == 200
    web.clock.advance(timedelta(minutes=15))
    response = client.get("/alerts", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Falerts"


def test_htmx_requests_without_a_session_are_told_where_to_go(web: WebHarness) -> None:
    response = web.anonymous().get("/", headers={"HX-Request": "true"},
                                   follow_redirects=False)
    assert response.status_code == 401 and response.headers["HX-Redirect"].startswith(
        "/login?next=")


def test_a_disabled_users_live_session_stops_at_the_next_request(web: WebHarness) -> None:
    client = web.client("nurse")
    assert client.get("/").status_code == 200
    web.accounts.disable("nurse", by="admin")
    assert client.get("/", follow_redirects=False).status_code == 303
    web.accounts.set_password("nurse", PASSWORD + "!", by="admin")  # no way back in
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_role_change_applies_at_the_next_request(web: WebHarness) -> None:
    client = web.client("nurse")
    assert client.get("/").status_code == 200
    web.accounts.set_role("nurse", "admin", member=None, by="admin")
    assert client.get("/").status_code == 403


def test_every_post_needs_the_session_token(web: WebHarness) -> None:
    web.import_ward()
    alert_id = web.raise_alerts()[0]
    client = web.client("nurse")
    url = f"/alerts/{alert_id}/ack"
    assert client.post(url, data={"note": "x"}).status_code == 403
    assert client.post(url, data={"note": "x", "csrf_token": "nope"}).status_code == 403
    assert client.post(url, headers={"X-CSRF-Token": "nope"}).status_code == 403
    token = csrf_of(client.get(f"/alerts/{alert_id}").text)
    assert client.post(url, headers={"X-CSRF-Token": token},
                       follow_redirects=False).status_code == 303


def test_security_headers_on_every_response(web: WebHarness) -> None:
    client = web.client("nurse")
    for url in ("/", "/login", "/healthz", "/nowhere", "/static/app.css"):
        headers = client.get(url).headers
        assert headers["content-security-policy"] == CSP
        assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-content-type-options"] == "nosniff"
        if url.startswith("/static/"):
            assert headers.get("cache-control") != "no-store"
        else:
            assert headers["cache-control"] == "no-store"


def test_pages_carry_no_inline_script_or_style(web: WebHarness) -> None:
    web.import_ward()
    client = web.client("clinician")
    for url in ("/", "/patients/W-0001", "/alerts", "/login", "/patients/W-0001/chart"):
        html = client.get(url).text
        assert "<script>" not in html and "<style" not in html and " style=" not in html
        assert " on" + "click=" not in html and "javascript:" not in html


def test_a_server_error_shows_an_id_and_no_trace(web: WebHarness,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    router = APIRouter()

    @router.get("/boom")
    def boom(user: Principal = Depends(requires(Action.VIEW_WARD))) -> str:
        detail = f"W-0001 creatinine {999}"
        raise RuntimeError(detail)

    web.app.include_router(router)
    client = web.client("nurse")
    client.close()
    from fastapi.testclient import TestClient

    quiet = TestClient(web.app, raise_server_exceptions=False, cookies=client.cookies)
    response = quiet.get("/boom")
    assert response.status_code == 500
    assert "error has been logged with id" in response.text
    assert "Traceback" not in response.text and "creatinine" not in response.text
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["cache-control"] == "no-store"
    logged = caplog.text
    assert "RuntimeError" in logged and "creatinine 999" not in logged
    quiet.close()


def test_unknown_pages_and_bad_parameters(web: WebHarness) -> None:
    client = web.client("nurse")
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and "nothing at this address" in missing.text
    assert client.get("/patients/NOPE").status_code == 404
    bad = client.get("/?severity=bogus")
    assert bad.status_code == 400 and "severity" in bad.text
    assert client.get("/patients/W-0001?at=yesterday").status_code in (400, 404)


def test_health_and_readiness_need_no_login_and_show_no_clinical_data(
        web: WebHarness) -> None:
    web.import_ward()
    client = web.anonymous()
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {
        "database": "ok", "schema": "ok", "worker": "not reported"}}
    assert "W-0001" not in ready.text


def test_readiness_fails_on_a_stale_worker_heartbeat(web: WebHarness) -> None:
    from web.health import Health

    ctx = web.app.state.web
    beat = web.clock.now() - timedelta(seconds=300)
    ctx.health = Health(web.core, max_age=timedelta(seconds=300), heartbeat=lambda conn: beat)
    client = web.anonymous()
    fresh = client.get("/readyz")
    assert fresh.status_code == 200 and fresh.json()["checks"]["worker"] == "ok"
    web.clock.advance(timedelta(seconds=1))
    stale = client.get("/readyz")
    assert stale.status_code == 503
    assert stale.json() == {"status": "not ready", "checks": {
        "database": "ok", "schema": "ok", "worker": "stale: last heartbeat 301 s ago"}}


def test_readiness_fails_when_the_schema_is_behind(web: WebHarness) -> None:
    from sqlalchemy import text

    with web.core.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0003_alerts'"))
    ready = web.anonymous().get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["schema"] == "not current: run `cno-tracker db upgrade`"


def test_readiness_reads_the_alert_workers_own_heartbeat(web: WebHarness) -> None:
    """The default reader is the worker's heartbeat table (alerts/health.py): a worker that
    beat within the limit is ok, one past it is stale (503), a stopped one is not counted."""
    from alerts.health import Heartbeat

    beat = Heartbeat(web.core.engine, "worker-test")
    beat.started(web.clock.now())
    client = web.anonymous()
    assert client.get("/readyz").json()["checks"]["worker"] == "ok"
    web.clock.advance(timedelta(seconds=300))  # WebSettings' default limit, to the second
    assert client.get("/readyz").status_code == 200
    web.clock.advance(timedelta(seconds=1))
    stale = client.get("/readyz")
    assert stale.status_code == 503
    assert stale.json()["checks"]["worker"] == "stale: last heartbeat 301 s ago"
    beat.stopped(web.clock.now())
    assert client.get("/readyz").json()["checks"]["worker"] == "not reported"
