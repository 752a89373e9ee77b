"""End to end in chromium, on SQLite and PostgreSQL: a clinician's ward round, an
auditor's look at it, a nurse refused the admin page, and the audit control showing the
state before the lab was recorded. axe-core checks every page on the way."""

from __future__ import annotations

from datetime import timedelta

import orjson

from tests.web.browser.conftest import Browser
from tests.web.conftest import PASSWORD, WebHarness
from tracker.importing import import_lines

#: W-0001's labs after its third dose, all but urine Ca/Cr: that one is what is missing
AFTER_DOSE = (("haemoglobin", 12.5, "g/dL"), ("phosphate", 1.4, "mmol/L"),
              ("calcium", 2.3, "mmol/L"), ("vitamin_d_25oh", 32.0, "ng/mL"),
              ("creatinine", 41.0, "umol/L"))


def _labs_but_one(web: WebHarness) -> None:
    lines = [orjson.dumps({
        "type": "LabResultRecorded", "patient": "W-0001",
        "occurred_at": "2016-02-24T08:30:00+01:00", "recorded_by": "dr.test",
        "idempotency_key": f"browser-lab-{n}",
        "data": {"analyte": a, "value": v, "unit": u}}) for n, (a, v, u) in enumerate(AFTER_DOSE)]
    import_lines(lines, web.core.store, clock=web.clock, protocol=web.core.protocol)


def _row(browser: Browser, item: str) -> str:
    rows = [r.text for r in browser.driver.find_elements("css selector", "tr")
            if r.text.startswith(item)]
    assert rows, f"no row {item!r} on {browser.path}"
    return str(rows[0])


def test_a_ward_round_in_the_browser(web: WebHarness, browser: Browser) -> None:
    web.import_ward()
    _labs_but_one(web)
    web.raise_alerts()
    before_lab = web.clock.now() + timedelta(minutes=30)
    web.clock.advance(timedelta(hours=1))  # the round starts an hour after the import
    web.add_user("dr.garcia", "clinician", member="rheum.garcia")
    web.add_user("audit.perez", "auditor")
    web.add_user("nurse.lopez", "nurse", member="nurse.lopez")

    # log in; the ward list shows the overdue item
    browser.login("dr.garcia", PASSWORD)
    assert browser.path == "/"
    assert "W-0001" in browser.text and "overdue" in browser.text

    # open the patient: the post-dose labs are overdue, urine Ca/Cr missing
    browser.click_link("W-0001")
    assert browser.path.startswith("/patients/W-0001")
    assert "overdue" in _row(browser, "post_dose_3_labs")
    assert "urine_calcium_creatinine" in _row(browser, "post_dose_3_labs")

    # record the missing lab through the form: the item becomes satisfied
    browser.get("/patients/W-0001/lab?analyte=urine_calcium_creatinine")
    browser.fill({"value": "0.5", "unit": "mmol/mmol", "occurred_at": "2016-03-01T10:15"})
    browser.submit("Save lab result")
    assert browser.path.startswith("/patients/W-0001")
    assert "satisfied" in _row(browser, "post_dose_3_labs")
    assert "satisfied" in _row(browser, "post_dose_2_labs")

    # acknowledge an alert and see it in its history
    browser.get("/alerts")
    links = browser.driver.find_elements("css selector", "a[href^='/alerts/']")
    assert links, "no alert listed"
    links[0].click()
    browser.axe()
    browser.fill({"note": "labs done on the ward"})
    browser.submit("Acknowledge")
    assert "AlertAcknowledged" in browser.text and "dr.garcia" in browser.text
    browser.logout()

    # an auditor sees the access log with the clinician's view and record
    browser.login("audit.perez", PASSWORD)
    browser.get("/audit/patients/W-0001")
    actions = {tuple(td.text for td in row.find_elements("css selector", "td")[1:4:2])
               for row in browser.driver.find_elements("css selector", "tbody tr")}
    assert {("dr.garcia", "view"), ("dr.garcia", "record")} <= actions, actions

    # the audit control shows the earlier state: known before the lab was recorded
    browser.get("/patients/W-0001")
    browser.fill({"known_at": before_lab.astimezone(web.core.protocol.zone)
                  .strftime("%Y-%m-%dT%H:%M")})
    browser.submit("Show")
    assert "Viewing the past" in browser.text
    assert "overdue" in _row(browser, "post_dose_3_labs")
    browser.logout()

    # a nurse is refused /admin
    browser.login("nurse.lopez", PASSWORD)
    browser.get("/admin")
    assert "Not allowed" in browser.text
    assert len(browser.checked) >= 12  # axe ran on every page on the way
