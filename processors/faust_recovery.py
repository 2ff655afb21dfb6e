"""Table recovery in bulk: the `bulk-recovery` fix to faust-streaming (see faust_fixes).

Faust restores a table one changelog record at a time, and each record costs far
more than reading it: the fetcher awaits `wait_first(callback, suspend_flow.wait())`
for it (two tasks and an `asyncio.wait`), the conductor decodes its key and value
into an Event, Recovery takes it off a queue through `asyncio.wait_for` (one more
task) and recomputes `need_recovery()` over every partition. That held a restore to
a few thousand records/s however fast the broker was (issue 16).

With this fix, what is fetched for a changelog partition being restored skips all
of that. The fetcher puts the records of each fetch on Recovery's changelog queue as
one `RestoreBatch`: the same queue as Faust's events, so whatever is queued before
them is applied before them. For each partition of the batch, Recovery keeps only the
last record of each key (every key-value store is last-write-wins: a record that a
later one overwrites changes nothing; tables whose changelog entries are operations,
such as SetTable, get every record), builds events whose key and value are decoded
only if the store asks (RocksDB writes the raw bytes and never does), and writes
them with `apply_changelog_batch`, 2,000 at a time, giving the event loop a turn in
between (so /healthz answers during a long restore, with the records remaining).
The bookkeeping (offsets, the end of recovery) is done per batch, not per record.

Left on Faust's own path, record by record: standby partitions, a changelog topic
that another channel also reads, tables with an `on_changelog_event` callback,
anything fetched while the flow is stopped (a rebalance), and every record once the
restore is over.

`_slurp_changelogs` is a copy of faust-streaming 0.15.3's, changed only where said.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from time import monotonic
from typing import Any

from faust.exceptions import KeyDecodeError, ValueDecodeError
from faust.stores.base import SerializedStore
from faust.stores.memory import Store as MemoryStore
from faust.types import TP
from faust.utils.tracing import finish_span
from mode import Service

log = logging.getLogger(__name__)

# Batches waiting on the changelog queue before the fetcher waits for Recovery: a
# batch holds one fetch (up to consumer_max_fetch_size per partition), so this bounds
# what a restore keeps in memory ahead of the store.
MAX_QUEUED_BATCHES = 4
# Records written to the store at once before the loop gets a turn.
CHUNK = 2_000


@dataclass(frozen=True)
class RestoreBatch:
    """Changelog records fetched together for partitions being restored, in offset order."""

    records: Mapping[TP, Sequence[Any]]


_UNSET: Any = object()


class RestoredEvent:
    """What a store's `apply_changelog_batch` reads of an Event; key and value are decoded
    with the changelog topic's own schema, as Faust's conductor would, on first use."""

    __slots__ = ("_app", "_key", "_schema", "_value", "message")

    def __init__(self, app: Any, schema: Any, message: Any) -> None:
        self._app = app
        self._schema = schema
        self.message = message
        self._key = _UNSET
        self._value = _UNSET

    @property
    def key(self) -> Any:
        if self._key is _UNSET:
            self._key = self._schema.loads_key(self._app, self.message)
        return self._key

    @property
    def value(self) -> Any:
        if self._value is _UNSET:
            message = self.message
            if message.value is None and self._schema.allow_empty:
                self._value = None
            else:
                self._value = self._schema.loads_value(self._app, message)
        return self._value

    @property
    def headers(self) -> Any:
        return self.message.headers


def install(consumer_cls: Any, recovery_cls: Any) -> None:
    fetch = consumer_cls._wait_next_records

    async def wait_next_records(self: Any, timeout: float) -> Any:  # noqa: ASYNC109
        records, active_partitions = await fetch(self, timeout)
        if records:
            records = await _divert(self, records)
        return records, active_partitions

    consumer_cls._wait_next_records = wait_next_records
    recovery_cls._slurp_changelogs = Service.task(_slurp_changelogs)


async def _divert(consumer: Any, records: Mapping[TP, Sequence[Any]]) -> Any:
    """Puts the records of partitions being restored on the changelog queue as one batch;
    returns the others, for Faust's own path."""
    app = consumer.app
    if app.client_only or not app.tables:
        return records
    recovery = app.tables.recovery
    restored = _restorable(consumer, recovery, records)
    if not restored:
        return records
    queue = app.tables.changelog_queue
    if queue.qsize() >= MAX_QUEUED_BATCHES:
        while queue.qsize() >= MAX_QUEUED_BATCHES and consumer.flow_active:
            if consumer.should_stop:
                return records
            await asyncio.sleep(0.001)  # Recovery applies what is queued
        restored = _restorable(consumer, recovery, records)  # a rebalance may have begun
        if not restored:
            return records
    queue.force_put_nowait(RestoreBatch(restored))
    for tp, batch in restored.items():
        consumer._read_offset[tp] = batch[-1].offset
        app.monitor.track_tp_end_offset(tp, consumer.highwater(tp))
    return {tp: batch for tp, batch in records.items() if tp not in restored}


def _restorable(
    consumer: Any, recovery: Any, records: Mapping[TP, Sequence[Any]]
) -> dict[TP, Sequence[Any]]:
    """The records of partitions whose table is being restored, when nothing stops it."""
    app = consumer.app
    if not (recovery.in_recovery and consumer.flow_active and app.flow_control.is_active()):
        return {}
    active = consumer._get_active_partitions()
    return {
        tp: batch
        for tp, batch in records.items()
        if batch and tp in recovery.active_tps and tp in active and _bulk_ok(app, recovery, tp)
    }


def _bulk_ok(app: Any, recovery: Any, tp: TP) -> bool:
    table = recovery.tp_to_table.get(tp)
    if table is None or table._on_changelog_event is not None:
        return False  # the callback wants every record as an Event
    # A stream that reads the changelog topic too needs each record delivered to it.
    channels = app.topics._topic_name_index.get(tp.topic, ())
    return len(channels) == 1


async def _apply(recovery: Any, batch: RestoreBatch) -> None:
    app = recovery.app
    offsets = recovery.active_offsets
    to_message = app.consumer._to_message
    for tp, fetched in batch.records.items():
        if tp not in recovery.active_tps:
            continue  # reassigned since it was fetched; its next owner restores it
        table = recovery.tp_to_table[tp]
        done = offsets.get(tp)
        records = [r for r in fetched if done is None or r.offset > done]
        if not records:
            continue
        buffered = recovery.buffers[table]
        if buffered:  # events queued before this batch go to the store first
            table.apply_changelog_batch(buffered)
            buffered.clear()
        last_wins = isinstance(table.data, MemoryStore | SerializedStore)
        schema = table.changelog_topic.schema
        kept = _last_per_key(records) if last_wins else records
        for start in range(0, len(kept), CHUNK):
            if tp not in recovery.active_tps:
                break  # revoked while the loop answered something else
            chunk = kept[start : start + CHUNK]
            upto = chunk[-1].offset if start + CHUNK < len(kept) else records[-1].offset
            try:
                table.apply_changelog_batch(
                    [RestoredEvent(app, schema, to_message(tp, r)) for r in chunk]
                )
            except (KeyDecodeError, ValueDecodeError):
                # As on Faust's path, a record that cannot be decoded is skipped; the
                # others up to here are applied one after the other, none left out.
                span = [
                    r for r in records if (done is None or r.offset > done) and r.offset <= upto
                ]
                table.apply_changelog_batch(_decodable(app, schema, tp, span))
            offsets[tp] = done = upto
            recovery._active_events_received_at[tp] = recovery._last_flush_at = monotonic()
            # A long restore leaves the loop free between chunks: /healthz answers, with
            # the records remaining, and so do the probes.
            await asyncio.sleep(0)


def _last_per_key(records: Sequence[Any]) -> list[Any]:
    """The last record of each key, in offset order."""
    seen: set[Any] = set()
    kept = []
    for record in reversed(records):
        if record.key not in seen:
            seen.add(record.key)
            kept.append(record)
    kept.reverse()
    return kept


def _decodable(app: Any, schema: Any, tp: TP, records: Iterable[Any]) -> list[RestoredEvent]:
    events = []
    for record in records:
        event = RestoredEvent(app, schema, app.consumer._to_message(tp, record))
        try:
            event.key  # noqa: B018 - decodes now, to skip what cannot be decoded
            event.value  # noqa: B018
        except (KeyDecodeError, ValueDecodeError) as exc:
            log.warning(
                "changelog record %s[%d]@%d cannot be decoded, skipped: %s",
                tp.topic,
                tp.partition,
                record.offset,
                type(exc).__name__,
            )
            continue
        events.append(event)
    return events


async def _slurp_changelogs(self: Any) -> None:
    """faust.tables.recovery.Recovery._slurp_changelogs, also applying RestoreBatch items.

    Changed: a RestoreBatch is applied at once (`_apply`); the two debug lines Faust
    formatted for every record are gone; the rest is Faust's, for the events of its path.
    """
    changelog_queue = self.tables.changelog_queue
    tp_to_table = self.tp_to_table

    active_tps = self.active_tps
    standby_tps = self.standby_tps
    active_offsets = self.active_offsets
    standby_offsets = self.standby_offsets
    active_events_received_at = self._active_events_received_at
    standby_events_received_at = self._standby_events_received_at

    buffers = self.buffers
    buffer_sizes = self.buffer_sizes
    processing_times = self._processing_times

    async def _maybe_signal_recovery_end(
        timeout: bool = False,  # noqa: ASYNC109 - Faust's name for a flag, not a limit
        timeout_count: int = 0,
    ) -> None:
        # lets wait at least 2 consecutive cycles for the queue to be
        # empty to avoid race conditions between
        # the aiokafka consumer position and draining of the queue
        if timeout and self.app.in_transaction and timeout_count > 1:
            await detect_aborted_tx()
        if self.in_recovery and not self.need_recovery():
            # apply anything stuck in the buffers
            self.flush_buffers()
            self._set_recovery_ended()
            if self._actives_span is not None:
                self._actives_span.set_tag("Actives-Ready", True)
            log.debug("Setting recovery end")
            self.signal_recovery_end.set()

    async def detect_aborted_tx() -> None:
        highwaters = self.active_highwaters
        offsets = self.active_offsets
        for tp, highwater in highwaters.items():
            if (
                highwater is not None
                and offsets[tp] is not None
                and offsets[tp] < highwater
                and await self.app.consumer.position(tp) >= highwater
            ):
                log.info("Aborted tx until highwater for %s", tp)
                offsets[tp] = highwater

    timeout_count = 0
    collector = _PausedCollector()
    while not self.should_stop:
        try:
            self.signal_recovery_end.clear()
            try:
                event = await asyncio.wait_for(changelog_queue.get(), timeout=5.0)
            except TimeoutError:
                collector.resume()
                timeout_count += 1
                if self.should_stop:
                    return
                await _maybe_signal_recovery_end(timeout=True, timeout_count=timeout_count)
                if timeout_count % RESEEK_AFTER_TIMEOUTS == 0:
                    await reseek_stalled(self)
                continue
            now = monotonic()
            timeout_count = 0
            if isinstance(event, RestoreBatch):
                collector.pause()
                await _apply(self, event)
            else:
                message = event.message
                tp = message.tp
                offset = message.offset
                offsets: Any
                bufsize = buffer_sizes.get(tp)
                is_active = False
                if tp in active_tps:
                    is_active = True
                    table = tp_to_table[tp]
                    offsets = active_offsets
                    if bufsize is None:
                        bufsize = buffer_sizes[tp] = table.recovery_buffer_size
                    active_events_received_at[tp] = now
                elif tp in standby_tps:
                    table = tp_to_table[tp]
                    offsets = standby_offsets
                    if bufsize is None:
                        bufsize = buffer_sizes[tp] = table.standby_buffer_size
                        standby_events_received_at[tp] = now
                else:
                    log.warning("recovery unknown topic %s offset %s", tp, offset)

                seen_offset = offsets.get(tp, None)
                if seen_offset is None or offset > seen_offset:
                    offsets[tp] = offset
                    buf = buffers[table]
                    buf.append(event)
                    await table.on_changelog_event(event)
                    if len(buf) >= bufsize:
                        table.apply_changelog_batch(buf)
                        buf.clear()
                        self._last_flush_at = now
                    now_after = monotonic()

                    if is_active:
                        last_processed_at = self._last_active_event_processed_at
                        if last_processed_at is not None:
                            processing_times.append(now_after - last_processed_at)
                            max_samples = self.num_samples_required_for_estimate
                            if len(processing_times) > max_samples:
                                processing_times.popleft()
                        self._last_active_event_processed_at = now_after

            await _maybe_signal_recovery_end()
            if not self.in_recovery:
                collector.resume()

            standby_ready = self._standbys_span is None and self.tables.standbys_ready
            if not standby_ready and not self.standby_remaining_total():
                log.debug("Completed standby partition fetch")
                if self._standbys_span:
                    finish_span(self._standbys_span)
                    self._standbys_span = None
                self.tables.on_standbys_ready()
        except Exception as ex:
            collector.resume()
            log.warning("Error in recovery %s", ex)
    collector.resume()


# Empty waits of 5 s on the changelog queue, while still behind, before seeking again.
RESEEK_AFTER_TIMEOUTS = 3


async def reseek_stalled(recovery: Any) -> set[TP]:
    """Seeks again the changelog partitions still behind their end when nothing arrives.

    Seen once on the secured 3-broker cluster (tests/faults/test_secure_broker_kill.py):
    the metrics group lost its coordinator with the killed broker, rejoined during the
    outage, and its recovery then waited for minutes on the two changelog partitions
    that broker had led, their records never fetched again although the broker was back
    ("No event received for active tp ... since recovery start"). Recovery ends only
    when every active partition reaches its end, so a partition whose fetch was lost
    would hold the worker for good. Seeking it again to the offset Recovery has reached
    restarts its fetch; the records it applies are the same, and a seek that was not
    needed costs one fetch.
    """
    if not recovery.in_recovery:
        return set()
    behind = {tp for tp, left in recovery.active_remaining().items() if left > 0}
    if behind:
        log.warning(
            "table recovery: nothing arrived for %d s while %d changelog partition(s) "
            "are behind their end; seeking them again",
            RESEEK_AFTER_TIMEOUTS * 5,
            len(behind),
        )
        await recovery._seek_offsets(
            recovery.app.consumer, behind, recovery.active_offsets, "active"
        )
    return behind


class _PausedCollector:
    """Python's cyclic garbage collector, off while a restore keeps adding objects.

    A restore adds hundreds of thousands of live objects (a decoded Call is a few
    dozen), so the collector ran again and again over a growing heap that holds no
    garbage: on the 200,000-record dedupe restore that cost about a third of the
    decoding time. Reference counting still frees everything meanwhile; the
    collector is back on as soon as the restore ends, or waits 5 s for a record.
    """

    def __init__(self) -> None:
        self._paused = False

    def pause(self) -> None:
        if not self._paused and gc.isenabled():
            gc.disable()
            self._paused = True

    def resume(self) -> None:
        if self._paused:
            gc.enable()
            self._paused = False
