"""What a ``bench.store`` run is asked to do and what it measured: its options, its
result rows and how alternating read rounds are merged. Standard library only, so the
tests can check them without the benchmark's extras (eventsourcing) installed."""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

DESCRIPTION = "Event-store benchmark for CNO Tracker: run on demand, never collected as a test."


@dataclass
class Result:
    section: str
    backend: str
    system: str
    events: int
    seconds: float
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Options:
    backends: list[str]
    pg_url: str
    appends: int
    writers: int
    per_writer: int
    import_events: int
    read_sizes: list[int]
    generator: str
    diagnostics: bool
    traced: bool
    #: each read is timed this many times, the systems taking turns; the fastest is kept
    read_rounds: int = 3
    #: each system's single appends (and its writers) are timed this many times, taking
    #: turns; the fastest is kept (3000 SQLite appends take ~0.2 s: one busy spell
    #: decided the ratio)
    append_rounds: int = 3
    #: which sections run (all by default): append, writers, import, read
    sections: frozenset[str] = frozenset(("append", "writers", "import", "read"))


def faster(kept: Result | None, new: Result) -> Result:
    """The faster of two rounds of one read, or of one system's single appends or
    writers, keeping the first round's note and memory figures (only a read's first round
    runs under tracemalloc). The rounds alternate between the systems, so a busy spell on
    the shared machine falls on each of them alike."""
    if kept is None:
        return new
    if new.seconds >= kept.seconds:
        return kept
    return dataclasses.replace(new, note=kept.note, extra=kept.extra)


def parse_args(argv: list[str] | None) -> tuple[Options, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="python -m bench.store", description=DESCRIPTION)
    p.add_argument("--quick", action="store_true", help="small sizes: a 30-second smoke run")
    p.add_argument("--backends", default="sqlite,postgresql",
                   help="comma-separated: sqlite, postgresql")
    p.add_argument("--pg-url", default=os.environ.get(
        "CNO_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server where databases may be created (any database name)")
    p.add_argument("--appends", type=int, help="single-append events (default 3000)")
    p.add_argument("--writers", type=int, default=4, help="concurrent writers (default 4)")
    p.add_argument("--per-writer", type=int, help="events per writer (default appends/writers)")
    p.add_argument("--import-events", type=int, help="lines in the import file (default 50000)")
    p.add_argument("--read-sizes", help="comma-separated log sizes (default 50000,200000)")
    p.add_argument("--read-rounds", type=int,
                   help="times each read is timed, the systems taking turns; the fastest "
                        "is kept (default 3, --quick 1)")
    p.add_argument("--append-rounds", type=int,
                   help="times each system's single appends and writers are timed, the "
                        "systems taking turns; the fastest is kept (default 3, --quick 1)")
    p.add_argument("--generator", choices=("cohort", "simple"), default="cohort",
                   help="tracker.synthetic.generate_cohort, or the bench's own simple lines")
    p.add_argument("--no-diagnostics", action="store_true",
                   help="skip the diagnostic rows (ours-noping, ours-rows)")
    p.add_argument("--no-tracemalloc", action="store_true",
                   help="skip the second, traced read pass (memory from RSS only)")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--sections", default="append,writers,import,read",
                   help="comma-separated sections to run (default: all): "
                        "append, writers, import, read")
    a = p.parse_args(argv)
    sections = frozenset(x.strip() for x in a.sections.split(",") if x.strip())
    unknown = sections - {"append", "writers", "import", "read"}
    if unknown:
        p.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    for flag, value in (("--read-rounds", a.read_rounds), ("--append-rounds", a.append_rounds)):
        if value is not None and value < 1:
            p.error(f"{flag} must be at least 1")
    appends = a.appends or (300 if a.quick else 3000)
    sizes = ([int(s) for s in a.read_sizes.split(",")] if a.read_sizes
             else [5000, 20000] if a.quick else [50_000, 200_000])
    return Options(
        backends=[b.strip() for b in a.backends.split(",") if b.strip()],
        pg_url=a.pg_url, appends=appends, writers=a.writers,
        per_writer=a.per_writer or max(1, appends // max(1, a.writers)),
        import_events=a.import_events or (5000 if a.quick else 50_000),
        read_sizes=sizes, read_rounds=a.read_rounds or (1 if a.quick else 3),
        append_rounds=a.append_rounds or (1 if a.quick else 3),
        generator=a.generator, diagnostics=not a.no_diagnostics,
        traced=not a.no_tracemalloc, sections=sections), a
