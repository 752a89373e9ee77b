"""Alert workers as real subprocesses (``cno-tracker worker``) for multi-process
tests and the worker benchmark, and control of the local PostgreSQL server.

- :func:`worker_env` builds the ``CNO_TRACKER_*`` environment a worker reads (database,
  roster, the local Twilio-compatible and SMTP servers); every ``CNO_TRACKER_*`` variable
  of the calling process is left out, so a developer's shell cannot leak into a test.
- :class:`WorkerProcess` starts one worker in its own session with its log (standard
  error, ``key=value`` lines) in a file, and stops it by its pid only: SIGTERM (clean
  stop: claims given back, exit 0) or SIGKILL (a crash: nothing given back).
- :func:`run_worker_once` runs ``--once`` (optionally ``--now``) to completion.
- :class:`PostgresCluster` stops and starts the Debian cluster behind the test URL
  (``pg_ctlcluster``) and waits for ``pg_isready``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url

from tests.support.smtp_server import SmtpTestServer
from tests.support.twilio_server import (
    TEST_ACCOUNT_SID,
    TEST_AUTH_TOKEN,
    TEST_FROM,
    TwilioTestServer,
)

REPO = Path(__file__).resolve().parents[2]
SENDER = "alerts@example.org"
#: the installed command, beside this interpreter (the editable install of the venv)
CNO_TRACKER = str(Path(sys.executable).with_name("cno-tracker"))


def worker_env(database_url: str, *, roster_file: Path | None = None,
               twilio: TwilioTestServer | None = None, smtp: SmtpTestServer | None = None,
               smtp_timeout: float = 5.0, extra: Mapping[str, str] | None = None
               ) -> dict[str, str]:
    """The environment of a worker process: this process's environment without any
    ``CNO_TRACKER_*`` variable, plus the settings for the given parts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNO_TRACKER_")}
    env["CNO_TRACKER_DATABASE_URL"] = database_url
    env["PYTHONUNBUFFERED"] = "1"
    if roster_file is not None:
        env["CNO_TRACKER_ROSTER_FILE"] = str(roster_file)
    if twilio is not None:
        env.update({
            "CNO_TRACKER_TWILIO_ACCOUNT_SID": TEST_ACCOUNT_SID,
            "CNO_TRACKER_TWILIO_AUTH_TOKEN": TEST_AUTH_TOKEN,
            "CNO_TRACKER_TWILIO_FROM_NUMBER": TEST_FROM,
            "CNO_TRACKER_TWILIO_BASE_URL": twilio.base_url,
        })
    if smtp is not None:
        env.update({
            "CNO_TRACKER_SMTP_HOST": smtp.host,
            "CNO_TRACKER_SMTP_PORT": str(smtp.port),
            "CNO_TRACKER_SMTP_SECURITY": "none",
            "CNO_TRACKER_SMTP_SENDER": SENDER,
            "CNO_TRACKER_SMTP_TIMEOUT_SECONDS": str(smtp_timeout),
        })
    if extra:
        env.update(extra)
    return env


def worker_args(*, forever: bool, worker_id: str | None = None, batch_size: int | None = None,
                lease_seconds: float | None = None, poll_seconds: float | None = None,
                now: str | None = None) -> list[str]:
    args = [CNO_TRACKER, "worker", *([] if forever else ["--once"])]
    for flag, value in (("--worker-id", worker_id), ("--batch-size", batch_size),
                        ("--lease-seconds", lease_seconds), ("--poll-seconds", poll_seconds),
                        ("--now", now)):
        if value is not None:
            args += [flag, str(value)]
    return args


@dataclass
class WorkerProcess:
    """One ``cno-tracker worker`` process (see :meth:`start`)."""

    worker_id: str
    env: dict[str, str]
    log_path: Path
    batch_size: int = 100
    lease_seconds: float = 120.0
    poll_seconds: float = 0.5
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> WorkerProcess:
        assert self.proc is None, "already started"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            worker_args(forever=True, worker_id=self.worker_id, batch_size=self.batch_size,
                        lease_seconds=self.lease_seconds, poll_seconds=self.poll_seconds),
            cwd=REPO, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_started(self, timeout: float = 30.0) -> None:
        """Until the worker has logged ``event=worker.started`` (imports done, wired)."""
        wait_until(lambda: "event=worker.started" in self.log() or not self.alive, timeout,
                   f"worker {self.worker_id} did not start")
        if not self.alive:
            raise AssertionError(f"worker {self.worker_id} exited with {self.returncode}:\n"
                                 f"{self.log_tail()}")

    def signal(self, signum: int) -> None:
        """Send ``signum`` to this worker's pid (never to anything else)."""
        if self.alive:
            os.kill(self.pid, signum)

    def kill(self) -> int:
        """SIGKILL: the worker dies at once, holding whatever it had claimed."""
        self.signal(signal.SIGKILL)
        return self.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for the clean exit; SIGKILL if it does not come in time."""
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.wait(10)
            raise

    def wait(self, timeout: float) -> int:
        assert self.proc is not None, "not started"
        code = self.proc.wait(timeout)
        self.close_log()
        return code

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@contextmanager
def running_workers(workers: list[WorkerProcess]) -> Iterator[list[WorkerProcess]]:
    """Start the workers; on the way out SIGTERM those still alive (SIGKILL stragglers)."""
    try:
        for w in workers:
            if w.proc is None:
                w.start()
        yield workers
    finally:
        stop_all(workers)


def stop_all(workers: list[WorkerProcess], timeout: float = 20.0) -> None:
    for w in workers:
        w.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for w in workers:
        if w.proc is None:
            continue
        try:
            w.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.signal(signal.SIGKILL)
            w.wait(10)
        w.close_log()


def run_worker_once(env: Mapping[str, str], *, now: str | None = None,
                    worker_id: str = "once", batch_size: int | None = None,
                    lease_seconds: float | None = None, timeout: float = 60.0
                    ) -> subprocess.CompletedProcess[str]:
    """``cno-tracker worker --once`` to completion (output captured as text)."""
    args = worker_args(forever=False, worker_id=worker_id, now=now, batch_size=batch_size,
                       lease_seconds=lease_seconds)
    return subprocess.run(args, cwd=REPO, env=dict(env), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, check=False)


def wait_until(predicate: Callable[[], bool], timeout: float, message: str,
               interval: float = 0.1) -> None:
    """Poll ``predicate`` until true; AssertionError with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} (within {timeout:g} s)")
        time.sleep(interval)


# ----------------------------------------------------------------- PostgreSQL server
@dataclass(frozen=True)
class PostgresCluster:
    """The Debian ``pg_ctlcluster`` cluster serving ``host:port``."""

    version: str
    name: str
    host: str
    port: int

    @classmethod
    def for_url(cls, url: str) -> PostgresCluster | None:
        """The local cluster behind ``url``, or None (not local, no pg_ctlcluster, not
        allowed to control it)."""
        parsed = make_url(url)
        host, port = parsed.host or "127.0.0.1", int(parsed.port or 5432)
        if host not in ("127.0.0.1", "localhost", "::1"):
            return None
        if not shutil.which("pg_ctlcluster") or not shutil.which("pg_lsclusters") \
                or not shutil.which("pg_isready") or os.geteuid() != 0:
            return None
        listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True,
                                 text=True, timeout=30, check=False).stdout
        for line in listing.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[2] == str(port):
                return cls(parts[0], parts[1], host, port)
        return None

    def _ctl(self, *action: str) -> None:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", self.version,
                        self.name, *action], check=True, timeout=120,
                       stdin=subprocess.DEVNULL, capture_output=True)

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    def start(self) -> None:
        """Start the cluster unless it answers already, and wait until it accepts."""
        if not self.ready():
            try:
                self._ctl("start")
            except subprocess.CalledProcessError:
                if not self.ready():  # "already running" is fine; anything else is not
                    raise
        self.wait_ready()

    def ready(self) -> bool:
        return subprocess.run(["pg_isready", "-q", "-h", self.host, "-p", str(self.port)],
                              timeout=30, check=False).returncode == 0

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_until(self.ready, timeout, "PostgreSQL did not accept connections", 0.2)
