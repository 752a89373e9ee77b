"""Inbound SMS replies benchmark (issue 13 item 3): run on demand, never collected.

    .venv/bin/python -m bench.replies                 # 1,000 replies (about a minute)
    .venv/bin/python -m bench.replies --replies 200   # smoke run

One real ``cno-tracker web`` process (uvicorn) over PostgreSQL; N urgent alerts already
raised (each with its acknowledgement code). Signed replies (``X-Twilio-Signature`` made
with the ``twilio`` library's RequestValidator) are posted to ``/twilio/inbound`` over
keep-alive connections by 4 client threads:

1. ``OK <code>`` from the on-call nurse's phone, one per alert: each acknowledges one
   alert (an event and two row updates). Replies/s = N / wall time. Checked afterwards:
   N alerts acknowledged, one ``AlertAcknowledged`` each, every one with its MessageSid.
2. The same N replies again (Twilio's retries): nothing more recorded.
3. N replies from a number not on the roster: ignored (the cheap path).

The target for signed Twilio webhooks on one web process (issue 13) is ≥ 500/s. The
database is ``cno_bench_replies_<pid>_…``, dropped at the end. 2 shared cores: the web
process, PostgreSQL and the client threads compete, so figures are pessimistic.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select

from alerts.outbox import Outbox, Route
from alerts.rules import AlertSpec
from alerts.tables import alerts as A
from bench.databases import Databases
from events.store import EventStore
from events.store.engine import make_engine
from events.store.tables import events as E
from tests.support.twilio_inbound import PUBLIC_URL, inbound_params, signature
from tests.support.twilio_server import TEST_AUTH_TOKEN
from tracker.protocol import DEFAULT_PROTOCOL

NURSE = "+34600000001"
ROSTER = f"""
[[staff]]
id = "nurse.a"
name = "Nurse A"
roles = ["nurse"]
phone = "{NURSE}"
on_call = true
preferred_channel = "sms"

[routing]
default = ["nurse"]
"""
CLIENTS = 4


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def raise_alerts(store: EventStore, count: int) -> list[str]:
    outbox = Outbox(store, DEFAULT_PROTOCOL.zone)
    now = datetime.now(UTC)
    for start in range(0, count, 250):
        with outbox.transaction() as writer:
            for i in range(start, min(count, start + 250)):
                key = f"R{i:05d}:hypocalcaemia:bench:{uuid.uuid4().hex}:now"
                spec = AlertSpec(dedupe_key=key, group=key.rsplit(":", 1)[0],
                                 patient=f"R{i:05d}", kind="hypocalcaemia", severity="urgent",
                                 item="hypocalcaemia", due_on=now.date(), fires_at=now,
                                 cause_event_ids=())
                outbox.raise_alert(writer, spec, [Route("nurse.a", "sms")], now=now,
                                   not_before=now + timedelta(days=1), by="bench")
    with store.engine.connect() as conn:
        return [r[0] for r in conn.execute(select(A.c.ack_code).order_by(A.c.alert_id))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post_all(base: str, bodies: list[tuple[str, str]]) -> float:
    """Post every (from, body) signed, from CLIENTS threads; the wall time."""
    forms = [inbound_params(f, b) for f, b in bodies]
    signed = [(form, signature(form)) for form in forms]
    chunks = [signed[i::CLIENTS] for i in range(CLIENTS)]

    def run(chunk: list[tuple[dict[str, str], str]]) -> int:
        bad = 0
        with httpx.Client(base_url=base, timeout=30) as client:
            for form, sig in chunk:
                answer = client.post("/twilio/inbound", data=form,
                                     headers={"X-Twilio-Signature": sig})
                bad += answer.status_code != 200
        return bad

    start = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        bad = sum(pool.map(run, chunks))
    wall = time.perf_counter() - start
    if bad:
        raise AssertionError(f"{bad} replies were not answered 200")
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replies", type=int, default=1000)
    parser.add_argument("--pg-url", default=os.environ.get(
        "CNO_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args(argv)
    n = args.replies
    tmp = Path(tempfile.mkdtemp(prefix="cno-bench-replies-"))
    dbs = Databases(args.pg_url, tmp, prefix="cno_bench_replies")
    proc: subprocess.Popen[bytes] | None = None
    try:
        url = dbs.fresh("inbound")
        engine = make_engine(url)
        store = EventStore(engine)
        log(f"raising {n:,} urgent alerts")
        codes = raise_alerts(store, n)
        roster = tmp / "roster.toml"
        roster.write_text(ROSTER, encoding="utf-8")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNO_TRACKER_")}
        env.update({"CNO_TRACKER_DATABASE_URL": url, "CNO_TRACKER_ROSTER_FILE": str(roster),
                    "CNO_TRACKER_TWILIO_AUTH_TOKEN": TEST_AUTH_TOKEN,
                    "CNO_TRACKER_PUBLIC_URL": PUBLIC_URL})
        cli = str(Path(sys.executable).with_name("cno-tracker"))
        with open(tmp / "web.log", "wb") as out:
            proc = subprocess.Popen([cli, "web", "--port", str(port)], env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(f"the web process did not start (see {tmp}/web.log)")
            time.sleep(0.2)

        def count(q: Callable[[], object]) -> int:
            with engine.connect() as conn:
                return int(conn.execute(q()).scalar() or 0)  # type: ignore[call-overload]

        def acks() -> int:
            return count(lambda: select(func.count()).select_from(E).where(
                E.c.type == "AlertAcknowledged"))

        rows = []
        pid = proc.pid

        def phase(bodies: list[tuple[str, str]]) -> tuple[float, float]:
            before = cpu_seconds(pid)
            wall = post_all(base, bodies)
            return wall, cpu_seconds(pid) - before

        log(f"{n:,} signed 'OK <code>' replies, {CLIENTS} client threads")
        wall, cpu = phase([(NURSE, f"ok {c.lower()}") for c in codes])
        acked = count(lambda: select(func.count()).select_from(A).where(
            A.c.status == "acknowledged"))
        assert acked == n and acks() == n, (acked, acks())
        rows.append(("acknowledging replies", n, wall, cpu))
        wall, cpu = phase([(NURSE, f"OK {c}") for c in codes])
        assert acks() == n
        rows.append(("the same replies again (retries)", n, wall, cpu))
        wall, cpu = phase([("+34600000077", f"OK {c}") for c in codes])
        assert acks() == n
        rows.append(("replies from an unknown number", n, wall, cpu))
        print(f"\n{'case':<36} {'replies':>8} {'seconds':>8} {'per s':>8} "
              f"{'web CPU ms/reply':>17}")
        for what, k, seconds, used in rows:
            print(f"{what:<36} {k:>8,} {seconds:>8.2f} {k / seconds:>8.0f} "
                  f"{1000 * used / k:>17.2f}")
        print(f"load average while measured: {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores")
        print(f"\ntarget >= 500/s on one web process: "
              f"{'met' if n / rows[0][2] >= 500 else 'NOT met'} for acknowledging replies "
              "(2 shared cores)")
        engine.dispose()
        return 0
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        dbs.close()


if __name__ == "__main__":
    raise SystemExit(main())
