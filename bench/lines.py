"""Line-decoding benchmark: what the duplicate-key check costs the import's decoder.

    .venv/bin/python -m bench.lines            # 100 patients' generated lines, 5 rounds
    .venv/bin/python -m bench.lines --quick    # 20 patients, 2 rounds

Decodes the same generated cohort lines (1) as the generator writes them (compact: the
re-encoding fast path of ``events.lines.duplicate_key``) and (2) re-serialised with spaces
(``json.dumps`` defaults: the key-count fast path), each with the full
``decode_line`` and with the pydantic validation alone (the decoder before the check);
then a whole in-process import of the compact lines into a fresh SQLite file with and
without the check. Prints lines (events) per second, the best of the rounds."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import date
from pathlib import Path
from unittest import mock

import orjson

from events.lines import _ADAPTER, decode_line
from events.store import EventStore
from events.store.engine import make_engine
from tracker import db
from tracker.clock import SystemClock
from tracker.importing import import_lines
from tracker.protocol import DEFAULT_PROTOCOL
from tracker.synthetic import generate_cohort


def rates(lines: list[bytes], decoders: list[Callable[[bytes], object]],
          rounds: int) -> list[float]:
    """Lines per second of each decoder, the best of interleaved rounds (other work on
    the machine then weighs on every decoder alike)."""
    best = [float("inf")] * len(decoders)
    for _ in range(rounds):
        for i, decode in enumerate(decoders):
            start = time.perf_counter()
            for raw in lines:
                decode(raw)
            best[i] = min(best[i], time.perf_counter() - start)
    return [len(lines) / b for b in best]


def import_rate(lines: list[bytes], *, check: bool) -> float:
    """Events per second of a whole import into a fresh SQLite file, with or without the
    duplicate-key check."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        db.upgrade(url)
        engine = make_engine(url)
        store = EventStore(engine)
        with nullcontext() if check else mock.patch("events.lines.duplicate_key",
                                                   return_value=None):
            start = time.perf_counter()
            report = import_lines(lines, store, clock=SystemClock(), protocol=DEFAULT_PROTOCOL)
            elapsed = time.perf_counter() - start
        engine.dispose()
    return report.written / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lines")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    patients, rounds = (20, 2) if args.quick else (100, 5)
    docs = list(generate_cohort(patients, 7, date(2024, 12, 31), 2020))
    compact = [orjson.dumps(d) for d in docs]
    spaced = [json.dumps(d).encode() for d in docs]
    print(f"{len(docs)} lines, best of {rounds} rounds, lines/s")
    print(f"{'input':<28}{'validation only':>18}{'decode_line':>14}{'ratio':>8}")
    for name, lines in (("compact (re-encoding equal)", compact),
                        ("spaced (key count)", spaced)):
        plain, full = rates(lines, [_ADAPTER.validate_json, decode_line], rounds)
        print(f"{name:<28}{plain:>18,.0f}{full:>14,.0f}{full / plain:>8.2f}")
    import_rate(compact[:500], check=True)  # warm up: migrations, imports, caches
    without = with_check = 0.0
    for _ in range(rounds):
        without = max(without, import_rate(compact, check=False))
        with_check = max(with_check, import_rate(compact, check=True))
    print(f"whole import into SQLite, events/s: {without:,.0f} without the check, "
          f"{with_check:,.0f} with it ({with_check / without:.2f})")


if __name__ == "__main__":
    main()
