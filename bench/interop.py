"""Interop benchmark for CNO Tracker: run on demand, never collected as a test.

    .venv/bin/python -m bench.interop            # full run (about 2 minutes on 2 cores)
    .venv/bin/python -m bench.interop --quick    # smoke run

Measures, on PostgreSQL (and SQLite for the import):

1. **fhir import**: one transaction Bundle of P patients, each with a Patient (names,
   identifiers, address — as an EHR sends them) and 25 Observations (a blood panel in
   mg/dL, mapped LOINC codes), imported with ``--enrol`` into an empty database through
   ``tracker.interop.fhir_in.import_fhir``. Resources/s = all resources / wall time, and
   the share spent parsing and validating with the fhir.resources R4B models. Target
   ≥ 5,000 resources/s. Loading the model classes (the first document a process parses)
   is timed apart, before.
2. **hl7 listen**: the MLLP listener (``tracker.interop.mllp.Listener``, 2 consumers as in
   ``hl7 listen``, group commit) on loopback, 4 concurrent senders (python-hl7's
   MLLPClient), each sending its messages one after another and waiting for each
   acknowledgement; every message an ORU^R01 with 3 mapped results for a patient linked
   beforehand. Messages/s = messages acknowledged AA / wall time. Target >= 300/s.

Every database is named ``cno_bench_interop_<pid>_<what>`` and dropped at the end.
PostgreSQL: ``--pg-url`` or ``CNO_BENCH_PG_URL`` (default the local server).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import orjson
from hl7.client import MLLPClient

from bench.databases import Databases
from tracker.bootstrap import bootstrap
from tracker.interop import fhir_in
from tracker.interop.hl7_in import receive, receive_many
from tracker.interop.identity import LinkKey, LinkTable
from tracker.interop.ingest import Ingest
from tracker.interop.mllp import Listener
from tracker.settings import Settings

KEY = "bench-link-key-0123456789abcdef0123456789"
PANEL = [("17861-6", 9.3, "mg/dL"), ("2160-0", 0.5, "mg/dL"), ("2777-1", 4.4, "mg/dL"),
         ("19123-9", 2.0, "mg/dL"), ("1988-5", 0.4, "mg/dL")]


def _ingest(url: str) -> tuple[Ingest, Any]:
    from pydantic import SecretStr

    app = bootstrap(Settings(database_url=url))
    links = LinkTable(app.engine, LinkKey(SecretStr(KEY)))
    return Ingest(app.store, links, clock=app.clock, protocol=app.protocol, enrol=True,
                  recorded_by="bench"), app


def make_bundle(patients: int, per_patient: int = 25) -> bytes:
    entries: list[dict[str, Any]] = []
    for p in range(patients):
        url = f"urn:uuid:00000000-0000-4000-8000-{p:012d}"
        entries.append({"fullUrl": url, "resource": {
            "resourceType": "Patient", "id": f"MRN{p:07d}",
            "identifier": [{"system": "http://hospital.example/mrn", "value": f"MRN{p:07d}"}],
            "name": [{"family": "Doe", "given": ["Jane"]}], "gender": "female",
            "birthDate": "2012-05-01",
            "address": [{"line": ["1 Main St"], "city": "Springfield"}]},
            "request": {"method": "POST", "url": "Patient"}})
        for i in range(per_patient):
            code, value, unit = PANEL[i % len(PANEL)]
            day = 1 + i // len(PANEL)
            entries.append({"fullUrl": f"urn:uuid:{p:08d}-{i:04d}-4000-8000-000000000000",
                            "resource": {
                "resourceType": "Observation", "id": f"o{p}-{i}", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "subject": {"reference": url},
                "effectiveDateTime": f"2025-03-{day:02d}T08:15:00+01:00",
                "valueQuantity": {"value": value, "unit": unit,
                                  "system": "http://unitsofmeasure.org", "code": unit}},
                "request": {"method": "POST", "url": "Observation"}})
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def bench_fhir(url: str, patients: int, label: str) -> None:
    raw = make_bundle(patients)
    resources = patients * 26
    ingest, app = _ingest(url)
    try:
        # the first document loads the fhir.resources model classes (once per process:
        # the web application has them loaded): timed apart from the throughput
        loading = time.perf_counter()
        fhir_in.parse(make_bundle(1, 1))
        loaded = time.perf_counter() - loading
        started = time.perf_counter()
        entries = fhir_in.parse(raw)
        parsed = time.perf_counter()
        mapped = fhir_in.map_entries(entries, zone=app.protocol.zone)
        outcome = ingest.run(mapped.subjects, mapped.items, mapped.skips)
        done = time.perf_counter()
    finally:
        app.close()
    total = done - started
    print(f"fhir import {label}: {resources:,} resources in {total:.2f} s = "
          f"{resources / total:,.0f} resources/s (parse+validate {parsed - started:.2f} s, "
          f"map+append {done - parsed:.2f} s; {outcome.written:,} events; loading the "
          f"model classes first took {loaded:.2f} s)  target >= 5,000")


def oru(n: int, patient: int) -> bytes:
    stamp = "20250303081500+0100"
    return "\r".join([
        f"MSH|^~\\&|LAB|HOSP|CNO|CNO|{stamp}||ORU^R01|B{n:08d}|P|2.5.1",
        f"PID|1||H{patient:06d}^^^HOSP^MR||Doe^Jane||20120501|F",
        f"OBR|1|P{n}|F{n}|PANEL^Panel^L|||{stamp}",
        "OBX|1|NM|17861-6^Calcium^LN||9.3|mg/dL|||||F",
        "OBX|2|NM|2160-0^Creatinine^LN||0.5|mg/dL|||||F",
        "OBX|3|NM|2777-1^Phosphate^LN||4.4|mg/dL|||||F", ""]).encode()


def bench_hl7(url: str, per_sender: int, senders: int = 4) -> None:
    ingest, app = _ingest(url)
    # the patients exist already (a lab feed for enrolled patients)
    warm = [oru(10_000_000 + p, p) for p in range(senders * 10)]
    for m in warm:
        receive(m, ingest)
    handle = functools.partial(receive_many, ingest=ingest)
    loop = asyncio.new_event_loop()
    listener = Listener(handle, idle_timeout=30)
    port = loop.run_until_complete(listener.start("127.0.0.1", 0))
    serving = loop.create_task(listener.serve_forever())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def sender(s: int) -> int:
        ok = 0
        with MLLPClient("127.0.0.1", port) as client:
            for i in range(per_sender):
                ack = client.send_message(oru(s * per_sender + i, s * 10 + i % 10))
                ok += b"MSA|AA|" in ack
        return ok

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(senders) as pool:
            ok = sum(pool.map(sender, range(senders)))
        took = time.perf_counter() - started
    finally:
        loop.call_soon_threadsafe(serving.cancel)
        asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        app.close()
    total = senders * per_sender
    print(f"hl7 listen: {ok:,}/{total:,} acknowledged AA in {took:.2f} s = {ok / took:,.0f} "
          f"messages/s with {senders} concurrent senders  target >= 300")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pg-url", default=os.environ.get(
        "CNO_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    patients = 40 if args.quick else 400
    per_sender = 50 if args.quick else 500
    print(f"bench.interop {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores")
    dbs = Databases(args.pg_url, prefix="cno_bench_interop")
    try:
        bench_fhir(dbs.fresh("fhir_pg"), patients, "PostgreSQL")
        bench_fhir(dbs.fresh("fhir_sqlite", backend="sqlite"), patients, "SQLite")
        bench_hl7(dbs.fresh("hl7_pg"), per_sender)
    finally:
        dbs.close()


if __name__ == "__main__":
    main()
