"""``cno-tracker fhir export``: every resource validates against the fhir.resources R4B
models, and export → import into a fresh database gives the same status JSON. Both
databases."""

from __future__ import annotations

from pathlib import Path

import orjson
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle

from events.store import EventStore
from tests.support.interop import cli

COHORT = Path(__file__).resolve().parents[2] / "examples" / "cohort-12.jsonl"
PATIENTS = ["G7-0001", "G7-0005", "G7-0012"]  # G7-0005 and G7-0012 had pamidronate


def status(db_url: str, ref: str, *extra: str) -> dict[str, object]:
    r = cli(db_url, "status", ref, "--json", "--at", "2016-06-30", *extra)
    assert r.exit_code == 0, r.output
    return _without_ids(orjson.loads(r.output))


def _without_ids(value: object) -> object:
    """Event ids are new in a new database; everything else must be equal."""
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k != "event_id"}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


def test_export_validates_and_round_trips(db_url: str, tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    assert cli(source, "import", str(COHORT)).exit_code == 0
    for ref in PATIENTS:
        out = tmp_path / f"{ref}.json"
        r = cli(source, "fhir", "export", ref, "--at", "2016-06-30", "--include-birth-date",
                "-o", str(out))
        assert r.exit_code == 0, r.output
        doc = orjson.loads(out.read_bytes())
        Bundle.model_validate(doc)
        kinds = set()
        for entry in doc["entry"]:
            resource = entry["resource"]
            kinds.add(resource["resourceType"])
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert {"Patient", "Observation", "Provenance"} <= kinds
        assert cli(db_url, "patients", "link", ref, "--system", "urn:cno-tracker:patient",
                   "--value", ref).exit_code == 0
        r = cli(db_url, "fhir", "import", str(out))
        assert r.exit_code == 0, r.output
        assert status(db_url, ref) == status(source, ref)


def test_birth_date_only_when_asked_and_unknown_patient(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    assert cli(source, "import", str(COHORT)).exit_code == 0
    plain = orjson.loads(cli(source, "fhir", "export", "G7-0001").output)
    patient = plain["entry"][0]["resource"]
    assert patient["identifier"] == [{"system": "urn:cno-tracker:patient", "value": "G7-0001"}]
    assert "birthDate" not in patient
    kinds = {e["resource"]["resourceType"] for e in plain["entry"]}
    assert {"MedicationStatement", "Flag", "Basic"} <= kinds
    infused = orjson.loads(cli(source, "fhir", "export", "G7-0012", "--at", "2016-06-30").output)
    kinds = {e["resource"]["resourceType"] for e in infused["entry"]}
    assert {"MedicationAdministration", "CarePlan"} <= kinds
    derived = {e["resource"]["code"]["coding"][0]["code"] for e in infused["entry"]
               if e["resource"]["id"].startswith("derived-")}
    assert {"disease-state", "pamidronate-rolling-year"} <= derived
    r = cli(source, "fhir", "export", "P9999")
    assert r.exit_code == 4 and "no patient" in r.output


def test_alert_deliveries_and_acknowledgements_as_communications(store: EventStore) -> None:
    import uuid
    from datetime import UTC, datetime, timedelta

    from events.envelope import NewEvent
    from events.store import ALERT, stream_name
    from events.vocabulary import AlertAcknowledged, AlertFailed, AlertRaised, AlertSent
    from tracker.interop.fhir_out import communications

    start = datetime(2016, 3, 1, 9, 0, tzinfo=UTC)
    alert_id = str(uuid.uuid4())
    data = [
        AlertRaised(alert_id=alert_id, kind="post_dose_labs_due", severity="urgent",
                    due_at=start, dedupe_key="W-0001:post_dose_labs_due:x:overdue"),
        AlertFailed(alert_id=alert_id, channel="sms", recipient="nurse.lopez",
                    error="provider said: +34 600 000 000 unreachable", permanent=False),
        AlertSent(alert_id=alert_id, channel="email", recipient="nurse.lopez"),
        AlertFailed(alert_id=alert_id, channel="sms", recipient="rheum.garcia",
                    error="number 600 000 000 invalid", permanent=True),
        AlertAcknowledged(alert_id=alert_id, by="lopez", note="calcium 2.1, called family"),
    ]
    stream = stream_name(ALERT, alert_id)
    store.append(stream, 0, [
        NewEvent(event_id=str(uuid.uuid4()), type=type(d).__name__, data=d,
                 occurred_at=start + timedelta(minutes=n), occurred_on=start.date(),
                 recorded_at=start + timedelta(minutes=n), recorded_by="worker")
        for n, d in enumerate(data)])
    events = store.read_stream(stream)
    out = communications(events, {"reference": "Patient/W-0001"})
    for resource in out:
        get_fhir_model_class("Communication").model_validate(resource)
    assert [c["status"] for c in out] == ["completed", "not-done", "completed"]
    sent, failed, ack = out
    assert sent["recipient"][0]["identifier"]["value"] == "nurse.lopez"
    assert sent["priority"] == "urgent" and sent["identifier"][0]["value"] == alert_id
    assert failed["statusReason"]["coding"][0]["code"] == "failed" and "sent" not in failed
    assert ack["sender"]["identifier"]["value"] == "lopez"
    assert ack["inResponseTo"] == [{"reference": f"Communication/{sent['id']}"},
                                   {"reference": f"Communication/{failed['id']}"}]
    text = orjson.dumps(out).decode()
    # the error texts' phone numbers (not a bare "600": a random alert id may hold it)
    assert "600 000 000" not in text and "unreachable" not in text
    assert "calcium" not in text and "family" not in text
    # as known before the acknowledgement: the deliveries only
    early = communications(events, {"reference": "Patient/W-0001"},
                           known_at=start + timedelta(minutes=3))
    assert [c["status"] for c in early] == ["completed", "not-done"]
