"""Synthetic cohort: realistic CNO courses as import lines.

The lines follow interchange.md, "Input: events as JSON Lines", exactly. ``generate_cohort`` is
pure and deterministic: no clock, no environment. Patient ``i`` draws from its own
``random.Random`` seeded with ``(seed, i)``, so a smaller cohort is a prefix of a larger one with
the same seed and ``until``. Proportions follow the seed paper (Table 4 and text) and the
protocol (Tables 2 and 3); tests/unit/test_generate.py checks them within loose bounds.

Treatment follows the protocol on purpose (pamidronate doses are rounded down to whole mg, so no
dose exceeds 0.5/1 mg/kg, 60 mg or 11.5 mg/kg/year); the deliberate imperfections are in the
monitoring: ~10-15% of lab sets late, incomplete or missing, and renal ultrasounds now and then
late or never done.

What the import format cannot carry is not generated: ``EntryVoided``/``EntryCorrected`` need the
target's ``event_id``, which the importer assigns, and ``recorded_at`` is system time, so neither
corrections nor late entries appear in a cohort file.
"""

from __future__ import annotations

import io
import math
import os
import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import IO, Any
from zoneinfo import ZoneInfo

import orjson

from tracker.projections.common import add_months
from tracker.protocol import Protocol
from tracker.synthetic.patient import (
    BASELINE_GROUPS,
    MIDLINE,
    NURSES,
    POST_DOSE_GROUPS,
    SITE_CUM,
    SITE_NAMES,
    Lesion,
    SimulatedPatient,
    next_weekday,
)


def _days(n: int) -> timedelta:
    return timedelta(days=n)


def _before(day: date) -> date:
    """``day``, or the Friday before it when it falls on a weekend."""
    wd = day.weekday()
    return day if wd < 5 else day - _days(wd - 4)


def _foci(rng: random.Random) -> list[Lesion]:
    """Foci: mean 3.5 (SD 2.2), at least one; sites weighted like Table 4."""
    wanted = max(1, min(12, round(rng.gauss(3.5, 2.2))))
    foci: list[Lesion] = []
    for _ in range(60):
        if len(foci) >= wanted:
            break
        site = rng.choices(SITE_NAMES, cum_weights=SITE_CUM)[0]
        side = "midline" if site in MIDLINE else rng.choice(("left", "right"))
        if (site, side) not in foci:
            foci.append((site, side))
    return foci


def _quiet(p: SimulatedPatient, since: date, before: date, foci: list[Lesion], last: bool) -> None:
    """Symptom-free visits every 1-3 months from a week or more after ``since`` (the first day
    without symptoms) until the day before ``before``; now and then a follow-up MRI."""
    rng = p.rng
    v = next_weekday(since + _days(rng.randint(7, 28)))
    while v < before:
        p.visit(v, False, [], free_since=since)
        if rng.random() < 0.2:
            p.labs(v, ("crp", "esr"), quiet=True)
        v = next_weekday(v + _days(rng.randint(30, 90)))
    span = (before - since).days
    if not last and span > 150 and rng.random() < 0.05:
        # Silent radiological activity (Beck 2010): active imaging without symptoms.
        p.imaging(next_weekday(since + _days(span // 2)), "mri", [rng.choice(foci)], True,
                  ["bone marrow oedema"])
    elif last and span > 300 and rng.random() < 0.3:
        p.imaging(next_weekday(since + _days(rng.randint(120, 300))), "mri", foci, False, [])


def _pamidronate(p: SimulatedPatient, first: date, earliest: date) -> None:
    """Table 3: baseline labs, a first cycle of 0.5/1/1 mg/kg on three days (at most 60 mg),
    labs after doses 2 and 3, then monthly or quarterly cycles of 1 mg/kg kept under the
    11.5 mg/kg/year cap (doses are rounded down to whole mg)."""
    rng = p.rng
    nurse = rng.choice(NURSES)
    regimen = "monthly" if rng.random() < 0.5 else "quarterly"
    r = rng.random()
    if r < 0.05:  # 5% of courses with baseline labs too old, 4% without any
        p.lab_set(max(p.first_day, _before(first - _days(rng.randint(35, 60)))),
                  BASELINE_GROUPS, False)
    elif r >= 0.09:
        p.lab_set(max(earliest, _before(first - _days(rng.randint(1, 21)))), BASELINE_GROUPS,
                  False)
    cid = p.start(first, "pamidronate", "pam", dose=1.0, dose_unit="mg/kg",
                  frequency="monthly" if regimen == "monthly" else "every 3 months",
                  route="intravenous", regimen=regimen, reason="refractory to NSAID")
    if p.vit_d < 50 and rng.random() < 0.8:
        vid = p.start(first, "vitamin_d", "vitd", dose=rng.choice((800.0, 1000.0, 2000.0)),
                      dose_unit="IU", frequency="daily", route="oral", reason="low 25-OH vitamin D")
        p.stop(first + _days(rng.randint(90, 180)), vid, "completed")

    def infuse(day: date, mg_per_kg: float, premedication: bool) -> None:
        weight = p.weight(day)
        p.add("InfusionAdministered", day, {
            "drug": "pamidronate",
            "dose_mg": float(min(60, max(1, math.floor(weight * mg_per_kg)))),
            "weight_kg": weight, "course_id": cid, "premedication_paracetamol": premedication,
            "duration_hours": rng.choice((3.0, 3.5, 4.0)),
            "diluent_ml": 250.0 if weight < 35 else 500.0}, nurse, rng.randint(540, 615))

    for k, dose in enumerate((0.5, 1.0, 1.0)):
        infuse(first + _days(k), dose, True)
    if rng.random() < 0.3:  # flu-like syndrome after the first infusion
        p.add("AdverseEventRecorded", first, {
            "kind": "flu_like", "severity": "mild" if rng.random() < 0.75 else "moderate",
            "symptomatic": True, "related_drug": "pamidronate"}, nurse, rng.randint(1080, 1290))
    elif rng.random() < 0.05:
        p.add("AdverseEventRecorded", first + _days(1), {
            "kind": "bone_pain", "severity": "mild", "symptomatic": True,
            "related_drug": "pamidronate"}, p.doctor)
    dose2, dose3 = first + _days(1), first + _days(2)
    r = rng.random()  # after dose 2: the morning of dose 3; sometimes late or missed
    if r < 0.85:
        p.lab_set(dose3, POST_DOSE_GROUPS, True, rng.randint(465, 525))
    elif r < 0.93:
        p.lab_set(next_weekday(dose2 + _days(rng.randint(8, 13))), POST_DOSE_GROUPS, True)
    r = rng.random()
    if r < 0.85:
        p.lab_set(next_weekday(dose3 + _days(rng.randint(1, 6))), POST_DOSE_GROUPS, True)
    elif r < 0.93:
        p.lab_set(next_weekday(dose3 + _days(rng.randint(8, 20))), POST_DOSE_GROUPS, True)
    last = dose3
    if regimen == "monthly":
        for k in range(1, rng.randint(3, 8) + 1):
            last = next_weekday(add_months(first, k))
            if rng.random() < 0.5:
                p.labs(last, ("calcium", "phosphate", "creatinine"), True, rng.randint(465, 525))
            infuse(last, 1.0, rng.random() < 0.5)
    else:
        for k in range(1, rng.randint(1, 3) + 1):
            start = next_weekday(add_months(first, 3 * k), 2)
            if rng.random() < 0.5:
                p.labs(start, ("calcium", "phosphate", "creatinine"), True, rng.randint(465, 525))
            for j in range(3):
                last = start + _days(j)
                infuse(last, 1.0, j == 0 and rng.random() < 0.5)
    if rng.random() < 0.02:  # not recommended after induction (Table 3): the odd case
        p.add("ProcedureRecorded", last + _days(rng.randint(20, 200)),
              {"procedure": "bone_surgery", "label": "physeal bar resection"}, p.doctor)
    p.stop(last + _days(rng.randint(14, 60)), cid,
           "remission" if rng.random() < 0.75 else "completed")



def _nsaid(p: SimulatedPatient, day: date, naproxen: bool) -> str:
    w = p.weight(day)
    if naproxen:
        return p.start(day, "naproxen", "nsaid", dose=min(500.0, max(125.0, round(w / 5) * 25.0)),
                       dose_unit="mg", frequency="every 12 hours", route="oral",
                       reason="bone pain")
    return p.start(day, "ibuprofen", "nsaid", dose=min(600.0, max(100.0, round(w / 5) * 50.0)),
                   dose_unit="mg", frequency="every 8 hours", route="oral", reason="bone pain")


def _workup(p: SimulatedPatient, fc: date, diagnosis: date, onset: date, foci: list[Lesion],
            presenting: list[Lesion], comorbidity: str | None, infection_first: bool) -> None:
    """First consultation to diagnosis: labs, radiograph, scintigraphy, MRI, biopsy, Jansson."""
    rng, span = p.rng, (diagnosis - fc).days
    minute = rng.randint(480, 600)
    for analyte in ("crp", "leukocytes", "haemoglobin", "platelets"):
        p.lab(fc, minute, analyte, p.value(analyte))
    esr = p.lab(fc, minute, "esr", p.value("esr"))
    lytic = rng.random() < 0.5
    p.imaging(fc, "radiograph", presenting[:1], None,
              ["lytic lesion"] if lytic and rng.random() < 0.6 else
              ["sclerosis"] if rng.random() < 0.2 else [])
    if infection_first:
        cid = p.start(fc, "antibiotic", "abx", route=rng.choice(("intravenous", "oral")),
                      reason="suspected bacterial osteomyelitis")
        stop = min(fc + _days(rng.randint(14, 42)), diagnosis + _days(rng.randint(0, 7)))
        p.stop(max(fc + _days(1), stop), cid, "ineffective")
    if comorbidity in ("acne_conglobata", "psoriasis", "palmoplantar_pustulosis"):
        p.add("ComorbidityRecorded", fc, {"condition": comorbidity}, p.doctor)
    p.imaging(fc + _days(int(span * 0.35)), "bone_scintigraphy", foci, True, ["increased uptake"])
    findings = ["bone marrow oedema"] if rng.random() < 0.75 else []
    if lytic:
        findings.append("lytic lesion")
    for finding in ("cortical thickening", "periosteal reaction", "soft tissue infiltration"):
        if rng.random() < 0.17:
            findings.append(finding)
    p.imaging(fc + _days(int(span * 0.55)), "mri", foci if rng.random() < 0.6 else presenting,
              True, findings or ["bone marrow oedema"])
    sterile: bool | None = None
    if rng.random() < 0.6:
        found = [f for f, share in (("inflammation", 0.8), ("fibrosis", 0.7), ("necrosis", 0.25),
                                    ("sclerosis", 0.1)) if rng.random() < share]
        if rng.random() < 0.1:
            found = ["no_findings"]
        found = found or ["inflammation"]
        culture_sterile = rng.random() < 0.97
        p.add("BiopsyRecorded", fc + _days(int(span * 0.75)), {
            "site": presenting[0][0], "findings": found, "culture_sterile": culture_sterile,
            "malignancy": False}, p.doctor)
        sterile = culture_sterile and any(
            f in ("inflammation", "fibrosis", "sclerosis") for f in found)
    if comorbidity == "ibd":
        p.add("ComorbidityRecorded", diagnosis + _days(rng.randint(0, 120)),
              {"condition": "ibd", "label": "Crohn disease"}, p.doctor)
    p.add("DiagnosisAssessed", diagnosis, {"diagnosed_on": diagnosis.isoformat(), "criteria": {
        "multifocal_lesions": len({s for s, _ in foci}) >= 2,
        "osteolytic_or_sclerotic_lesion": lytic if rng.random() < 0.9 else None,
        "sterile_biopsy_inflammation": sterile,
        "palmoplantar_psoriasis_pustulosis":
            True if comorbidity in ("psoriasis", "palmoplantar_pustulosis")
            else (False if rng.random() < 0.8 else None),
        "good_general_status": True if rng.random() < 0.9 else None,
        "course_over_6_months": diagnosis > add_months(onset, 6),
        "normal_labs_raised_esr": esr > 20,
        "hyperostosis": None if rng.random() < 0.6 else rng.random() < 0.05,
        "autoimmune_association": comorbidity in ("ibd", "acne_conglobata"),
    }, "initially_treated_as_infection": infection_first}, p.doctor)


def _simulate(rng: random.Random, ref: str, diagnosis: date, zone: ZoneInfo) -> SimulatedPatient:
    """One patient's course: work-up, episodes (onset, then relapses) and the stepped
    treatment of Table 2, with quiet stretches in between."""
    p = SimulatedPatient(rng, ref, diagnosis, zone)
    delay_days = max(5, round(min(16.0, max(0.2, rng.lognormvariate(math.log(2.4), 1.0)))
                              * 30.4375))
    late = delay_days > 152  # over 5 months: maintenance treatment in the seed's series
    onset = diagnosis - _days(delay_days)
    fc = p.first_day = onset + _days(int(delay_days * rng.uniform(0.1, 0.6)))
    foci = _foci(rng)
    presenting = foci if len(foci) == 1 or rng.random() < 0.6 else \
        foci[:rng.randint(1, len(foci) - 1)]  # the rest found by scintigraphy
    r = rng.random()
    comorbidity = ("ibd" if r < 0.06 else "acne_conglobata" if r < 0.12 else
                   "palmoplantar_pustulosis" if r < 0.15 else "psoriasis" if r < 0.17 else None)
    autoimmune = comorbidity in ("ibd", "acne_conglobata")
    naproxen = rng.random() < 0.65
    p.add("PatientEnrolled", fc, {"birth_date": p.birth.isoformat(), "sex": p.sex,
                                  "symptom_onset": onset.isoformat(),
                                  "first_consultation": fc.isoformat()}, "import")
    p.visit(fc, True, presenting, first=True)
    nsaid = _nsaid(p, fc, naproxen)
    _workup(p, fc, diagnosis, onset, foci, presenting, comorbidity, rng.random() < 0.58)

    relapses = 0 if rng.random() < (0.12 if late or autoimmune else 0.4) else \
        1 + min(4, int(rng.expovariate(1.2)))
    pred_ep = (0 if relapses == 0 or rng.random() < 0.7 else 1) if rng.random() < 0.5 else -1
    pam_ep = -1
    if rng.random() < (0.68 if late else 0.22):
        pam_ep = 0 if relapses == 0 or rng.random() < 0.35 else rng.randint(1, min(2, relapses))
        if pred_ep > pam_ep:
            pred_ep = pam_ep
    mtx_ep = rng.randint(0, relapses) if pam_ep < 0 and not autoimmune and rng.random() < 0.08 \
        else -1
    bio_ep, bio_reason = -1, "associated inflammatory disease"
    if autoimmune and rng.random() < 0.7:
        bio_ep = 0 if relapses == 0 or rng.random() < 0.5 else 1
    elif 0 <= pam_ep < relapses and rng.random() < 0.2:
        bio_ep, bio_reason = rng.randint(pam_ep + 1, relapses), "refractory to pamidronate"

    long_courses: list[tuple[str, str, date]] = []
    end = diagnosis
    for episode in range(relapses + 1):
        if episode == 0:
            lesions, treat_day = presenting, diagnosis
            end = diagnosis + _days(rng.randint(21, 70))
            visits = [diagnosis] if diagnosis > fc else []
        else:
            start = end + _days(rng.randint(45, 420))
            _quiet(p, end, start, foci, False)
            treat_day = next_weekday(start + _days(rng.randint(0, 10)))
            end = treat_day + _days(rng.randint(21, 84))
            lesions = rng.sample(foci, rng.randint(1, min(3, len(foci))))
            nsaid = _nsaid(p, treat_day, naproxen)
            visits = [treat_day]
            if rng.random() < 0.6:
                p.labs(treat_day, ("crp", "esr"))
            if rng.random() < 0.5:
                p.imaging(next_weekday(treat_day + _days(rng.randint(3, 21))), "mri", lesions, True,
                          ["bone marrow oedema"])
        pred_stop = None
        if episode == pred_ep:
            begin = (max(diagnosis + _days(1), fc + _days(rng.randint(28, 42))) if episode == 0
                     else treat_day + _days(rng.randint(0, 14)))
            dose = float(min(60, round(p.weight(begin) * rng.uniform(1.0, 2.0))))
            cid = p.start(begin, "prednisone", "pred", dose=dose, dose_unit="mg/day",
                          frequency="daily", route="oral", reason="persistent symptoms")
            length = rng.randint(14, 35)
            if length > 21:  # two weeks, then taper (Table 2)
                p.add("MedicationChanged", begin + _days(14),
                      {"course_id": cid, "dose": float(max(5, round(dose / 2)))}, p.doctor)
            pred_stop = begin + _days(length)
            p.stop(pred_stop, cid, "completed")
            end = max(end, begin + _days(rng.randint(7, 21)))
        if episode == pam_ep:
            first = (pred_stop + _days(rng.randint(3, 14)) if pred_stop is not None
                     else treat_day + _days(rng.randint(7, 35)))
            first = next_weekday(first, 2)
            _pamidronate(p, first, treat_day)
            end = max(end, first + _days(rng.randint(14, 60)))
        if episode == mtx_ep:
            begin = treat_day + _days(rng.randint(7, 42))
            dose = min(25.0, round(p.bsa(begin) * rng.uniform(10.0, 15.0), 1))
            long_courses.append(("methotrexate", p.start(
                begin, "methotrexate", "mtx", dose=dose, dose_unit="mg", frequency="weekly",
                route=rng.choice(("oral", "subcutaneous")), reason="relapsing disease"), begin))
            end = max(end, begin + _days(rng.randint(14, 56)))
        if episode == bio_ep:
            begin = treat_day + _days(rng.randint(7, 42))
            long_courses.append(("adalimumab", p.start(
                begin, "adalimumab", "ada", dose=float(min(40, round(24 * p.bsa(begin)))),
                dose_unit="mg", frequency="every 14 days", route="subcutaneous",
                reason=bio_reason), begin))
            end = max(end, begin + _days(rng.randint(14, 56)))
        v = visits[-1] if visits else fc
        while True:
            v = next_weekday(v + _days(rng.randint(14, 42)))
            if v >= end:
                break
            visits.append(v)
        for i, day in enumerate(visits):
            p.visit(day, True, lesions, first=episode > 0 and i == 0)
            if i and rng.random() < 0.35:
                p.labs(day, ("crp", "esr", "leukocytes"))
        p.stop(end + _days(rng.randint(0, 28)), nsaid, "remission")

    for drug, cid, begin in long_courses:
        stop = end + _days(rng.randint(365, 540)) if rng.random() < 0.75 else None
        day = begin + _days(rng.randint(80, 100))
        while drug == "methotrexate" and day < (stop or end + _days(720)):
            p.labs(next_weekday(day), ("leukocytes", "platelets", "alt", "ast"))
            day += _days(rng.randint(80, 100))
        if stop is not None:
            p.stop(stop, cid, "remission")
    if rng.random() < 0.02:
        p.add("ComorbidityRecorded", diagnosis + _days(rng.randint(540, 900)),
              {"condition": "lymphoma", "label": "non-Hodgkin lymphoma"}, p.doctor)
    _quiet(p, end, max(end + _days(rng.randint(180, 900)), p.last_day + _days(30)), foci, True)
    return p


def generate_cohort(patients: int, seed: int, until: date, start_year: int = 2010, *,
                    zone: ZoneInfo | None = None) -> Iterator[dict[str, Any]]:
    """Import lines for ``patients`` synthetic patients, patient by patient, each patient's
    events in clinical order, nothing after ``until``. Timed events carry the offset of
    ``zone`` (default: the protocol's centre time zone).

    Diagnoses fall between 1 January of ``start_year`` and two years before ``until`` (or 30
    days before it when that window is empty), so most courses have follow-up."""
    if patients < 0:
        raise ValueError("patients must be zero or more")
    low = date(start_year, 1, 1).toordinal()
    high = (until - _days(730)).toordinal()
    if high < low:
        high = (until - _days(30)).toordinal()
    if high < low:
        raise ValueError(f"until must be at least 30 days after {start_year}-01-01")
    last = until.toordinal()
    centre = zone or ZoneInfo(Protocol().timezone)
    for index in range(1, patients + 1):
        rng = random.Random(f"cno-cohort:{seed}:{index}")
        ref = f"G{seed}-{index:04d}"
        course = _simulate(rng, ref, date.fromordinal(rng.randint(low, high)), centre)
        course.rows.sort()
        for n, (day, _m, _s, etype, when, data, by) in enumerate(course.rows, 1):
            if day > last:
                break
            yield {"type": etype, "patient": ref, "occurred_at": when, "recorded_by": by,
                   "idempotency_key": f"gen-{seed}-{ref}-{n}", "data": data}


def write_cohort(target: str | os.PathLike[str] | IO[bytes] | IO[str], patients: int,
                 seed: int, until: date, start_year: int = 2010, *,
                 zone: ZoneInfo | None = None) -> int:
    """Write the cohort as compact JSON lines to a path or an open stream (text or binary);
    returns the number of lines written."""
    if isinstance(target, str | os.PathLike):
        with open(target, "wb") as fh:
            return write_cohort(fh, patients, seed, until, start_year, zone=zone)
    text = isinstance(target, io.TextIOBase)
    count, chunk = 0, []
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    for line in generate_cohort(patients, seed, until, start_year, zone=zone):
        chunk.append(dumps(line, option=newline))
        count += 1
        if len(chunk) >= 4096:
            blob = b"".join(chunk)
            target.write(blob.decode() if text else blob)  # type: ignore[arg-type]
            chunk = []
    if chunk:
        blob = b"".join(chunk)
        target.write(blob.decode() if text else blob)  # type: ignore[arg-type]
    return count
