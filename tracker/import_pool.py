"""Decoding an import's batches in worker processes, in order.

An import spends about half its time in the stateless half of each line (validation,
serialisation, hashing: :mod:`tracker.import_decode`); the other half (the checks against
the store and the other lines, the hash chain, the writes) stays in the importing process.
:func:`decoded` hands raw batches to forked workers round-robin, two batches in flight per
worker, and yields their results in the order of the file, so the importer sees exactly
what decoding in-process would give it while the next batches are decoded meanwhile.

Only fork makes this pay: a forked worker starts in milliseconds with every module already
imported (a spawned one would import them again, longer than a 50,000-line import takes).
So workers are used only where forking is safe and useful:

* on a platform with ``os.fork`` and ``prctl`` (Linux): each worker asks the kernel to
  kill it when the importing process dies, even by ``kill -9``, so none is left behind;
* in a process with no other thread (a forked child would inherit a lock another thread
  held; the web application and the HL7 listener have threads and decode in-process),
  SQLite's checkpoint threads aside (they only call SQLite, which a worker never does);
* for a file of more than one batch (one ``record`` line never forks).

A worker never touches the database (it inherits the importer's connections but leaves
them alone, and leaves with ``os._exit``: no clean-up runs on what it inherited). A worker
that fails or dies costs nothing: its batch is decoded in-process and the rest of the file
too, so the import's outcome never depends on the pool."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gc
import os
import pickle
import signal
import sys
import threading
from collections import deque
from collections.abc import Iterator
from datetime import tzinfo
from multiprocessing.connection import Connection, Pipe

from events.store.checkpoint import FORK_SAFE
from tracker.import_decode import Decoded, decode_batch, pack, unpack

#: a raw batch: numbered lines as read
Raw = list[tuple[int, bytes | str]]

#: most workers an import starts (beyond, the importing process's own half is the limit)
MAX_WORKERS = 4
_PR_SET_PDEATHSIG = 1
#: a pipe's buffer, asked for (Linux's default is 64 KiB, and 1 MiB the most an ordinary
#: user may ask): a 2,000-line batch is about 0.6 MB raw and 0.7 MB decoded, so with the
#: default a worker waited, its result half-sent, until the importer came back from
#: writing the previous batch, instead of decoding its next one meanwhile
PIPE_BYTES = 1 << 20
#: batches in flight per worker: with one, a worker that had answered sat idle until the
#: importer, busy writing, took that answer and sent it the next batch
DEPTH = 2


def _widen(conn: Connection) -> None:
    """Ask for :data:`PIPE_BYTES` of buffer for ``conn``'s pipe (refused: the default)."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def default_workers() -> int:
    """Workers for this machine: one per core (the importing process mostly waits for
    them: decoding is about two thirds of a line's work), none on a single core."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return 0 if cores < 2 else min(MAX_WORKERS, cores)


def can_fork() -> bool:
    """Whether this process may fork decoding workers now (see the module's notes): no
    thread but this one, except SQLite's checkpoint threads (they only call SQLite, which
    a worker never does: ``events.store.checkpoint``)."""
    main = threading.current_thread()
    return (sys.platform.startswith("linux") and hasattr(os, "fork")
            and all(t is main or getattr(t, FORK_SAFE, False) for t in threading.enumerate()))


class _Worker:
    """One forked decoding process and its two one-way pipes."""

    def __init__(self, zone: tzinfo, others: list[_Worker]) -> None:
        task_read, self.tasks = Pipe(duplex=False)
        self.results, result_write = Pipe(duplex=False)
        _widen(self.tasks)
        _widen(self.results)
        parent = os.getpid()
        for stream in (sys.stdout, sys.stderr):  # nothing buffered is written twice
            with contextlib.suppress(ValueError, OSError, AttributeError):
                stream.flush()
        try:
            pid = os.fork()
        except OSError:
            for conn in (task_read, self.tasks, self.results, result_write):
                conn.close()
            raise
        if pid == 0:  # the child: never returns
            code = 1
            try:
                self.tasks.close()
                self.results.close()
                for other in others:  # their pipes are not this worker's to hold open
                    other.tasks.close()
                    other.results.close()
                code = _serve(task_read, result_write, zone, parent)
            finally:
                os._exit(code)
        self.pid = pid
        task_read.close()
        result_write.close()
        #: batches sent and not answered yet, oldest first (decoded here if it fails)
        self.inflight: deque[Raw] = deque()
        self.broken = False  # a batch could not be sent, or it failed: it is stopped

    def send(self, batch: Raw) -> None:
        """Hand the worker ``batch``; if it has died meanwhile, :meth:`receive` says so."""
        self.inflight.append(batch)
        if self.broken:
            return
        try:
            self.tasks.send_bytes(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
        except OSError:  # its end of the pipe is closed: it is gone (BrokenPipeError)
            self.stop()

    def receive(self) -> Decoded | None:
        """The oldest batch in flight, decoded; None if the worker failed (it is stopped
        then, and the batch is left first in :attr:`inflight`)."""
        if self.broken:
            return None
        try:
            reply = self.results.recv_bytes()
        except (EOFError, OSError):
            reply = b""
        if not reply:  # gone, or could not decode it (then it says nothing more)
            self.stop()
            return None
        self.inflight.popleft()
        return unpack(pickle.loads(reply))

    def stop(self) -> None:
        """End the worker now (it holds nothing: a batch it was decoding is not needed)."""
        if self.broken:
            return
        self.broken = True
        for conn in (self.tasks, self.results):
            with contextlib.suppress(OSError):
                conn.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _serve(tasks: Connection, results: Connection, zone: tzinfo, parent: int) -> int:
    """The worker's loop: decode each batch received until the pipe closes."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != parent:
        return 1  # cannot promise to die with the importer (or it died already): refuse
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the importer's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        try:
            message = tasks.recv_bytes()
        except (EOFError, OSError):
            return 0
        try:
            reply = pickle.dumps(pack(decode_batch(pickle.loads(message), zone)),
                                 pickle.HIGHEST_PROTOCOL)
        except Exception:  # the importer decodes it in-process (and reports what failed)
            reply = b""
        results.send_bytes(reply)
        del message, reply
        gc.collect(1)  # the importer disabled automatic collection; this batch's garbage


def decoded(batches: Iterator[Raw], zone: tzinfo, workers: int | None
            ) -> Iterator[Decoded]:
    """The decoded ``batches``, in order: the first in-process, the rest by up to
    ``workers`` forked processes (None: :func:`default_workers`) when :func:`can_fork`
    (else in-process too). A batch is yielded only once the next one was asked for: when
    the importer takes the last batch, the file has been read to its end."""
    first = next(batches, None)
    if first is None:
        return
    second = next(batches, None)
    if second is not None and workers is None:
        workers = default_workers()  # (asked only when there is a second batch)
    if second is None or not workers or not can_fork():
        yield from _in_process(_chain([first] if second is None else [first, second],
                                      batches), zone)
        return
    pool: list[_Worker] = []
    try:
        for _ in range(workers):
            try:
                pool.append(_Worker(zone, pool))
            except OSError:  # no process to be had (EAGAIN, ENOMEM): those there are do
                break
        if not pool:
            yield from _in_process(_chain([first, second], batches), zone)
            return
        yield from _ordered(first, _chain([second], batches), pool, zone)
    finally:
        for worker in pool:
            worker.stop()


def _ordered(first: Raw, batches: Iterator[Raw], pool: list[_Worker], zone: tzinfo
             ) -> Iterator[Decoded]:
    """Round-robin over ``pool``: batch *i* goes to worker *i* mod n, :data:`DEPTH` batches
    in flight per worker, and results are taken back in the same order, each worker given
    its next batch as soon as it answers one."""
    pending: deque[_Worker] = deque()  # one entry per batch in flight, in file order
    for worker in [w for _ in range(DEPTH) for w in pool]:
        batch = next(batches, None)
        if batch is None:
            break
        worker.send(batch)
        pending.append(worker)
    yield decode_batch(first, zone)  # meanwhile, the workers decode the next ones
    while pending:
        worker = pending.popleft()
        result = worker.receive()
        if result is None:  # it failed: this batch and the rest in-process, in order
            yield from _in_process(_chain([worker.inflight.popleft()],
                                          _late(pending, batches)), zone)
            return
        nxt = next(batches, None)
        if nxt is not None:
            worker.send(nxt)
            pending.append(worker)
        yield result


class _Done(list):
    """A batch decoded already (by a worker): :func:`_in_process` passes it through."""


def _in_process(items: Iterator[Raw], zone: tzinfo) -> Iterator[Decoded]:
    """Each batch of ``items`` decoded in-process (a :class:`_Done` one as it is), the
    next one read before this one is yielded."""
    item = next(items, None)
    while item is not None:
        nxt = next(items, None)
        yield item if isinstance(item, _Done) else decode_batch(item, zone)
        item = nxt


def _late(pending: deque[_Worker], batches: Iterator[Raw]) -> Iterator[Raw]:
    """After a worker failed: the other workers' batches (decoded if they answer, raw if
    not), then the rest of the file, raw."""
    for other in pending:
        late = other.receive()
        yield _Done(late) if late is not None else other.inflight.popleft()
    yield from batches


def _chain(head: list[Raw], rest: Iterator[Raw]) -> Iterator[Raw]:
    yield from head
    yield from rest
