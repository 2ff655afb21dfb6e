"""Dedupe: onoff.cdr.raw -> onoff.calls, one current, versioned record per call.

The call table's changelog *is* the output topic: one Kafka record both emits
a version and stores the state it is recovered from. So there is no window in
which the state says "emitted" but the output was never written (the trap that
sank KIP-557): after a crash, either the record landed, and the replayed
delivery is found folded in and dropped, or it did not, and the replay computes
the same version again, identical, from the same inputs.

Deliveries are handled in batches (`stream.take_events`): each one is decoded
and decided on its own, in order, exactly as before (one version per delivery
that changes the call); the effects are per batch: the versions are encoded
and handed to Faust's producer together, the store is written in bulk
(`processors.call_store`) and progress is counted once. Faust acks a batch's
events only after this returns, so after their versions were handed to the
producer, and it flushes the producer before it commits an offset: a committed
offset always has its output behind it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, cast

import faust
from faust.streams import Stream
from faust.tables.table import Table
from faust.types import Message, StreamT

from processors.call_store import CallStore, MemoryCalls, RocksCalls, rocksdb_options
from processors.codecs import UTF8, RawBytes, register_avro
from processors.context import ProcessorContext
from processors.deadletter import DeadLetters
from processors.merge import Outcome, Record, decide, evict_past_retention
from processors.progress import ProgressTracker
from processors.pseudonyms import Pseudonymizer
from processors.records import EventClock, decode_with_retry
from processors.version_producer import VersionProducer, producer_settings
from schemas import AvroCodec, RecordDecodeError, RegistryUnavailableError, SchemaName

# Re-exported for processors.metrics, which imported it from here.
__all__ = ["DedupeProcessor", "decode_with_retry", "install"]

log = logging.getLogger(__name__)

NAME = "dedupe"
DEADLETTERED = "deadlettered"


class DedupeProcessor:
    pseudonymize = Pseudonymizer(None)  # install() sets the key (ONOFF_BRIDGE_PSEUDONYMIZE_KEY)

    def __init__(
        self,
        app: faust.App,
        source_topic: str,
        calls_topic: str,
        call_events: AvroCodec,
        calls: AvroCodec,
        deadletters: DeadLetters,
        progress: ProgressTracker,
        retention: timedelta,
        *,
        batch_size: int = 1000,
        batch_within_s: float = 0.05,
        rocksdb_options: Mapping[str, Any] | None = None,
        versions_producer: Mapping[str, Any] | None = None,
    ) -> None:
        self._app = app
        # librdkafka settings of the versions' producer (processors.version_producer).
        self._producer_settings = versions_producer or {}
        self._producer: VersionProducer | None = None
        self._call_events = call_events
        self._calls_codec = calls
        self._deadletters = deadletters
        self._progress = progress
        self._retention = retention
        self._batch_size = batch_size
        self._batch_within_s = batch_within_s
        # Event time: the latest receivedAt read. Refusal and eviction both use it.
        self.clock = EventClock()
        self.source = app.topic(source_topic, schema=RawBytes(), internal=False)
        call_codec_name = register_avro(f"avro:{calls_topic}", calls)
        self._calls_topic = app.topic(
            calls_topic, key_serializer=UTF8, value_serializer=call_codec_name
        )
        self.calls = cast(
            Table[str, dict[str, Any]],
            app.Table(
                "calls",
                changelog_topic=self._calls_topic,
                options=dict(rocksdb_options) if rocksdb_options else None,
            ),
        )
        # Faust derives these from key_type/value_type; recovery reads with them.
        self.calls.key_serializer = UTF8
        self.calls.value_serializer = call_codec_name
        self._store: CallStore[Record] | None = None
        app.agent(self.source, name=f"{NAME}-agent")(self._run)

    @property
    def store(self) -> CallStore[Record]:
        if self._store is None:
            data = self.calls.data  # Faust builds the store on first use
            self._store = (
                MemoryCalls(data)
                if hasattr(data, "_key_partition")
                else RocksCalls(data, self._calls_codec)
            )
        return self._store

    async def _run(self, stream: StreamT[Any]) -> None:
        # Faust's agents get a faust.Stream; StreamT does not declare take_events.
        batches = cast(Stream[Any], stream).take_events(
            self._batch_size, within=self._batch_within_s
        )
        async for events in batches:
            await self.handle_batch([event.message for event in events])

    async def handle_batch(self, messages: Sequence[Message]) -> list[Outcome | None]:
        """Decides each delivery in order, then carries out the batch's effects together."""
        store = self.store
        outcomes: list[Outcome | None] = []
        counts: Counter[str] = Counter()
        last_offsets: dict[tuple[str, int], int] = {}
        versions: list[tuple[bytes, bytes, int]] = []
        for message in messages:
            try:
                outcome = await self._handle(message, store, versions)
            except Exception as exc:
                # A delivery the code cannot handle (a bug, a value the Call schema cannot
                # hold): Faust would ack it with its batch, so it goes where it can be seen.
                await self._reject(message, f"dedupe could not handle it: {exc!r}")
                outcome = None
            outcomes.append(outcome)
            counts[
                DEADLETTERED if outcome in (None, Outcome.BEYOND_RETENTION) else outcome.value
            ] += 1
            last_offsets[message.topic, message.partition] = message.offset
        await self._send(versions)
        # After the sends: a delivery that failed raises here, once this batch's versions
        # are with the producer, so acking the batch cannot skip any of its deliveries.
        store.settle()
        self._progress.processed_batch(NAME, counts, last_offsets)
        return outcomes

    async def _handle(
        self, message: Message, store: CallStore[Record], versions: list[tuple[bytes, bytes, int]]
    ) -> Outcome | None:
        try:
            try:
                delivery = self._call_events.decode(message.value or b"")
            except RegistryUnavailableError:  # waited out there, not dead-lettered
                delivery = await decode_with_retry(self._call_events, message.value)
        except RecordDecodeError as exc:
            await self._reject(message, str(exc))
            return None
        call_id = delivery["id"]
        self.clock.advance(delivery["ingest"]["receivedAt"])
        delivery = self.pseudonymize(delivery)  # the identity unless a key is set
        partition = message.partition
        outcome, call = decide(
            store.get(call_id, partition), delivery, self.clock.now, self._retention
        )
        if outcome is Outcome.BEYOND_RETENTION:
            await self._reject(message, "the call is past the dedupe retention")
        elif outcome is Outcome.NEW_VERSION:
            value = self._calls_codec.encode(call)
            # The changelog partition is the source partition, as for any Faust table.
            store.put(call_id, call, partition, value)
            versions.append((call_id.encode(), value, partition))
        return outcome

    async def _send(self, versions: list[tuple[bytes, bytes, int]]) -> None:
        """Hands the batch's versions to the producer that Faust flushes before a commit."""
        if not versions:
            return
        if self._producer is None:
            self._producer = VersionProducer(self._producer_settings)
            self._producer.attach(self._app.producer)
        delivery = await self._producer.send(self._calls_topic.get_topic_name(), versions)
        self.store.sent([delivery])

    def forget_unconfirmed(self) -> None:
        """After a rebalance: what only memory holds may belong to a partition now elsewhere."""
        self.store.forget()

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

    async def _reject(self, message: Message, reason: str) -> None:
        await self._deadletters.reject(NAME, message, reason)


def install(context: ProcessorContext) -> None:
    settings = context.settings
    topics = settings.topics
    dedupe = DedupeProcessor(
        context.app,
        source_topic=topics.cdr_raw,
        calls_topic=topics.calls,
        call_events=AvroCodec(context.registry, SchemaName.CALL_EVENT, topics.cdr_raw),
        calls=AvroCodec(context.registry, SchemaName.CALL, topics.calls),
        deadletters=context.deadletters,
        progress=context.progress,
        retention=timedelta(days=settings.dedupe_retention_days),
        batch_size=settings.dedupe_batch_size,
        batch_within_s=settings.dedupe_batch_within_s,
        rocksdb_options=rocksdb_options(
            settings.rocksdb_block_cache_mb, settings.rocksdb_write_buffer_mb
        )
        if settings.store == "rocksdb"
        else None,
        versions_producer=producer_settings(settings.kafka_config()),
    )
    dedupe.pseudonymize = Pseudonymizer(context.settings.pseudonymize_key)
    context.progress.source_topics.add(topics.cdr_raw)

    async def evict_expired() -> None:
        evicted = dedupe.evict_expired()
        if evicted:
            log.info("evicted %d calls past the retention from memory", evicted)

    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Faust sends this after the batches in hand were processed and the producer flushed.
        dedupe.forget_unconfirmed()

    context.app.timer(3600.0)(evict_expired)
    context.app.on_partitions_revoked.connect(on_revoked)
