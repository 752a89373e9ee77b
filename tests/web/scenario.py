"""A small ward for the web tests: W-0001 had the first pamidronate cycle (three doses,
20-22 February 2016) after full baseline labs, and no labs since, so on 1 March 2016
its post-dose labs are overdue; W-0002 is enrolled and has only a visit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from tracker.bootstrap import App
from tracker.clock import Clock
from tracker.importing import import_lines

TODAY = datetime(2016, 3, 1, 9, 0, tzinfo=UTC)
BASELINE = (("haemoglobin", 12.9, "g/dL"), ("phosphate", 1.5, "mmol/L"),
            ("calcium", 2.4, "mmol/L"), ("urine_calcium_creatinine", 0.6, "mmol/mmol"),
            ("vitamin_d_25oh", 30.0, "ng/mL"), ("alt", 16.0, "U/L"),
            ("creatinine", 40.0, "umol/L"))


def _line(kind: str, patient: str, when: str, data: dict[str, Any], n: int) -> bytes:
    return orjson.dumps({"type": kind, "patient": patient, "occurred_at": when,
                         "recorded_by": "dr.test", "idempotency_key": f"web-{patient}-{n}",
                         "data": data})


def ward_lines() -> list[bytes]:
    p = "W-0001"
    rows: list[tuple[str, str, str, dict[str, Any]]] = [
        ("PatientEnrolled", p, "2016-01-04", {"birth_date": "2006-02-01", "sex": "female",
                                              "symptom_onset": "2015-12-01"}),
        ("VisitRecorded", p, "2016-02-15", {"pain": True, "swelling": False,
                                            "functional_limitation": False,
                                            "weight_kg": 30.0, "height_cm": 135.0,
                                            "active_lesions": [{"site": "femur",
                                                                "side": "left"}]}),
        *(("LabResultRecorded", p, "2016-02-15T08:30:00+01:00",
           {"analyte": a, "value": v, "unit": u}) for a, v, u in BASELINE),
        ("MedicationStarted", p, "2016-02-20", {"course_id": "pam-1", "drug": "pamidronate",
                                                "regimen": "quarterly",
                                                "reason": "refractory to NSAID"}),
        *(("InfusionAdministered", p, f"2016-02-{19 + d}T10:00:00+01:00",
           {"drug": "pamidronate", "dose_mg": 15.0 if d == 1 else 30.0, "weight_kg": 30.0,
            "course_id": "pam-1"}) for d in (1, 2, 3)),
        ("PatientEnrolled", "W-0002", "2016-02-10", {"birth_date": "2007-05-01",
                                                     "sex": "male"}),
        ("VisitRecorded", "W-0002", "2016-02-10", {"pain": True, "swelling": True,
                                                   "functional_limitation": False}),
    ]
    return [_line(k, who, when, data, n) for n, (k, who, when, data) in enumerate(rows)]


def import_ward(core: App, clock: Clock) -> None:
    import_lines(ward_lines(), core.store, clock=clock, protocol=core.protocol)
