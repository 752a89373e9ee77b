"""Group commit for Twilio status callbacks: concurrent callbacks to one web process are
recorded together, in one transaction (:meth:`alerts.receipts.ReceiptBook.record_many`),
by a few threads (``threads``, each writing its own batch: receipts of different messages
never wait for each other's locks; two of the same message are serialised by the alert's
row lock and the status ranking makes their order irrelevant); each request waits for
its own outcome before it is answered, so a 2xx still means "recorded" (Twilio retries
anything else).

A batch holds what arrived while the previous one was being written (at most
``max_batch``); when a batch fails (a database error, or another web process recording the
same receipt at the same instant), each of its receipts is tried alone, so one cannot fail
the others. The threads start with the first callbacks and end after ``idle_seconds``
without one (they are started again on the next)."""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future

from alerts.receipts import Receipt, ReceiptBook, ReceiptOutcome
from tracker.clock import Clock

log = logging.getLogger("cno_tracker.web.twilio")


class ReceiptBatcher:
    def __init__(self, book: ReceiptBook, clock: Clock, *, by: str, source: str = "callback",
                 max_batch: int = 200, idle_seconds: float = 30.0, threads: int = 4) -> None:
        self.book = book
        self.clock = clock
        self.by = by
        self.source = source
        self.max_batch = max_batch
        self.idle_seconds = idle_seconds
        self._queue: queue.Queue[tuple[Receipt, Future[ReceiptOutcome]]] = queue.Queue()
        self.threads = max(1, threads)
        self._lock = threading.Lock()
        self._running: list[threading.Thread] = []

    def submit(self, receipt: Receipt) -> Future[ReceiptOutcome]:
        future: Future[ReceiptOutcome] = Future()
        with self._lock:
            self._queue.put((receipt, future))
            self._running = [t for t in self._running if t.is_alive()]
            if len(self._running) < self.threads:
                thread = threading.Thread(target=self._run, name="receipt-batches",
                                          daemon=True)
                self._running.append(thread)
                thread.start()
        return future

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        me = threading.current_thread()
                        self._running = [t for t in self._running if t is not me]
                        return
                continue
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._record(batch)

    def _record(self, batch: list[tuple[Receipt, Future[ReceiptOutcome]]]) -> None:
        try:
            outcomes = self.book.record_many([r for r, _ in batch], now=self.clock.now(),
                                             by=self.by, source=self.source)
        except Exception as exc:
            if len(batch) > 1:
                log.warning("event=twilio.batch_failed size=%d error=%s retry=one_by_one",
                            len(batch), type(exc).__name__)
                for item in batch:
                    self._record([item])
                return
            batch[0][1].set_exception(exc)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            future.set_result(outcome)
