"""Web benchmark for CNO Tracker: run on demand, never collected as a test.

    .venv/bin/python -m bench.web             # 10,000 patients, 20 clients, 10,000 requests
    .venv/bin/python -m bench.web --quick     # 1,000 patients, 2,000 requests (a smoke run)

On PostgreSQL: a cohort made by ``tracker.synthetic`` is imported and folded into the read
model, 20 staff accounts are made (argon2id with the default parameters), and
``cno-tracker web --workers 2`` (``--web-workers``: one process per core, each with its own
caches) is started on a free loopback port. Then 20 client
threads, each logged in through ``POST /login``, send a mix of pages:

- ward list ``/`` (target p95 ≤ 150 ms),
- patient page ``/patients/<ref>`` (target p95 ≤ 250 ms),
- its course chart ``/patients/<ref>/chart``, drawn once per stream version and then
  served from the cache (cached p95 reported; a first, *cold* chart: target ≤ 1.5 s),

over a pool of 40 patients that is revisited (a ward round, ``--pool``), until
``--requests`` are done (target ≥ 100 requests/s). The web process's resident memory is
sampled every 1,000 requests (target: flat, i.e. the last sample within 10 % + 20 MB of
the one after the first 1,000).

Caveats: the machine's 2 cores are shared by PostgreSQL, the web process and the client
threads of this process (and by whatever else runs): the figures are a floor for a
dedicated machine, and they move with the load (the load average is printed).
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from argon2 import PasswordHasher

from bench.databases import Databases
from events.store import EventStore
from events.store.engine import make_engine
from tracker.accounts import Accounts
from tracker.clock import FixedClock, SystemClock
from tracker.importing import import_lines
from tracker.protocol import DEFAULT_PROTOCOL
from tracker.readmodel import StatusProjector
from tracker.synthetic import generate_cohort

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
PASSWORD = "bench password 0123456789"
MIX = (("ward", 0.35), ("patient", 0.40), ("chart", 0.25))
TARGETS = {"ward": 0.150, "patient": 0.250}


def log(message: str) -> None:
    print(f"[bench.web {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 20 else max(values)


def rss_mb(pid: int) -> float:
    """The resident memory of ``pid`` and its children (the server's worker processes)."""
    total = 0.0
    for p in [pid, *children(pid)]:
        try:
            lines = Path(f"/proc/{p}/status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(x.split()[1]) / 1024 for x in lines if x.startswith("VmRSS:")), 0)
    return total


def children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(c) for c in found]


def load(url: str, patients: int) -> list[str]:
    engine = make_engine(url)
    store = EventStore(engine)
    clock = FixedClock(datetime.now(UTC).replace(microsecond=0))
    until = clock.now().astimezone(DEFAULT_PROTOCOL.zone).date() - timedelta(days=1)
    chunk: list[bytes] = []
    refs: list[str] = []
    for line in generate_cohort(patients, seed=11, until=until):
        if not refs or refs[-1] != line["patient"]:
            if len(chunk) >= 50_000:
                import_lines(chunk, store, clock=clock, protocol=DEFAULT_PROTOCOL)
                chunk.clear()
                log(f"imported {len(refs):,} patients")
            refs.append(line["patient"])
        chunk.append(orjson.dumps(line))
    import_lines(chunk, store, clock=clock, protocol=DEFAULT_PROTOCOL)
    store.analyze()
    log("folding the read model")
    StatusProjector(store, DEFAULT_PROTOCOL, SystemClock(),
                    workers=os.cpu_count() or 1).catch_up()
    accounts = Accounts(engine, store, SystemClock(), hasher=PasswordHasher())
    for i in range(20):
        accounts.add(f"bench{i:02d}", "clinician" if i % 2 else "nurse", PASSWORD, by="bench")
    engine.dispose()
    return refs


def existing(url: str) -> list[str]:
    """The patients of a database loaded before (``--database-url``), with the 20 bench
    accounts made if missing."""
    engine = make_engine(url)
    store = EventStore(engine)
    refs = sorted(store.patient_streams())
    accounts = Accounts(engine, store, SystemClock(), hasher=PasswordHasher())
    for i in range(20):
        if accounts.get(f"bench{i:02d}") is None:
            accounts.add(f"bench{i:02d}", "clinician" if i % 2 else "nurse", PASSWORD,
                         by="bench")
    engine.dispose()
    return refs


def start_web(url: str, *, timeout: float = 90.0, workers: int = 1
              ) -> tuple[subprocess.Popen[bytes], str]:
    """``cno-tracker web`` on a free loopback port over ``url``, in its own session (so
    :func:`stop_web` can end it and its children), with no ``CNO_TRACKER_*`` variable of
    this shell leaking in; its standard error goes to a temporary file (a pipe nobody reads
    would stall a chatty server), shown if it does not start."""
    import tempfile

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNO_TRACKER_")}
    env["CNO_TRACKER_DATABASE_URL"] = url
    errors = tempfile.TemporaryFile()  # noqa: SIM115 (the server's stderr: it outlives this call)
    proc = subprocess.Popen([str(Path(sys.executable).with_name("cno-tracker")), "web",
                             "--host", "127.0.0.1", "--port", str(port),
                             "--workers", str(workers)], env=env,
                            stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.2)
    stop_web(proc)
    errors.seek(0)
    raise SystemExit("cno-tracker web did not start: "
                     + errors.read().decode(errors="replace")[-2000:])


def stop_web(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's session, SIGKILL if it has not gone in 30 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _status(session: httpx.Client, path: str) -> int:
    return session.get(path).status_code


def login(base: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=60)
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, "no csrf_token on /login"
    done = client.post("/login", data={"username": username, "password": PASSWORD,
                                       "csrf_token": token.group(1), "next": "/"})
    assert done.status_code == 303 and "/login" not in done.headers.get("location", ""), \
        f"login of {username}: {done.status_code}"
    return client


class LeanClient:
    """A logged-in session's cookie on one keep-alive HTTP/1.1 connection (``http.client``).

    The 20 clients stand for browsers on other machines, yet they run here, on the server's
    own 2 cores and in one Python process: httpx spends ~2.5 ms of CPU per request here and
    its threads hold the GIL a response waits for before its timer stops. This client reads
    the whole body (gzip stays compressed, as it crosses the network) for a fraction of
    that; ``--client httpx`` measures as before."""

    def __init__(self, session: httpx.Client) -> None:
        from urllib.parse import urlsplit

        url = urlsplit(str(session.base_url))
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
        self.headers = {"Cookie": cookie, "Accept-Encoding": "gzip"}
        self.conn = self._connect()

    def _connect(self) -> Any:
        import http.client

        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def status(self, path: str) -> int:
        """GET ``path``, the body read to its end; its status (0: the connection failed)."""
        import http.client

        for attempt in (1, 2):
            try:
                self.conn.request("GET", path, headers=self.headers)
                response = self.conn.getresponse()
                response.read()
                return response.status
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = self._connect()
                if attempt == 2:
                    return 0
        return 0

    def close(self) -> None:
        self.conn.close()


def run(base: str, pid: int, refs: list[str], requests: int, clients: int,
        pool_size: int = 40, *, lean: bool = True) -> dict[str, object]:
    pool = refs[:pool_size]  # the ward round: the same patients are opened again and again
    times: dict[str, list[float]] = defaultdict(list)
    memory: list[float] = [rss_mb(pid)]
    lock = threading.Lock()
    counter = {"n": 0, "errors": 0}
    sessions = [login(base, f"bench{i:02d}") for i in range(clients)]
    log(f"{clients} clients logged in; drawing the charts of the {len(pool)} patients")
    # each chart through every client's connection: each server process keeps its own
    # cache, and which process a connection reached is the kernel's choice
    for session in sessions:
        for ref in pool:
            session.get(f"/patients/{ref}/chart")
    log("charts drawn; the clients start")
    getters: list[Callable[[str], int]] = []
    leans: list[LeanClient] = []
    for session in sessions:
        if lean:
            leans.append(LeanClient(session))
            getters.append(leans[-1].status)
        else:
            getters.append(functools.partial(_status, session))

    def worker(get: Callable[[str], int], seed: int) -> None:
        rnd = random.Random(seed)
        while True:
            with lock:
                if counter["n"] >= requests:
                    return
                counter["n"] += 1
                n = counter["n"]
            kind = rnd.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
            ref = rnd.choice(pool)
            path = {"ward": "/", "patient": f"/patients/{ref}",
                    "chart": f"/patients/{ref}/chart"}[kind]
            started = time.perf_counter()
            status = get(path)
            spent = time.perf_counter() - started
            with lock:
                times[kind].append(spent)
                if status != 200:
                    counter["errors"] += 1
                if n % 1000 == 0:
                    memory.append(rss_mb(pid))
                if n % 250 == 0:
                    log(f"{n:,} requests")

    threads = [threading.Thread(target=worker, args=(g, i)) for i, g in enumerate(getters)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    cold = []
    for ref in refs[len(refs) // 2:][:20]:  # never drawn before
        t0 = time.perf_counter()
        sessions[0].get(f"/patients/{ref}/chart")
        cold.append(time.perf_counter() - t0)
    for lc in leans:
        lc.close()
    for s in sessions:
        s.close()
    return {"times": times, "elapsed": elapsed, "memory": memory, "cold": cold,
            "errors": counter["errors"], "done": counter["n"],
            "client": "http.client (lean)" if lean else "httpx"}


def report(result: dict[str, object], patients: int, clients: int) -> bool:
    times: dict[str, list[float]] = result["times"]  # type: ignore[assignment]
    memory: list[float] = result["memory"]  # type: ignore[assignment]
    cold: list[float] = result["cold"]  # type: ignore[assignment]
    elapsed: float = result["elapsed"]  # type: ignore[assignment]
    done: int = result["done"]  # type: ignore[assignment]
    ok = True
    print(f"\nweb benchmark: {patients:,} patients, {clients} clients, {done:,} requests "
          f"({result['errors']} not 200), client {result.get('client', '?')}; "
          f"load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores\n")
    print("| page | requests | median | p95 | target | verdict |\n|---|---|---|---|---|---|")
    for kind, _ in MIX:
        values = times.get(kind, [])
        if not values:
            continue
        target = TARGETS.get(kind)
        verdict = "" if target is None else "ok" if p95(values) <= target else "MISSED"
        ok = ok and verdict != "MISSED"
        print(f"| {kind}{' (cached)' if kind == 'chart' else ''} | {len(values):,} | "
              f"{statistics.median(values) * 1000:.0f} ms | {p95(values) * 1000:.0f} ms | "
              f"{f'≤ {target * 1000:.0f} ms' if target else ''} | {verdict} |")
    cold_ok = max(cold) <= 1.5
    rate = done / elapsed
    flat = memory[-1] <= memory[min(1, len(memory) - 1)] * 1.10 + 20
    ok = ok and cold_ok and rate >= 100 and flat and not result["errors"]
    print(f"| chart (cold, 20 never drawn) | 20 | {statistics.median(cold) * 1000:.0f} ms | "
          f"max {max(cold) * 1000:.0f} ms | ≤ 1500 ms | {'ok' if cold_ok else 'MISSED'} |")
    print(f"| throughput | {done:,} | {rate:.0f} requests/s | | ≥ 100/s | "
          f"{'ok' if rate >= 100 else 'MISSED'} |")
    print(f"| web RSS (MB, every 1,000) | | {' → '.join(f'{m:.0f}' for m in memory)} | | flat | "
          f"{'ok' if flat else 'MISSED'} |")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--pg-url", default=os.environ.get("CNO_BENCH_PG_URL", DEFAULT_PG))
    parser.add_argument("--patients", type=int, default=None, help="10000 (quick: 1000)")
    parser.add_argument("--requests", type=int, default=None, help="10000 (quick: 2000)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--database-url", default=None,
                        help="use this database, loaded before (and kept), instead of "
                             "generating a fresh one")
    parser.add_argument("--client", choices=("lean", "httpx"), default="lean",
                        help="the clients' HTTP library: http.client on keep-alive "
                             "connections (default), or httpx as before stop 17")
    parser.add_argument("--web-workers", type=int, default=2,
                        help="processes of `cno-tracker web --workers` (default 2: the "
                             "machine's 2 cores)")
    parser.add_argument("--pool", type=int, default=40,
                        help="patients of the ward round (their charts are drawn first)")
    args = parser.parse_args(argv)
    patients = args.patients or (1000 if args.quick else 10_000)
    requests = args.requests or (2000 if args.quick else 10_000)
    log(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    dbs = Databases(args.pg_url, prefix="cno_bench_web")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a timeout still drops the database
    proc = None
    try:
        if args.database_url:
            url = args.database_url
            refs = existing(url)
            patients = len(refs)
            log(f"using {url.rsplit('/', 1)[-1]}: {patients:,} patients")
        else:
            url = dbs.fresh("web")
            log(f"generating and importing {patients:,} patients")
            refs = load(url, patients)
        proc, base = start_web(url, workers=args.web_workers)
        log(f"serving on {base} ({args.web_workers} processes); {requests:,} requests from "
            f"{args.clients} clients")
        result = run(base, proc.pid, refs, requests, args.clients, args.pool,
                     lean=args.client == "lean")
    finally:
        if proc is not None:
            stop_web(proc)
        dbs.close()
    return 0 if report(result, patients, args.clients) else 1


if __name__ == "__main__":
    sys.exit(main())
