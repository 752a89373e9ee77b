"""A real MLLP listener on loopback, in a thread with its own event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tracker.interop.mllp import Handler, Listener


@contextmanager
def listening(handle: Handler, *, idle_timeout: float = 5.0,
              workers: int = 2) -> Iterator[tuple[int, Listener]]:
    loop = asyncio.new_event_loop()
    listener = Listener(handle, workers=workers, idle_timeout=idle_timeout)
    port = loop.run_until_complete(listener.start("127.0.0.1", 0))
    serving = loop.create_task(listener.serve_forever())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield port, listener
    finally:
        def _stop() -> None:
            serving.cancel()
        loop.call_soon_threadsafe(_stop)
        asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
