"""``cno-tracker web --workers N`` as an operator runs it: N processes behind one port over
one database, each logging in and serving the same pages; a bad value is refused."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench.web import free_port
from events.store import EventStore
from events.store.engine import make_engine
from tracker.accounts import Accounts
from tracker.clock import SystemClock
from tracker.db import upgrade

CLI = str(Path(sys.executable).with_name("cno-tracker"))
PASSWORD = "a long test password 0123"


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_two_worker_processes_serve_one_database(db_url: str, tmp_path: Path) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    Accounts(engine, EventStore(engine), SystemClock()).add("nurse1", "nurse", PASSWORD,
                                                            by="test")
    engine.dispose()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNO_TRACKER_")}
    env |= {"CNO_TRACKER_DATABASE_URL": db_url, "CNO_TRACKER_WEB_THREADS": "4"}
    errors = (tmp_path / "web.err").open("wb")
    proc = subprocess.Popen([CLI, "web", "--port", str(port), "--workers", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail((tmp_path / "web.err").read_text()[-2000:])
        assert len(_children(proc.pid)) >= 2  # uvicorn's supervisor and its two workers
        served = 0
        for _ in range(6):  # new connections: the kernel spreads them over both processes
            with httpx.Client(base_url=base, timeout=10) as client:
                page = client.get("/login")
                token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
                assert token
                done = client.post("/login", data={"username": "nurse1", "password": PASSWORD,
                                                   "csrf_token": token.group(1), "next": "/"})
                assert done.status_code == 303
                ward = client.get("/")
                assert ward.status_code == 200 and "Ward list" in ward.text
                served += 1
        assert served == 6
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        errors.close()
    assert "Traceback" not in (tmp_path / "web.err").read_text()


def test_a_bad_worker_count_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNO_TRACKER_")}
    env |= {"CNO_TRACKER_DATABASE_URL": f"sqlite:///{tmp_path}/t.db",
            "CNO_TRACKER_WEB_WORKERS": "0"}
    done = subprocess.run([CLI, "web", "--port", str(free_port())], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 5 and "CNO_TRACKER_WEB_WORKERS" in done.stderr
    assert "Traceback" not in done.stderr
    flag = subprocess.run([CLI, "web", "--workers", "0"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert flag.returncode == 2 and "--workers" in flag.stderr
