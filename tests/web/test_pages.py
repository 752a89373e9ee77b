"""The reading pages against the CLI's read side, on both databases: the ward list is
``due``, the patient page is ``status`` + ``explain`` + ``timeline``, the alerts page is
the outbox; everything a user typed comes back escaped."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import orjson
import pytest

from tests.web.conftest import WebHarness, csrf_of
from tests.web.scenario import TODAY
from tracker.importing import import_lines
from web.routes.ward import ward_items

SCRIPT = "<script>alert(1)</script>"


def _lines(*rows: dict[str, object]) -> list[bytes]:
    return [orjson.dumps({"recorded_by": "dr.test", **r}) for r in rows]


def test_the_ward_list_is_the_due_list(web: WebHarness) -> None:
    web.import_ward()
    client = web.client("nurse")
    page = client.get("/").text
    due = ward_items(web.core, TODAY.date())
    assert [(i["patient"], i["item"], i["status"]) for i in due] == [
        ("W-0001", "post_dose_2_labs", "overdue"), ("W-0001", "post_dose_3_labs", "overdue")]
    assert 'id="h-overdue"' in page and "Overdue: <strong>2</strong>" in page
    assert "Due: <strong>0</strong>" in page and 'href="/patients/W-0001"' in page
    assert "post_dose_2_labs" in page and "post_dose_3_labs" in page
    assert 'hx-trigger="every 60s"' in page


def test_ward_filters_and_fragment(web: WebHarness) -> None:
    web.import_ward()
    client = web.client("nurse")
    assert "post_dose_2_labs" in client.get("/?severity=urgent").text
    assert "post_dose_2_labs" not in client.get("/?severity=info").text
    assert "post_dose_2_labs" not in client.get("/?patient=W-0002").text
    assert "post_dose_2_labs" in client.get("/?patient=w-0001&kind=post_dose_labs_due").text
    assert "post_dose_2_labs" not in client.get("/?kind=relapse_detected").text
    fragment = client.get("/?severity=urgent", headers={"HX-Request": "true"}).text
    assert fragment.startswith('<div id="ward" hx-get="/?severity=urgent"')
    assert "<html" not in fragment
    reflected = client.get("/", params={"patient": SCRIPT}).text
    assert SCRIPT not in reflected and "&lt;script&gt;" in reflected


def test_the_csv_export(web: WebHarness) -> None:
    web.import_ward()
    response = web.client("pharmacist").get("/ward.csv?severity=urgent")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == \
        'attachment; filename="ward-2016-03-01.csv"'
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["patient"], r["item"], r["section"]) for r in rows] == [
        ("W-0001", "post_dose_2_labs", "overdue"), ("W-0001", "post_dose_3_labs", "overdue")]
    assert response.headers["cache-control"] == "no-store"


def test_the_patient_page(web: WebHarness) -> None:
    web.import_ward()
    page = web.client("clinician").get("/patients/W-0001").text
    assert "Patient W-0001" in page and 'class="banner"' not in page
    assert '<meter id="gauge" min="0" max="11.5"' in page and 'value="2.5"' in page
    assert "<strong>2.5</strong> of 11.5 mg/kg" in page
    assert "Next due: <strong>2016-05-20</strong>" in page
    assert "Next dose fits on 2016-05-20" in page
    assert "Step <strong>3</strong>" in page and "pamidronate since 2016-02-20" in page
    # monitoring with the missing groups and the explain text
    assert "haemogram, ions, urine_calcium_creatinine, vitamin_d, kidney" in page
    assert "post_dose_2_labs is overdue, due from 2016-02-22" in page
    assert page.count("InfusionAdministered") == 3
    assert 'hx-get="/patients/W-0001/chart"' in page


def test_a_deviation_comes_with_its_explanation(web: WebHarness) -> None:
    web.import_ward()
    import_lines(_lines({"type": "InfusionAdministered", "patient": "W-0001",
                         "occurred_at": "2016-02-29T10:00:00+01:00",
                         "data": {"drug": "pamidronate", "dose_mg": 65.0, "weight_kg": 30.0,
                                  "course_id": "pam-1"}}),
                 web.core.store, clock=web.clock, protocol=web.core.protocol)
    page = web.client("clinician").get("/patients/W-0001").text
    assert "deviation dose_above_60_mg" in page


def test_void_marks_and_escaped_reasons_on_the_timeline(web: WebHarness) -> None:
    web.import_ward()
    visit = next(e for e in web.core.store.read_stream("W-0002")
                 if e.type == "VisitRecorded")
    web.clock.advance(timedelta(hours=1))
    import_lines(_lines({"type": "EntryVoided", "patient": "W-0002",
                         "occurred_at": "2016-03-01", "data": {
                             "target_event_id": visit.event_id, "reason": SCRIPT}}),
                 web.core.store, clock=web.clock, protocol=web.core.protocol)
    page = web.client("nurse").get("/patients/W-0002").text
    assert f'<tr id="e-{visit.event_id}" class="voided">' in page
    assert '<span class="mark">voided</span>' in page
    void = web.core.store.read_stream("W-0002")[-1]
    assert void.type == "EntryVoided"
    # the void is named by its id's random tail (its first digits are the millisecond)
    assert (f'by <a href="#e-{void.event_id}">…{void.event_id[-12:]}</a>') in page
    assert SCRIPT not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # known at the moment before the void: the visit is not voided yet
    before = web.client("nurse").get("/patients/W-0002", params={
        "known_at": (web.clock.now() - timedelta(minutes=30)).isoformat()}).text
    assert 'class="voided"' not in before and 'class="banner"' in before


def test_the_audit_control_shows_the_past(web: WebHarness) -> None:
    web.import_ward()
    client = web.client("auditor")
    earlier = client.get("/patients/W-0001?at=2016-02-19").text
    assert 'class="banner"' in earlier and "clinical date <strong>2016-02-19</strong>" in earlier
    assert "No pamidronate given." in earlier
    mid = client.get("/patients/W-0001?at=2016-02-21").text
    assert "2 dose(s) in 1 cycle(s)" in mid
    local = client.get("/patients/W-0001", params={"known_at": "2016-03-01T09:59"}).text
    assert "as known at <strong>2016-03-01T09:59+01:00</strong>" in local
    assert client.get("/patients/W-0001?known_at=soon").status_code == 400
    assert client.get("/patients/W-0001?at=2016-13-01").status_code == 400


def test_the_chart_is_inline_svg_without_inline_style_and_cached(web: WebHarness) -> None:
    web.import_ward()
    client = web.client("nurse")
    charts = web.app.state.web.charts
    svg = client.get("/patients/W-0001/chart").text
    assert svg.startswith('<figure class="chart"><svg') and "</svg></figure>" in svg
    assert "style=" not in svg and "<style" not in svg and "<script" not in svg
    assert 'role="img"' in svg and 'aria-label="Course chart of W-0001' in svg
    assert charts.drawn == 1
    assert client.get("/patients/W-0001/chart").text == svg and charts.drawn == 1
    plain = client.get("/patients/W-0001/chart", headers={"Accept-Encoding": "identity"})
    zipped = client.get("/patients/W-0001/chart", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers and plain.text == svg
    assert zipped.headers["content-encoding"] == "gzip" and zipped.text == svg
    assert int(zipped.headers["content-length"]) * 4 < len(svg.encode())
    client.get("/patients/W-0001/chart?at=2016-02-25")
    assert charts.drawn == 2  # another date is another chart
    web.clock.advance(timedelta(minutes=1))
    import_lines(_lines({"type": "VisitRecorded", "patient": "W-0001",
                         "occurred_at": "2016-03-01",
                         "data": {"pain": False, "swelling": False,
                                  "functional_limitation": False}}),
                 web.core.store, clock=web.clock, protocol=web.core.protocol)
    client.get("/patients/W-0001/chart")
    assert charts.drawn == 3  # a new event is a new stream version


def _alerts(web: WebHarness) -> tuple[str, int]:
    """The ward's alerts (post-dose labs 2 and 3, due and overdue): one id, how many."""
    web.import_ward()
    ids = web.raise_alerts()
    assert len(ids) == 4
    return ids[0], len(ids)


def test_alerts_mine_first_then_my_roles(web: WebHarness) -> None:
    alert_id, n = _alerts(web)
    nurse = web.client("nurse").get("/alerts").text  # nurse.lopez received them all
    assert f"Mine ({n})" in nurse and "My roles&#39; (0)" in nurse
    # rheum.garcia: the urgent two went to a fellow rheumatologist, the warnings to nurses
    clinician = web.client("clinician").get("/alerts").text
    assert "Mine (0)" in clinician and "My roles&#39; (2)" in clinician
    assert "Other alerts (2)" in clinician
    pharmacist = web.client("pharmacist").get("/alerts").text  # no pharmacist was sent one
    assert f"Other alerts ({n})" in pharmacist and "Mine (0)" in pharmacist
    assert f'href="/alerts/{alert_id}"' in nurse


def test_acknowledge_as_the_logged_in_user_and_see_it_in_the_history(
        web: WebHarness) -> None:
    alert_id, n = _alerts(web)
    client = web.client("nurse")
    page = client.get(f"/alerts/{alert_id}").text
    assert "Acknowledge as nurse" in page and "AlertRaised" in page
    too_long = client.post(f"/alerts/{alert_id}/ack",
                           data={"csrf_token": csrf_of(page), "note": "x" * 501})
    assert too_long.status_code == 400 and "note: at most 500 characters" in too_long.text
    done = client.post(f"/alerts/{alert_id}/ack", data={
        "csrf_token": csrf_of(page), "note": SCRIPT, "by": "somebody.else"},
        follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/alerts/{alert_id}"
    after = client.get(f"/alerts/{alert_id}").text
    assert "acknowledged by nurse" in after and "somebody.else" not in after
    assert "<strong>AlertAcknowledged</strong>" in after and "by nurse" in after
    assert SCRIPT not in after and "&lt;script&gt;alert(1)&lt;/script&gt;" in after
    assert "Acknowledge as" not in after
    again = client.post(f"/alerts/{alert_id}/ack", data={"csrf_token": csrf_of(page)},
                        follow_redirects=False)
    assert again.status_code == 303  # a second click changes nothing
    history = [e.type for e in web.core.store.read_stream(f"alert:{alert_id}")]
    assert history.count("AlertAcknowledged") == 1
    assert f"Mine ({n - 1})" in client.get("/alerts").text  # open alerts only, by default
    assert f"Mine ({n})" in client.get("/alerts?all=1").text


def test_the_short_link_opens_the_alert_after_login(web: WebHarness) -> None:
    alert_id, _ = _alerts(web)
    web.add_user("nurse.b", "nurse")
    client = web.anonymous()
    first = client.get(f"/a/{alert_id[:8]}", follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == f"/login?next=%2Fa%2F{alert_id[:8]}"
    login_page = client.get(first.headers["location"]).text
    assert f'name="next" value="/a/{alert_id[:8]}"' in login_page
    landed = client.post("/login", data={
        "username": "nurse.b", "password": "correct horse battery staple",
        "csrf_token": csrf_of(login_page), "next": f"/a/{alert_id[:8]}"})
    assert landed.status_code == 200 and f"Alert {alert_id[:8]}" in landed.text
    assert client.get("/a/zzzzzzzz").status_code == 404


def test_today_is_the_centres_date(web: WebHarness) -> None:
    web.import_ward()
    web.clock.instant = web.clock.instant.replace(hour=23, minute=30)  # 00:30 in Madrid
    page = web.client("nurse").get("/").text
    assert f"<small>{date(2016, 3, 2).isoformat()}</small>" in page


def test_views_charts_exports_and_acks_are_access_events(web: WebHarness) -> None:
    from web.access import AccessLog

    alert_id, _ = _alerts(web)
    client = web.client("nurse")
    client.get("/patients/W-0001?at=2016-02-25")
    client.get("/patients/W-0001/chart")
    client.get("/ward.csv")
    page = client.get(f"/alerts/{alert_id}").text
    client.post(f"/alerts/{alert_id}/ack", data={"csrf_token": csrf_of(page)})
    seen = [(a.action, a.patient, a.target) for a in
            AccessLog(web.core.store, web.clock).of_user("nurse")]
    assert sorted(seen, key=str) == sorted([
        ("view", "W-0001", "/patients/W-0001?at=2016-02-25"),
        ("chart", "W-0001", "/patients/W-0001/chart"),
        ("export", None, "/ward.csv"),
        ("ack", "W-0001", f"/alerts/{alert_id}")], key=str)
    assert all(e.type != "RecordAccessed" for e in web.core.store.read_stream("W-0001"))


def test_the_patient_page_offers_what_the_role_may_do(web: WebHarness) -> None:
    web.import_ward()
    nurse = web.client("nurse").get("/patients/W-0001").text
    assert 'href="/patients/W-0001/lab"' in nurse and 'href="/patients/W-0001/infusion"' in nurse
    assert "/medication" not in nurse and "/void" not in nurse
    clinician = web.client("clinician").get("/patients/W-0001").text
    assert "/void" in clinician and 'href="/patients/W-0001/medication"' in clinician
    past = web.client("clinician").get("/patients/W-0001?at=2016-02-25").text
    assert "/void" not in past  # no corrections from a view of the past
    auditor = web.client("auditor").get("/patients/W-0001").text
    assert 'href="/audit/patients/W-0001"' in auditor
    assert 'href="/patients/W-0001/lab"' not in auditor and "/void" not in auditor


def test_a_long_section_shows_its_first_items_and_says_how_many_more(
        web: WebHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    import web.routes.ward as ward

    web.import_ward()
    monkeypatch.setattr(ward, "SECTION_LIMIT", 1)
    page = web.client("nurse").get("/").text
    assert "Overdue: <strong>2</strong>" in page
    assert "post_dose_2_labs" in page and "post_dose_3_labs" not in page
    assert "1 more overdue item(s) not shown: filter the list, or export the CSV." in page
    rows = web.client("nurse").get("/ward.csv").text.strip().splitlines()
    assert len(rows) == 3  # the header and both items
