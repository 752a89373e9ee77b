"""``dump_data`` calls the model's serializer directly: it must give exactly what
``model_dump(mode="json", exclude_none=True)`` gives (stored payloads are its canonical
JSON, and the hash chain covers them)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from events.envelope import canonical_json, dump_data
from events.lines import decode_line
from events.vocabulary import AlertRaised, EntryCorrected, LabResultRecorded, VisitRecorded
from tests.support.cohort import cohort_lines


def _same(data: object) -> None:
    expected = data.model_dump(mode="json", exclude_none=True)  # type: ignore[attr-defined]
    assert dump_data(data) == expected  # type: ignore[arg-type]
    assert canonical_json(dump_data(data)) == canonical_json(expected)  # type: ignore[arg-type]


def test_every_generated_payload_dumps_as_model_dump_does() -> None:
    count = 0
    for lines in cohort_lines(40, 3).values():
        for line in lines:
            _same(decode_line(orjson.dumps(line)).data)
            count += 1
    assert count > 500


def test_awkward_payloads_dump_as_model_dump_does() -> None:
    _same(LabResultRecorded(analyte="calcium", value=9.1 + 0.2, unit="mg/dL"))
    _same(VisitRecorded(pain=True, swelling=False, functional_limitation=False,
                        weight_kg=1e-7, active_lesions=[{"site": "tibia"}]))  # type: ignore[list-item]
    _same(EntryCorrected(target_event_id="2b1c7f4e-8d0a-4f6e-9c55-0d6c1f7a3b21",
                         data={"z": None, "a": [1, 2.5, "é\u2028\"\\"], "n": {"k": None}},
                         reason="typo"))
    _same(AlertRaised(alert_id="a1", kind="k", severity="info", dedupe_key="d",
                      due_at=datetime(2015, 3, 4, 7, 10, 0, 5, tzinfo=UTC)))


def test_none_is_left_out() -> None:
    data = LabResultRecorded(analyte="calcium", value=2.3, unit="mmol/L")
    assert "loinc" not in dump_data(data) and dump_data(data)["canonical_value"] == 2.3
