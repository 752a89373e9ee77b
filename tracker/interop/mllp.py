"""``cno-tracker hl7 listen``: an MLLP server (``hl7.mllp`` framing on asyncio) that answers
every message with its acknowledgement.

* Several connections at once. Messages go to a queue; ``workers`` consumers (one by
  default) each take what has arrived (up to ``max_batch``, waiting up to ``LINGER`` for
  the next message of another open connection) and append it in a thread as one transaction
  (:func:`tracker.interop.hl7_in.receive_many`: group commit, each message falling back to
  its own append if the batch is refused), so a slow database never stalls reading.
* A connection idle for ``idle_timeout`` seconds, or one that sends half a frame and stops,
  is closed.
* A malformed frame (no start block, too large) is answered ``AR`` where it can be and the
  connection reads on; nothing the sender does stops the server.
* Log lines carry the message control id, the sending application, the ack code and the
  counts — never a segment's content (no PHI)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hl7.mllp import InvalidBlockError, start_hl7_server

from events.errors import Problem
from tracker.interop.hl7_in import Received, ack

log = logging.getLogger("tracker.interop.mllp")

MAX_FRAME = 1_000_000
#: consumers: one keeps every batch whole (with 4 senders, 249 of 252 appends held all 4
#: messages; two consumers split them 1 + 3 and spent half as much again per message)
WORKERS = 1
#: how long a consumer may wait for the next message of another open connection (s)
LINGER = 0.004
LINGER_STEP = 0.0005


@dataclass
class ListenerStats:
    connections: int = 0
    messages: int = 0
    accepted: int = 0
    errors: int = 0
    rejected: int = 0
    bad_frames: int = 0
    timeouts: int = 0


Handler = Callable[[list[bytes]], list[Received]]


class Listener:
    """``handle(raws) -> [Received]`` (one per message, in order) runs in a pool of
    ``workers`` threads, each call with the messages that arrived together."""

    def __init__(self, handle: Handler, *, workers: int = WORKERS, idle_timeout: float = 60.0,
                 max_batch: int = 64, linger: float = LINGER) -> None:
        self.handle = handle
        self.idle_timeout = idle_timeout
        self.max_batch = max_batch
        self.workers = workers
        self.linger = linger
        #: connections open, and messages taken by a consumer and not yet answered
        self._open = 0
        self._busy = 0
        self.stats = ListenerStats()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hl7")
        self._server: asyncio.Server | None = None
        self._queue: asyncio.Queue[tuple[bytes, asyncio.Future[Received]]] = asyncio.Queue()
        self._consumers: list[asyncio.Task[None]] = []

    async def start(self, host: str, port: int) -> int:
        """Listen; the port actually bound (``port=0`` picks a free one)."""
        self._consumers = [asyncio.create_task(self._consume()) for _ in range(self.workers)]
        self._server = await start_hl7_server(self._connection, host, port, limit=MAX_FRAME)
        bound = int(self._server.sockets[0].getsockname()[1])
        log.info("hl7 listener on %s:%d", host, bound)
        return bound

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            await self._gather(batch, loop.time() + self.linger)
            self._busy += len(batch)
            try:
                results = await loop.run_in_executor(self._pool, self._safe_handle,
                                                     [raw for raw, _ in batch])
            finally:
                self._busy -= len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _gather(self, batch: list[tuple[bytes, asyncio.Future[Received]]],
                      deadline: float) -> None:
        """Add what has arrived to ``batch``; while some other open connection has no
        message being handled (its sender is about to send the next one, having just had
        its ack), wait up to ``linger`` for it. A batch costs about the same to append
        whatever its size, so a few milliseconds here buy several messages per commit;
        a lone sender never waits (every open connection is accounted for)."""
        loop = asyncio.get_running_loop()
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            if self._busy + len(batch) >= self._open or loop.time() >= deadline:
                return
            await asyncio.sleep(min(LINGER_STEP, max(0.0, deadline - loop.time())))

    async def serve_forever(self) -> None:
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._consumers:
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
        self._pool.shutdown(wait=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        self._open += 1
        peer = writer.get_extra_info("peername")
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    block = await asyncio.wait_for(reader.readblock(),  # type: ignore[attr-defined]
                                                   self.idle_timeout)
                except TimeoutError:
                    self.stats.timeouts += 1
                    log.info("connection %s: idle or incomplete frame, closed", where)
                    return
                except asyncio.IncompleteReadError:
                    return  # the sender closed the connection
                except InvalidBlockError:
                    self.stats.bad_frames += 1
                    log.warning("connection %s: a frame without its start block, answered AR",
                                where)
                    writer.writeblock(  # type: ignore[attr-defined]
                        ack(None, "AR", [Problem(None, "frame", "no MLLP start block")]))
                    await writer.drain()
                    continue
                except ValueError:
                    self.stats.bad_frames += 1
                    log.warning("connection %s: a frame over %d bytes, closed", where, MAX_FRAME)
                    return
                self.stats.messages += 1
                future: asyncio.Future[Received] = loop.create_future()
                await self._queue.put((block, future))
                received = await future
                self._count(received)
                log.info("%s", received.log)
                writer.writeblock(received.ack)  # type: ignore[attr-defined]
                await writer.drain()
        except (ConnectionError, OSError):
            log.info("connection %s: lost", where)
        finally:
            self._open -= 1
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def _safe_handle(self, blocks: list[bytes]) -> list[Received]:
        try:
            return self.handle(blocks)
        except Exception as exc:  # never let one message take the listener down
            log.error("messages failed: %s (no content logged)", type(exc).__name__)
            problem = Problem(None, "message", f"internal error ({type(exc).__name__})")
            return [Received("AE", ack(None, "AE", [problem], raw=block),
                             f"message failed: {type(exc).__name__}", problems=[problem])
                    for block in blocks]

    def _count(self, received: Received) -> None:
        if received.code == "AA":
            self.stats.accepted += 1
        elif received.code == "AE":
            self.stats.errors += 1
        else:
            self.stats.rejected += 1


def run_listener(handle: Handler, host: str, port: int, *,
                 workers: int = WORKERS, idle_timeout: float = 60.0) -> None:
    """Serve until SIGTERM or SIGINT (the Procfile's ``hl7:`` line)."""

    async def main() -> None:
        listener = Listener(handle, workers=workers, idle_timeout=idle_timeout)
        await listener.start(host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        serving = asyncio.create_task(listener.serve_forever())
        await stop.wait()
        serving.cancel()
        await listener.stop()
        log.info("hl7 listener stopped")

    asyncio.run(main())
