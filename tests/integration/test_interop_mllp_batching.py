"""The MLLP listener's group commit (issue 12, speed): a consumer waits up to ``linger``
for the next message of another open connection, so concurrent senders share one append;
a lone sender never waits, and a silent connection delays others by at most ``linger``.
A real listener on loopback and real MLLP clients; the handler records what it is given."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from hl7.client import MLLPClient

from tracker.interop.hl7_in import Received, ack
from tracker.interop.mllp import Listener


def _oru(n: int) -> bytes:
    return (f"MSH|^~\\&|LAB|HOSP|CNO|CNO|20250303081500||ORU^R01|B{n}|P|2.5.1\r"
            f"PID|1||H{n}^^^HOSP^MR\r").encode()


class Recorder:
    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, raws: list[bytes]) -> list[Received]:
        self.batches.append(len(raws))
        return [Received("AA", ack(None, "AA", [], raw=raw), "ok") for raw in raws]


@contextmanager
def listening(handle: Recorder, *, linger: float, workers: int = 1) -> Iterator[int]:
    loop = asyncio.new_event_loop()
    listener = Listener(handle, workers=workers, idle_timeout=10, linger=linger)
    port = loop.run_until_complete(listener.start("127.0.0.1", 0))
    serving = loop.create_task(listener.serve_forever())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(serving.cancel)
        asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_lone_sender_never_waits_for_the_linger() -> None:
    handle = Recorder()
    with listening(handle, linger=2.0) as port, MLLPClient("127.0.0.1", port) as client:
        started = time.perf_counter()
        for n in range(3):
            assert b"MSA|AA|" in client.send_message(_oru(n))
        assert time.perf_counter() - started < 1.5  # three messages, none lingered 2 s
    assert handle.batches == [1, 1, 1]


def test_concurrent_senders_share_one_batch() -> None:
    handle = Recorder()
    with listening(handle, linger=1.0) as port, MLLPClient("127.0.0.1", port) as a, \
            MLLPClient("127.0.0.1", port) as b:
        a.send_message(_oru(0))  # both connections are open and known to the listener
        b.send_message(_oru(1))
        handle.batches.clear()
        acks: list[bytes] = []

        def later() -> None:
            time.sleep(0.05)
            acks.append(b.send_message(_oru(3)))

        other = threading.Thread(target=later)
        other.start()
        acks.append(a.send_message(_oru(2)))  # waits for b's message, 50 ms later
        other.join(5)
    assert all(b"MSA|AA|" in x for x in acks) and len(acks) == 2
    assert handle.batches == [2]


def test_a_silent_connection_delays_others_by_at_most_the_linger() -> None:
    handle = Recorder()
    with listening(handle, linger=0.2) as port, MLLPClient("127.0.0.1", port), \
            MLLPClient("127.0.0.1", port) as talker:
        started = time.perf_counter()
        assert b"MSA|AA|" in talker.send_message(_oru(0))
        took = time.perf_counter() - started
    assert 0.15 <= took < 1.5
    assert handle.batches == [1]
