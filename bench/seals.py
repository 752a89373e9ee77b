"""Seal benchmark: what signing and checking the whole log costs.

    .venv/bin/python -m bench.seals            # 2,000 generated patients
    .venv/bin/python -m bench.seals --quick    # 300 patients

On SQLite (a temporary file) and PostgreSQL (``cno_bench_seals_<pid>_*``, dropped at the
end): imports a generated cohort, then times ``make_seal`` (capture in one snapshot,
sign, append), ``check_seal`` of that seal (the heads at their sealed versions, the count,
the last position), ``missing_protections`` and the full hash-chain ``verify`` for
comparison, and prints the seal document's size. The best of three rounds each."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.databases import Databases
from events.store import EventStore
from events.store.engine import make_engine
from tracker.clock import FixedClock
from tracker.importing import import_lines
from tracker.protocol import DEFAULT_PROTOCOL
from tracker.sealing import check_seal, make_seal, missing_protections
from tracker.seals import SealKeys
from tracker.synthetic import generate_cohort

PG_URL = os.environ.get("CNO_TEST_POSTGRES_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
KEYS = SealKeys.from_settings("bench:0123456789abcdef-bench", None)


def best_of(fn: Callable[[], Any], rounds: int = 3) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(rounds):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best * 1000, value


def measure(url: str, lines: list[bytes], label: str) -> None:
    engine = make_engine(url)
    store = EventStore(engine)
    clock = FixedClock(datetime(2026, 12, 1, tzinfo=UTC))
    import_lines(lines, store, clock=clock, protocol=DEFAULT_PROTOCOL)
    events = store.count()
    seal_ms, (_sid, seal) = best_of(lambda: make_seal(store, KEYS, clock))
    check_ms, check = best_of(lambda: check_seal(store, seal, KEYS))
    assert not check.problems and not check.unchecked
    triggers_ms, missing = best_of(lambda: missing_protections(store))
    assert not missing
    verify_ms, breaks = best_of(lambda: store.verify(), rounds=1)
    assert not breaks
    size = len(orjson.dumps(seal.document()))
    print(f"{label:<11}{events:>9,}{len(seal.state.heads):>9,}{seal_ms:>10.0f}"
          f"{check_ms:>10.0f}{triggers_ms:>10.1f}{verify_ms:>11.0f}{size / 1024:>10.0f}")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.seals")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    patients = 300 if args.quick else 2000
    lines = [orjson.dumps(d) for d in generate_cohort(patients, 7, date(2024, 12, 31), 2021)]
    print(f"{patients} patients; milliseconds, best of 3 (verify: one run); seal size KiB")
    print(f"{'database':<11}{'events':>9}{'streams':>9}{'seal':>10}{'check':>10}"
          f"{'triggers':>10}{'verify':>11}{'size':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        dbs = Databases(PG_URL, Path(tmp), prefix="cno_bench_seals")
        try:
            measure(dbs.fresh("sqlite", backend="sqlite"), lines, "SQLite")
            measure(dbs.fresh("pg"), lines, "PostgreSQL")
        finally:
            dbs.close()


if __name__ == "__main__":
    main()
