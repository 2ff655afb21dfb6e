"""Dedupe: onoff.cdr.raw -> onoff.calls, one current, versioned record per call.

The call table's changelog *is* the output topic: one Kafka record both emits
a version and stores the state it is recovered from. So there is no window in
which the state says "emitted" but the output was never written (the trap that
sank KIP-557): after a crash, either the record landed, and the replayed
delivery is found folded in and dropped, or it did not, and the replay computes
the same version again, identical, from the same inputs.

The record is handed to the producer (awaited) before the event is done, and
Faust flushes the producer before it commits an offset, so a committed offset
always has its output behind it. Table assignment would go through Faust's
ProducerBuffer instead, whose flush can return with messages still queued.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, cast

import faust
from faust.tables.table import Table
from faust.types import EventT, StreamT

from processors.codecs import UTF8, register_avro
from processors.context import ProcessorContext
from processors.deadletter import DeadLetters
from processors.merge import Outcome, decide, evict_past_retention
from processors.progress import ProgressTracker
from processors.pseudonyms import Pseudonymizer
from processors.records import EventClock, decode_with_retry
from schemas import AvroCodec, RecordDecodeError, SchemaName

# Re-exported for processors.metrics, which imported it from here.
__all__ = ["DedupeProcessor", "decode_with_retry", "install"]

log = logging.getLogger(__name__)

NAME = "dedupe"


class DedupeProcessor:
    pseudonymize = Pseudonymizer(None)  # install() sets the key (ONOFF_BRIDGE_PSEUDONYMIZE_KEY)

    def __init__(
        self,
        app: faust.App,
        source_topic: str,
        calls_topic: str,
        call_events: AvroCodec,
        call_codec_name: str,
        deadletters: DeadLetters,
        progress: ProgressTracker,
        retention: timedelta,
    ) -> None:
        self._call_events = call_events
        self._deadletters = deadletters
        self._progress = progress
        self._retention = retention
        # Event time: the latest receivedAt read. Refusal and eviction both use it.
        self.clock = EventClock()
        self.source = app.topic(
            source_topic, key_serializer="raw", value_serializer="raw", internal=False
        )
        self._calls_topic = app.topic(
            calls_topic, key_serializer=UTF8, value_serializer=call_codec_name
        )
        self.calls = cast(
            Table[str, dict[str, Any]], app.Table("calls", changelog_topic=self._calls_topic)
        )
        # Faust derives these from key_type/value_type; recovery reads with them.
        self.calls.key_serializer = UTF8
        self.calls.value_serializer = call_codec_name
        app.agent(self.source, name=f"{NAME}-agent")(self._run)

    async def _run(self, stream: StreamT[Any]) -> None:
        async for event in stream.events():
            await self.handle(event)

    async def handle(self, event: EventT[Any]) -> Outcome | None:
        message = event.message
        try:
            delivery = await decode_with_retry(self._call_events, message.value)
        except RecordDecodeError as exc:
            await self._reject(message, str(exc))
            return None
        call_id = delivery["id"]
        self.clock.advance(delivery["ingest"]["receivedAt"])
        delivery = self.pseudonymize(delivery)  # the identity unless a key is set
        outcome, call = decide(self.calls.get(call_id), delivery, self.clock.now, self._retention)
        if outcome is Outcome.BEYOND_RETENTION:
            await self._reject(message, "the call is past the dedupe retention")
            return outcome
        if outcome is Outcome.NEW_VERSION:
            await self._emit(call_id, call, message.partition)
        self._progress.processed(
            NAME, outcome.value, message.topic, message.partition, message.offset
        )
        return outcome

    async def _emit(self, call_id: str, call: dict[str, Any], partition: int) -> None:
        # The changelog partition is the source partition, as for any Faust table.
        await self._calls_topic.send(key=call_id, value=call, partition=partition)
        store = self.calls.data
        store[call_id] = call  # the store only: the record just sent is its changelog entry
        key_partitions = getattr(store, "_key_partition", None)  # memory store: revocation
        if key_partitions is not None:
            key_partitions[call_id] = partition

    def evict_expired(self) -> int:
        """Shrinks calls past the retention in memory to markers, without a tombstone.

        Only the memory store needs it (RocksDB keeps state on disk). The marker
        keeps the call known, so its later deliveries are refused (see
        `processors.merge.decide`) instead of starting it again at version 1; its
        last version stays in the compacted topic. A restart recovers full calls
        from that topic, which the same rule refuses.
        """
        data = getattr(self.calls.data, "data", None)
        if not isinstance(data, dict) or not self.clock.started:
            return 0
        return len(evict_past_retention(data, self.clock.now, self._retention))

    async def _reject(self, message: Any, reason: str) -> None:
        await self._deadletters.reject(NAME, message, reason)
        self._progress.processed(
            NAME, "deadlettered", message.topic, message.partition, message.offset
        )


def install(context: ProcessorContext) -> None:
    topics = context.settings.topics
    call_codec = register_avro(
        f"avro:{topics.calls}", AvroCodec(context.registry, SchemaName.CALL, topics.calls)
    )
    dedupe = DedupeProcessor(
        context.app,
        source_topic=topics.cdr_raw,
        calls_topic=topics.calls,
        call_events=AvroCodec(context.registry, SchemaName.CALL_EVENT, topics.cdr_raw),
        call_codec_name=call_codec,
        deadletters=context.deadletters,
        progress=context.progress,
        retention=timedelta(days=context.settings.dedupe_retention_days),
    )
    dedupe.pseudonymize = Pseudonymizer(context.settings.pseudonymize_key)
    context.progress.source_topics.add(topics.cdr_raw)

    async def evict_expired() -> None:
        evicted = dedupe.evict_expired()
        if evicted:
            log.info("evicted %d calls past the retention from memory", evicted)

    context.app.timer(3600.0)(evict_expired)
