"""The caches behind the web's speed (issue 11), on both databases, through the real app:
they save work only when nothing changed, and a change recorded before a request is on
the page that request gets — the ward list is still exactly ``due``, the patient page
still the latest ``status``."""

from __future__ import annotations

import threading
from datetime import timedelta

import orjson
import pytest

from tests.web.conftest import WebHarness
from tests.web.scenario import TODAY
from tracker.importing import import_lines
from web.routes.ward import ward_items

LAB_DAY = "2016-02-29T08:00:00+01:00"


def _labs(n: int) -> list[bytes]:
    return [orjson.dumps({"type": "LabResultRecorded", "patient": "W-0001",
                          "occurred_at": LAB_DAY, "recorded_by": "dr.test",
                          "idempotency_key": f"speed-{n}-{a}",
                          "data": {"analyte": a, "value": v, "unit": u}})
            for a, v, u in (("calcium", 2.3, "mmol/L"), ("phosphate", 1.4, "mmol/L"),
                            ("creatinine", 41.0, "umol/L"))]


def test_the_ward_list_is_read_again_only_when_the_read_model_changed(web: WebHarness
                                                                      ) -> None:
    web.import_ward()
    client = web.client("nurse")
    ward = web.app.state.web.ward
    assert "post_dose_2_labs" in client.get("/").text
    assert ward.queries == 1
    client.get("/patients/W-0001")  # an access event: the log moves, no status changes
    client.get("/?severity=urgent")
    client.get("/ward.csv")
    assert ward.queries == 1
    import_lines(_labs(1), web.core.store, clock=web.clock, protocol=web.core.protocol)
    page = client.get("/").text  # recorded before the request: on the list at once
    assert ward.queries == 2
    due = ward_items(web.core, TODAY.date())
    assert ward.items(TODAY.date()) == due
    overdue = sum(1 for i in due if i["status"] == "overdue")
    assert f"Overdue: <strong>{overdue}</strong>" in page


def test_a_new_day_reads_the_list_again(web: WebHarness) -> None:
    web.import_ward()
    client = web.client("nurse")
    client.get("/")
    web.clock.advance(timedelta(days=1))
    assert web.client("nurse").get("/").status_code == 200  # a new session: a day passed
    ward = web.app.state.web.ward
    assert ward.queries == 2
    assert ward.items((TODAY + timedelta(days=1)).date()) == ward_items(
        web.core, (TODAY + timedelta(days=1)).date())


def test_concurrent_ward_requests_share_a_refresh(web: WebHarness) -> None:
    web.import_ward()
    clients = [web.client(role) for role in ("nurse", "clinician", "pharmacist", "auditor")]
    codes: list[int] = []

    def get(i: int) -> None:
        codes.append(clients[i % len(clients)].get("/").status_code)

    threads = [threading.Thread(target=get, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 8
    assert web.app.state.web.ward.queries <= 8


def test_the_patient_page_folds_a_history_once_per_version(web: WebHarness) -> None:
    web.import_ward()
    client = web.client("clinician")
    views = web.app.state.web.patients
    first = client.get("/patients/W-0001").text
    client.get("/patients/W-0001")
    client.get("/patients/W-0001/chart")  # the chart shares the evaluation
    assert views.folds == 1
    assert web.app.state.web.charts.drawn == 1
    import_lines(_labs(2), web.core.store, clock=web.clock, protocol=web.core.protocol)
    after = client.get("/patients/W-0001").text
    assert views.folds == 2
    assert after != first and "calcium" in after
    client.get("/patients/W-0001?at=2016-02-01")  # another date is another view
    assert views.folds == 3
    assert client.get("/patients/W-9999").status_code == 404


def test_a_fresh_list_is_reused_for_its_refresh_seconds_but_not_after_a_write(
        web: WebHarness) -> None:
    from fastapi.testclient import TestClient

    from tests.web.test_forms import _fill
    from web.app import create_app
    from web.settings import WebSettings

    web.import_ward()
    app = create_app(web.core, WebSettings(ward_refresh_seconds=600), accounts=web.accounts,
                     roster=web.roster)
    web.add_user("nurse", "nurse")
    with TestClient(app) as client:
        assert web.login(client, "nurse").status_code == 303  # type: ignore[attr-defined]
        ward = app.state.web.ward
        client.get("/")
        import_lines(_labs(3), web.core.store, clock=web.clock, protocol=web.core.protocol)
        client.get("/")
        assert (ward.refreshes, ward.queries) == (1, 1)  # another process's write: later
        fields = _fill(client, "/patients/W-0001/lab?analyte=calcium")
        saved = client.post("/patients/W-0001/lab", follow_redirects=False, data={
            **fields, "analyte": "calcium", "value": "2.35", "unit": "mmol/L",
            "occurred_at": "2016-03-01T08:30"})
        assert saved.status_code == 303, saved.text
        client.get("/")  # the writer's own record: caught up at once
        assert ward.refreshes == 2 and ward.queries == 2
        assert ward.items(TODAY.date()) == ward_items(web.core, TODAY.date())


def test_the_patient_pages_content_is_rendered_once_per_view_role_and_query(
        web: WebHarness) -> None:
    web.import_ward()
    clinician, auditor = web.client("clinician"), web.client("auditor")
    views = web.app.state.web.patients
    first = clinician.get("/patients/W-0001").text
    again = clinician.get("/patients/W-0001").text
    assert views.renders == 1
    assert first == again  # the frame (name, CSRF token) is the same session's
    audited = auditor.get("/patients/W-0001").text  # another role: other actions
    assert views.renders == 2
    assert "Record a lab result" in first and "Record a lab result" not in audited
    assert 'name="csrf_token"' in audited and "auditor" in audited  # the auditor's frame
    clinician.get("/patients/W-0001?at=2016-02-01")  # another query: another content
    assert views.renders == 3
    import_lines(_labs(3), web.core.store, clock=web.clock, protocol=web.core.protocol)
    after = clinician.get("/patients/W-0001").text  # a new version: rendered again
    assert views.renders == 4 and "calcium" in after and after != first


def test_an_access_after_the_first_reads_no_head(web: WebHarness,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The second access of a user in this process goes out as the store's one
    database-checked statement (no transaction reading the head first); when another
    process wrote in between, that statement is refused and the head read again."""
    from events.store import EventStore
    from web.access import AccessLog

    web.import_ward()
    log = web.app.state.web.access
    recorder = web.core.store.recorder
    log.record("nurse", "nurse", "view", patient="W-0001")
    reads: list[str] = []
    real_head = recorder.head
    monkeypatch.setattr(recorder, "head",
                        lambda conn, stream: reads.append(stream) or real_head(conn, stream))
    log.record("nurse", "nurse", "view", patient="W-0001")
    assert reads == []
    # another process writes to the same access stream: ours is refused, re-read, kept
    AccessLog(EventStore(web.core.engine), web.clock).record(
        "nurse", "nurse", "chart", patient="W-0001")
    reads.clear()
    log.record("nurse", "nurse", "export", patient="W-0001")
    # the refused statement's ordinary path reads the head and conflicts; the retry reads it
    assert reads == ["access:nurse", "access:nurse"]
    assert [a.action for a in log.of_user("nurse")][:4] == ["export", "chart", "view", "view"]
    assert web.core.store.head("access:nurse").version == 4


def test_while_one_request_refreshes_an_aged_list_the_others_get_it_at_once(
        web: WebHarness) -> None:
    """Stale while revalidating: an aged list is handed out during someone else's refresh;
    a list this process invalidated (it wrote) is not — those requests wait for the new one."""
    import time

    from web.wardcache import WardCache

    web.import_ward()
    on = TODAY.date()
    ward = WardCache(web.core, max_age=0.05)
    first = ward.items(on)
    time.sleep(0.1)  # aged past max_age
    with ward._lock:  # a refresh under way in another thread
        assert ward.items(on) is first
        assert ward.refreshes == 1
    assert ward.items(on) is not None and ward.refreshes == 2  # nobody refreshing: refreshed
    ward.invalidate()
    got: list[object] = []
    with ward._lock:
        waiter = threading.Thread(target=lambda: got.append(ward.items(on)))
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive() and not got  # an invalidated list: it waits
    waiter.join(10)
    assert got and ward.refreshes == 3
