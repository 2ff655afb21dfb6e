"""Six changes to faust-streaming: three fixes that at-least-once processing here
depends on, and three speed-ups (table recovery, handing records to the streams,
and fetching again as soon as a stream buffer drains).

1. The producer buffer's flush. Table writes reach Kafka through Faust's
ProducerBuffer: a queue that a background task drains into the producer.
Before committing offsets, Faust flushes that buffer, but `ProducerBuffer.flush`
gives up after waiting 0.1 s for one message and returns with messages still
queued, or one still being handed over. An offset could then be committed ahead
of the changelog writes of the events before it, and a crash at that moment
loses those writes for good: the events are never replayed. (Found by the dedupe
and metrics crash tests; faust/transport/producer.py, flush_atmost.)

The fix counts messages being handed over and makes `flush` wait until the
queue is empty and nothing is in flight.

2. Records fetched for a paused partition. `Consumer.getmany` drops the
records of any partition that is paused when the batch is handed over (during a
rebalance and the table recovery that follows it), and the Kafka consumer's
position has already moved past them. When the partition is resumed, the next
record it yields is far past the last one read; Faust takes the jump for a
gap in the topic (as compaction makes), counts the skipped offsets as processed
and commits past them: those deliveries are never processed by anyone. (Found
by the two-worker dedupe test, which lost a few deliveries in about one run of
four; related to faust-streaming #216, #221 and #606.) The fix holds such a
partition's records back and seeks it to the first of them, so they are
fetched again once the partition is resumed. A partition whose stream buffer
had filled up was let through even while paused, and a draining buffer
resumed it; both now respect the pause.

3. Seek before resuming after a rebalance. `Recovery.on_recovery_completed`
(and `_resume_streams`, its twin for apps without tables) resumes the stream
partitions first and seeks them to their committed offsets second.
The fetcher is already running (it read the changelogs), so records fetched
in between are handed over, and the seek then moves Faust's read offset back
under them: the next record of the batch looks like a jump, and the offsets in
between are counted as processed whether or not they were. (Seen in the logs
of the dedupe SIGKILL test, which had lost a delivery in one of four full runs;
the same race as faust-streaming #216.) The fix seeks first and resumes after.

4. Table recovery in bulk. Faust restores a table one changelog record at a time,
through the fetcher's per-record callback, the conductor's decoding and a queue,
at a few thousand records/s (issue 16). The fix hands each fetch of a partition being
restored to Recovery as one batch and writes the last value of each key with one
store write (processors/faust_recovery.py).

5. Eager delivery. Faust's fetcher races every record's hand-over against the flow's
suspension with `wait_first` (four tasks and an `asyncio.wait` per record). The
speed-up runs the hand-over inline and races it only if it blocks
(processors/faust_delivery.py).

6. Wake on a drained buffer. A partition whose stream buffer is full is left out
of the fetcher's next `getmany`; when the buffer drains it is put back, but a
`getmany` already waiting (up to a second, for the partitions still in it: paused
changelogs, idle topics) does not see it, and with no partition left at all the
fetcher sleeps a second. A worker catching up fills every buffer with each fetch,
so it sat idle about 0.8 s in every 3.5 s (bench-dedupe, timed with a probe
around getmany and aiokafka's fetcher): the records were in aiokafka's buffer,
asked for a second later. The change waits at most 0.1 s in `getmany`, and with no
partition left, until a buffer drains (a second at most, as before).

Changes 2 to 6 replace methods with copies of faust-streaming 0.15.3's, changed
only where said: a worker refuses to start on any other version (`check_version`).
Applied once, before any app starts. Each fix has a name (FIXES); the names in
ONOFF_BRIDGE_FAUST_FIXES_OFF (a JSON list) are left out, so a test can show
what goes wrong without one (docs/faust.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import faust
from aiokafka.errors import IllegalStateError
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.transport.producer import ProducerBuffer
from faust.types import TP

from processors import faust_delivery, faust_recovery

# The faust-streaming release the replaced methods were copied from.
FAUST_VERSION = "0.15.3"
OFF_ENV = "ONOFF_BRIDGE_FAUST_FIXES_OFF"
PRODUCER_FLUSH = "producer-flush"
PAUSED_RECORDS = "paused-records"
SEEK_BEFORE_RESUME = "seek-before-resume"
BULK_RECOVERY = "bulk-recovery"
EAGER_DELIVERY = "eager-delivery"
DRAINED_WAKE = "drained-wake"
FIXES = (
    PRODUCER_FLUSH,
    PAUSED_RECORDS,
    SEEK_BEFORE_RESUME,
    BULK_RECOVERY,
    EAGER_DELIVERY,
    DRAINED_WAKE,
)
# What Faust's fetcher sleeps when no partition may be fetched; the most it waits here too.
IDLE_FETCH_WAIT_S = 1.0
# The longest a getmany waits for records (Faust: a second): a drained buffer's partition
# is asked for again after this at most. An idle worker asks ten times a second.
FETCH_WAIT_S = 0.1

_APPLIED = False


def check_version(installed: str | None = None) -> None:
    """Raises SystemExit with one line when faust-streaming is not FAUST_VERSION."""
    installed = faust.__version__ if installed is None else installed
    if installed != FAUST_VERSION:
        raise SystemExit(
            f"error: worker refuses to start: faust-streaming {installed} is installed, but "
            f"processors/faust_fixes.py patches methods copied from {FAUST_VERSION}; "
            f"install faust-streaming=={FAUST_VERSION}"
        )


def switched_off(environ: dict[str, str] | None = None) -> frozenset[str]:
    raw = (os.environ if environ is None else environ).get(OFF_ENV, "").strip()
    if not raw:
        return frozenset()
    try:
        names = json.loads(raw)
    except ValueError as exc:
        raise SystemExit(f"error: {OFF_ENV} is not a JSON list: {exc}") from exc
    if not isinstance(names, list) or not set(names) <= set(FIXES):
        raise SystemExit(f"error: {OFF_ENV} must be a JSON list of {', '.join(FIXES)}")
    return frozenset(names)


def apply() -> None:
    global _APPLIED
    if _APPLIED:
        return
    _APPLIED = True
    off = switched_off()
    if PRODUCER_FLUSH not in off:
        _fix_producer_buffer_flush()
    if PAUSED_RECORDS not in off:
        Consumer.getmany = _getmany  # type: ignore[method-assign]
        Consumer.on_buffer_drop = _on_buffer_drop  # type: ignore[method-assign]
    if SEEK_BEFORE_RESUME not in off:
        Recovery._resume_streams = _resume_streams  # type: ignore[method-assign]
        Recovery.on_recovery_completed = _on_recovery_completed  # type: ignore[method-assign]
    # Before bulk recovery, which wraps whichever _wait_next_records it finds.
    if DRAINED_WAKE not in off:
        Consumer._wait_next_records = _wait_next_records  # type: ignore[method-assign]
        Consumer.on_buffer_drop = _waking(Consumer.on_buffer_drop)  # type: ignore[method-assign,assignment]
    if BULK_RECOVERY not in off:
        faust_recovery.install(Consumer, Recovery)
    if EAGER_DELIVERY not in off:
        faust_delivery.install(Consumer, ProducerBuffer)


def _fix_producer_buffer_flush() -> None:
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


async def _getmany(self: Any, timeout: float) -> AsyncIterator[tuple[TP, Any]]:  # noqa: ASYNC109
    """faust.transport.consumer.Consumer.getmany, seeking back instead of dropping records."""
    records, active_partitions = await self._wait_next_records(timeout)
    generation_id = self.app.consumer_generation_id
    if records is None or self.should_stop:
        return
    if not self.flow_active:
        # As Faust does: the batch is dropped and every partition goes back to its commit.
        try:
            await self.perform_seek()
        except Exception as exc:
            self.log.warning(f"exception performing seek when flow not active {exc}")
        return
    held_back: dict[TP, int] = {}
    tracked: set[TP] = set()
    for tp, record in self.scheduler.iterate(records):
        if not self.flow_active or self.app.consumer_generation_id != generation_id:
            # A rebalance started: the next assignment starts from the committed offsets.
            return
        if tp in held_back:
            continue
        # A partition whose stream buffer filled up keeps handing over what was fetched for
        # it, but not while it is paused (Faust's own check lets those through too).
        buffered = tp in self._buffered_partitions and tp not in self._paused_partitions
        if active_partitions is None or tp in active_partitions or buffered:
            if tp not in tracked:
                # Faust does it per record; one fetch's records share one high watermark.
                tracked.add(tp)
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            yield tp, self._to_message(tp, record)
        else:
            held_back[tp] = record.offset
    for tp, offset in held_back.items():
        await _seek_back(self, tp, offset)


async def _wait_next_records(
    self: Any,
    timeout: float,  # noqa: ASYNC109
) -> tuple[Any, set[TP] | None]:
    """faust.transport.consumer.Consumer._wait_next_records, waking when a buffer drains."""
    if not self.flow_active:
        await self.wait(self.can_resume_flow)
    try:
        self.not_waiting_next_records.set()
        client_only = self.app.client_only
        active_partitions = None if client_only else self._get_active_partitions()
        records: Any = {}
        if client_only or active_partitions:
            records = await self._getmany(
                active_partitions=active_partitions, timeout=min(timeout, FETCH_WAIT_S)
            )
        else:
            # Every partition is paused or has a full stream buffer: Faust sleeps a second
            # here. The first buffer to drain makes its partition active again: go then.
            drained = _drained(self)
            drained.clear()
            await self.wait_first(drained, timeout=IDLE_FETCH_WAIT_S)
        return records, active_partitions
    finally:
        self.not_waiting_next_records.set()


def _waking(on_buffer_drop: Callable[[Any, TP], None]) -> Callable[[Any, TP], None]:
    """`on_buffer_drop`, then a wake-up for a fetcher waiting in `_wait_next_records`."""

    def drop(self: Any, tp: TP) -> None:
        on_buffer_drop(self, tp)
        _drained(self).set()

    return drop


def _drained(consumer: Any) -> asyncio.Event:
    """Set when a stream buffer of `consumer` drains (its partition may be fetched again)."""
    event: asyncio.Event | None = getattr(consumer, "_onoff_drained", None)
    if event is None:
        event = consumer._onoff_drained = asyncio.Event()
    return event


def _on_buffer_drop(self: Any, tp: TP) -> None:
    """faust.transport.consumer.Consumer.on_buffer_drop, leaving a paused partition paused."""
    if tp in self._buffered_partitions:
        self._buffered_partitions.discard(tp)
        if tp not in self._paused_partitions:
            self._get_active_partitions().add(tp)


async def _seek_back(consumer: Any, tp: TP, offset: int) -> None:
    # A partition revoked meanwhile is left alone: its next owner starts from the commit.
    if tp not in consumer.assignment():
        return
    try:
        await consumer._seek(tp, offset)
    except IllegalStateError:  # revoked between the check and the seek
        return
    # The read offset is the last offset handed over: the record before this one.
    consumer._read_offset[tp] = offset - 1 if offset > 0 else None


async def _resume_streams(self: Any, generation_id: int = 0) -> None:
    """faust.tables.recovery.Recovery._resume_streams, seeking before it resumes."""
    app = self.app
    consumer = app.consumer
    await app.on_rebalance_complete.send()
    assignment = consumer.assignment()
    if app.consumer_generation_id != generation_id:
        self.log.warning("Recovery rebalancing again")
        return
    if assignment:
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(), timeout=app.conf.broker_request_timeout)
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
    else:
        self.log.info("Resuming streams with empty assignment")
    self.completed.set()
    self.log.info("Resuming flow...")
    app.flow_control.resume()
    consumer.resume_flow()
    await app._fetcher.maybe_start()
    self.tables.on_actives_ready()
    self.tables.on_standbys_ready()
    app.on_rebalance_end()
    self.log.info("Worker ready")


async def _on_recovery_completed(self: Any, generation_id: int = 0) -> None:
    """faust.tables.recovery.Recovery.on_recovery_completed, seeking before it resumes."""
    app = self.app
    consumer = app.consumer
    self.log.info("Restore complete!")
    await app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callbacks = [
        asyncio.ensure_future(
            table.on_recovery_completed(
                self.actives_for_table[table], self.standbys_for_table[table]
            )
        )
        for table in self.tables.values()
    ]
    if callbacks:
        await asyncio.wait(callbacks)
    assignment = consumer.assignment()
    if app.consumer_generation_id != generation_id:
        self.log.warning(
            f"Recovery rebalancing again app id {app.consumer_generation_id} param {generation_id}"
        )
        return
    if assignment:
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(), timeout=app.conf.broker_request_timeout)
    consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
    self.completed.set()
    app.flow_control.resume()
    consumer.resume_flow()
    await app._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    app.on_rebalance_end()
    self.log.info("Worker ready")
