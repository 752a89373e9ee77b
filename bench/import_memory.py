"""Peak memory of ``cno-tracker import`` against the size of the file: run on demand.

    .venv/bin/python -m bench.import_memory                       # 1,000,000 lines
    .venv/bin/python -m bench.import_memory --lines 100000 --backends sqlite

Writes a JSON Lines file of ``--lines`` generated events (``tracker.synthetic``: realistic
lines, patient by patient), imports it with the CLI as a child process into a fresh,
migrated database per backend, and reports the child's peak resident set size (its
``ru_maxrss`` from ``wait4``: the kernel's own high-water mark, start-up included) with
the wall time. The target is at most 300 MB for 1,000,000 lines on both databases.
Databases are named ``cno_bench_<pid>_<what>`` (PostgreSQL) or live in a temporary
directory (SQLite), and are dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import orjson

from bench.databases import Databases
from tracker.synthetic import generate_cohort

TARGET_MB = 300
CLI = str(Path(sys.executable).parent / "cno-tracker")


def write_lines(path: Path, lines: int) -> int:
    """``lines`` generated lines (about 12 patients per 1,000 lines), cut at that count."""
    written = 0
    with path.open("wb") as fh:
        for entry in generate_cohort(lines // 40 + 10, 7, date(2024, 12, 31), start_year=2012):
            fh.write(orjson.dumps(entry) + b"\n")
            written += 1
            if written == lines:
                break
    return written


def run_import(url: str, path: Path) -> tuple[int, float, float, str]:
    """(exit code, peak RSS in MB, wall seconds, last stderr line) of one CLI import."""
    env = {**os.environ, "CNO_TRACKER_DATABASE_URL": url}
    start = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([CLI, "import", str(path)], env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        tail = (out.read().decode().strip() or err.read().decode().strip()).splitlines()
    return proc.returncode, usage.ru_maxrss / 1024, seconds, tail[-1] if tail else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get(
        "CNO_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cno-bench-") as tmp:
        path = Path(tmp) / "import.jsonl"
        print(f".. writing {opts.lines} lines", file=sys.stderr)
        lines = write_lines(path, opts.lines)
        size_mb = path.stat().st_size / 1e6
        dbs = Databases(opts.pg_url, Path(tmp), prefix="cno_bench")
        rows = []
        failed = False
        try:
            for backend in opts.backends.split(","):
                print(f".. {backend}: importing", file=sys.stderr)
                url = dbs.fresh("import_memory", backend=backend)
                code, peak, seconds, tail = run_import(url, path)
                ok = code == 0 and peak <= TARGET_MB
                failed |= not ok
                rows.append(f"{backend:<11} {lines:>9,} {size_mb:>8.0f} {peak:>9.0f} "
                            f"{seconds:>8.0f} {lines / seconds:>9,.0f}  "
                            f"{'ok' if ok else 'MISS'} (exit {code}: {tail[:60]})")
        finally:
            dbs.close()
    print(f"{'db':<11} {'lines':>9} {'file MB':>8} {'peak MB':>9} {'seconds':>8} "
          f"{'lines/s':>9}  result (target: peak <= {TARGET_MB} MB)")
    print("\n".join(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
