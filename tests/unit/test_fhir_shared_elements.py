"""``fhir_in.parse`` validates each repeated element (code, subject, unit, …) of a bundle
once and reuses it (issue 12, speed): the parsed resources and the errors must be exactly
those of validating every resource on its own from its raw JSON."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from tests.support.interop import DATA
from tracker.errors import ImportRefused
from tracker.interop import fhir_in


def _observation(n: int, quantity: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:obs-{n}", "resource": {
        "resourceType": "Observation", "id": f"lab-{n}", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                            "observation-category", "code": "laboratory"}]}],
        "subject": {"reference": "urn:uuid:patient-1"},
        "effectiveDateTime": "2025-03-01T08:15:00+01:00", "valueQuantity": quantity}}


def _bundle(entries: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries})


def _plain(raw: bytes) -> list[dict[str, Any]]:
    doc = orjson.loads(raw)
    entries = doc["entry"] if doc["resourceType"] == "Bundle" else [{"resource": doc}]
    return [get_fhir_model_class(e["resource"]["resourceType"])
            .model_validate(e["resource"]).model_dump(mode="json") for e in entries]


GOOD = {"value": 9.3, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}


@pytest.mark.parametrize("raw", [
    (DATA / "us-core-transaction.json").read_bytes(),
    _bundle([_observation(n, GOOD) for n in range(5)]),
], ids=["us-core", "repeated-panel"])
def test_parsed_resources_equal_a_plain_validation(raw: bytes) -> None:
    parsed = [e.resource.model_dump(mode="json") for e in fhir_in.parse(raw)]
    assert parsed == _plain(raw)


def test_a_repeated_invalid_element_is_reported_at_every_entry_with_its_path() -> None:
    bad = {**GOOD, "value": "nine"}
    raw = _bundle([_observation(0, GOOD), _observation(1, bad), _observation(2, bad)])
    with pytest.raises(ImportRefused) as caught:
        fhir_in.parse(raw)
    wheres = [p.field for p in caught.value.problems]
    assert len(wheres) == 2
    assert wheres[0].startswith("entry 1 Observation/lab-1 valueQuantity.value")
    assert wheres[1].startswith("entry 2 Observation/lab-2 valueQuantity.value")


def test_an_element_of_the_wrong_shape_fails_as_it_would_alone() -> None:
    # category is a list in an Observation: a single object is refused, with its path
    entry = _observation(0, GOOD)
    entry["resource"]["category"] = entry["resource"]["category"][0]
    raw = _bundle([entry])
    with pytest.raises(ImportRefused) as caught:
        fhir_in.parse(raw)
    problems = caught.value.problems
    assert problems and all(p.field.startswith("entry 0 Observation/lab-0 category")
                            for p in problems)
