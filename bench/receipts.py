"""Delivery-receipt benchmarks (issue 13), run from ``python -m bench.worker`` (section 3):

a. **Callbacks processed per second, one web process.** N SMS deliveries marked sent with
   their SIDs; ``cno-tracker web`` (uvicorn, one process) receives N signed ``delivered``
   status callbacks over 16 and over 64 keep-alive connections (a small asyncio client sending
   prepared requests, so the client costs little of the 2 cores). Rate = N / (last answer −
   first request); every answer must be 204 and the log must hold exactly N AlertDelivered.
b. **Undelivered callback → the next channel's send.** One ``cno-tracker worker`` (its
   default 30 s poll: the quick path is the 1 s wake-up, not the tick) sends an urgent SMS;
   an ``undelivered`` (30003) callback is posted to the web process; the time until the
   SMTP server holds the nurse's e-mail. Median and worst of ``samples``.
c. **End to end with 3 workers.** Three ``cno-tracker worker`` processes (``--poll-seconds``
   given); a hypocalcaemia lab is appended (the urgent item falls due at once); the Twilio
   double answers each SMS with a signed ``delivered`` callback to the web process; the
   latency is AlertDelivered's ``recorded_at`` − the lab's ``recorded_at``.

PostgreSQL only (several processes). Figures are pessimistic on a shared 2-core machine.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import func, select, text, update

from alerts.outbox import Outbox, Route
from alerts.rules import AlertSpec
from alerts.tables import deliveries as D
from events.store import EventStore
from events.store.engine import make_engine
from tracker.protocol import DEFAULT_PROTOCOL

PUBLIC = "https://cno.bench.invalid"
STATUS = "/twilio/status"
NURSE_PHONE = "+34600000001"
NURSE_EMAIL = "nurse.a@example.org"
ROSTER = f"""
[[staff]]
id = "nurse.a"
name = "Nurse A"
roles = ["nurse"]
phone = "{NURSE_PHONE}"
email = "{NURSE_EMAIL}"
on_call = true
preferred_channel = "sms"

[[staff]]
id = "rheum.b"
name = "Rheumatologist B"
roles = ["rheumatologist"]
email = "rheum.b@example.org"
preferred_channel = "email"

[routing]
default = ["nurse"]

[escalation]
chain = ["rheumatologist"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WebProcess:
    """``cno-tracker web`` on a free loopback port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        from tests.support.processes import CNO_TRACKER, REPO

        self.port = free_port()
        self._log = log_path.open("ab")
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [CNO_TRACKER, "web", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"web exited: {self.log_path.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise SystemExit("the web process did not answer /healthz")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the web process so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def env_for(url: str, roster: Path, twilio: Any, smtp: Any) -> dict[str, str]:
    from tests.support.processes import worker_env

    return worker_env(url, roster_file=roster, twilio=twilio, smtp=smtp,
                      extra={"CNO_TRACKER_PUBLIC_URL": PUBLIC})


def raise_urgent(store: EventStore, count: int, *, not_before: datetime,
                 route: Route = Route("nurse.a", "sms")) -> list[str]:
    outbox = Outbox(store, DEFAULT_PROTOCOL.zone)
    now = datetime.now(UTC)
    ids: list[str] = []
    for start in range(0, count, 250):
        with outbox.transaction() as writer:
            for i in range(start, min(count, start + 250)):
                key = f"R{i:05d}:hypocalcaemia:bench:{uuid.uuid4().hex}:now"
                spec = AlertSpec(dedupe_key=key, group=key.rsplit(":", 1)[0],
                                 patient=f"R{i:05d}", kind="hypocalcaemia",
                                 severity="urgent", item="hypocalcaemia",
                                 due_on=now.date(), fires_at=now, cause_event_ids=())
                alert_id = outbox.raise_alert(writer, spec, [route], now=now,
                                              not_before=not_before, by="bench")
                assert alert_id is not None
                ids.append(alert_id)
    return ids


# ----------------------------------------------------------------- a. callbacks/s
def prepared_callbacks(sids: list[str], token: str, host: str) -> list[bytes]:
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(token)
    out = []
    for sid in sids:
        params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": "delivered",
                  "SmsStatus": "delivered", "To": NURSE_PHONE, "From": "+34600000099",
                  "ApiVersion": "2010-04-01"}
        body = urlencode(params).encode()
        sig = validator.compute_signature(PUBLIC + STATUS, params)
        out.append(
            (f"POST {STATUS} HTTP/1.1\r\nHost: {host}\r\n"
             f"Content-Type: application/x-www-form-urlencoded\r\n"
             f"X-Twilio-Signature: {sig}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
            + body)
    return out


async def _fire(port: int, requests_: list[bytes], connections: int) -> list[int]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for r in requests_:
        queue.put_nowait(r)
    statuses: list[int] = []

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                try:
                    request = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                writer.write(request)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                statuses.append(status)
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))
    return statuses


def callbacks_per_second(url: str, web: WebProcess, token: str, count: int,
                         connections: int = 16) -> tuple[float, str]:
    engine = make_engine(url)
    store = EventStore(engine)
    ids = raise_urgent(store, count, not_before=datetime.now(UTC) + timedelta(days=1))
    sids = {}
    with engine.begin() as conn:
        rows = conn.execute(select(D.c.delivery_id).where(D.c.alert_id.in_(ids))).all()
        for (delivery_id,) in rows:
            sids[delivery_id] = "SM" + uuid.uuid4().hex
        now = datetime.now(UTC)
        for delivery_id, sid in sids.items():
            conn.execute(update(D).where(D.c.delivery_id == delivery_id).values(
                status="sent", provider_id=sid, sent_at=now, attempts=1))
    prepared = prepared_callbacks(list(sids.values()), token, "cno.bench.invalid")
    cpu = web.cpu_seconds()
    started = time.perf_counter()
    statuses = asyncio.run(_fire(web.port, prepared, connections))
    seconds = time.perf_counter() - started
    cpu = web.cpu_seconds() - cpu
    again = asyncio.run(_fire(web.port, prepared[: max(1, count // 5)], connections))
    with engine.connect() as conn:
        delivered = conn.execute(text(
            "SELECT count(*) FROM events e JOIN alert_deliveries d ON e.stream = 'alert:' "
            "|| d.alert_id WHERE e.type = 'AlertDelivered' AND d.provider_id = ANY(:s)"),
            {"s": list(sids.values())}).scalar()
    engine.dispose()
    ok = set(statuses) == {204} and len(statuses) == count and delivered == count \
        and set(again) == {204}
    detail = (f"{count:,} callbacks over {connections} connections in {seconds:.2f} s, "
              f"answers {sorted(set(statuses))}, "
              f"AlertDelivered {delivered} (+{len(again)} retries: none added); the web "
              f"process used {cpu:.1f} s of CPU ({cpu / seconds:.0%} of one core)"
              f"{'' if ok else ' NOT EXACT'}")
    return (count / seconds if ok else 0.0), detail


# ----------------------------------------------------------------- b. undelivered → e-mail
def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def undelivered_to_next_channel(url: str, web: WebProcess, twilio: Any, smtp: Any,
                                samples: int) -> list[float]:
    engine = make_engine(url)
    store = EventStore(engine)
    out = []
    for _ in range(samples):
        sent_before, mails_before = len(twilio.messages), len(smtp.messages)
        raise_urgent(store, 1, not_before=datetime.now(UTC))
        if not wait_for(partial(_more, twilio, sent_before), 30):
            raise SystemExit("the worker did not send the SMS")
        sid = twilio.messages[-1].sid
        # the worker records the send just after Twilio's answer: wait for the SID
        wait_for(partial(_has_sid, engine, sid), 10)
        started = time.perf_counter()
        status = twilio.post_status(sid, "undelivered", 30003, to_url=web.url + STATUS)
        if status != 204:
            raise SystemExit(f"the callback was answered {status}")
        if not wait_for(partial(_more, smtp, mails_before), 30):
            raise SystemExit("the e-mail fallback did not go out within 30 s")
        out.append(time.perf_counter() - started)
        time.sleep(0.3)
    engine.dispose()
    return out


def _more(server: Any, than: int) -> bool:
    return len(server.messages) > than


def _has_sid(engine: Any, sid: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).where(D.c.provider_id == sid)).scalar() == 1


# ----------------------------------------------------------------- c. end to end
class AutoDeliver:
    """Answers every SMS the Twilio double receives from now on with a signed
    ``delivered`` callback, as soon as the worker has recorded its SID (Twilio's callback
    comes after its answer to the send, which the worker records first)."""

    def __init__(self, twilio: Any, web: WebProcess, engine: Any) -> None:
        self.twilio = twilio
        self.web = web
        self.engine = engine
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.done: set[str] = {m.sid for m in twilio.messages}  # earlier sections' SMS

    def run(self) -> None:
        while not self.stop.wait(0.005):
            for m in self.twilio.messages:
                if m.sid in self.done or m.status_callback is None:
                    continue
                if not _has_sid(self.engine, m.sid):
                    continue  # not recorded yet: look again in 5 ms
                self.done.add(m.sid)
                self.twilio.post_status(m.sid, "delivered", to_url=self.web.url + STATUS)

    def __enter__(self) -> AutoDeliver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


#: per end-to-end sample: seconds from the lab to each alert event (diagnostics)
STEPS: list[dict[str, float]] = []


def end_to_end(url: str, web: WebProcess, twilio: Any, samples: int, first: int = 0
               ) -> list[float]:
    from tests.support.events import new_event

    engine = make_engine(url)
    store = EventStore(engine)
    out = []
    with AutoDeliver(twilio, web, engine):
        for i in range(first, first + samples):
            patient = f"E{os.getpid() % 1000:03d}{i:04d}"
            now = datetime.now(UTC)
            store.append(patient, 0, [new_event(
                "PatientEnrolled", {"birth_date": "2012-01-01", "sex": "female"},
                occurred=now - timedelta(days=60), recorded=now)])
            lab = new_event("LabResultRecorded", {"analyte": "ionized_calcium", "value": 0.9,
                                                  "unit": "mmol/L"},
                            occurred=now, recorded=datetime.now(UTC))
            store.append(patient, 1, [lab])

            def delivered(p: str = patient) -> bool:
                with engine.connect() as conn:
                    return conn.execute(text(
                        "SELECT count(*) FROM events e JOIN alerts a ON e.stream = "
                        "'alert:' || a.alert_id WHERE a.patient = :p AND "
                        "e.type = 'AlertDelivered'"), {"p": p}).scalar() == 1
            if not wait_for(delivered, 60, 0.02):
                raise SystemExit(f"no AlertDelivered for {patient} within 60 s")
            with engine.connect() as conn:
                steps = {t: at for t, at in conn.execute(text(
                    "SELECT e.type, min(e.recorded_at) FROM events e JOIN alerts a ON "
                    "e.stream = 'alert:' || a.alert_id WHERE a.patient = :p GROUP BY 1"),
                    {"p": patient})}
            at = steps["AlertDelivered"]
            out.append((at - lab.recorded_at).total_seconds())
            STEPS.append({t: round((v - lab.recorded_at).total_seconds(), 2)
                          for t, v in steps.items()})
    engine.dispose()
    return out


def summary(values: list[float]) -> str:
    values = sorted(values)
    return (f"median {statistics.median(values):.2f} s, worst {values[-1]:.2f} s "
            f"(n={len(values)})")
