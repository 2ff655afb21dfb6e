"""A fix to faust-streaming that at-least-once processing here depends on.

Table writes reach Kafka through Faust's ProducerBuffer: a queue that a
background task drains into the producer. Before committing offsets, Faust
flushes that buffer, but `ProducerBuffer.flush` gives up after waiting 0.1 s
for one message and returns with messages still queued, or one still being
handed over. An offset could then be committed ahead of the changelog writes
of the events before it, and a crash at that moment loses those writes for
good: the events are never replayed. (Found by the dedupe and metrics crash
tests; faust/transport/producer.py, flush_atmost.)

The fix counts messages being handed over and makes `flush` wait until the
queue is empty and nothing is in flight. Applied once, before any app starts.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from faust.transport.producer import ProducerBuffer

_APPLIED = False


def apply() -> None:
    global _APPLIED
    if _APPLIED:
        return
    _APPLIED = True
    handover = ProducerBuffer._send_pending

    async def send_pending(self: Any, fut: Any) -> None:
        self._onoff_in_flight = getattr(self, "_onoff_in_flight", 0) + 1
        try:
            await handover(self, fut)
        finally:
            self._onoff_in_flight -= 1

    async def flush(self: Any) -> None:
        def pending() -> bool:
            return bool(self.size or getattr(self, "_onoff_in_flight", 0))

        while pending():
            if self.state != "running":
                raise RuntimeError("cannot flush: the producer buffer is not running")
            self.message_sent.clear()
            if pending():  # set by the drain task after each hand-over
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.message_sent.wait(), timeout=1.0)

    ProducerBuffer._send_pending = send_pending  # type: ignore[method-assign]
    ProducerBuffer.flush = flush  # type: ignore[method-assign]
