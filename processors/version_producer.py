"""Hands dedupe's versions to librdkafka, flushed whenever Faust flushes its own producer.

Faust's producer (aiokafka) builds every record in Python on the event loop,
and a send waits while its partition's batch is full and the previous one is
in flight: a tenth of dedupe's CPU went there. confluent-kafka does the same
in C on its own threads; a batch of versions costs one `produce` call each.

The guarantee does not move: Faust flushes its producer before it commits an
offset (`Consumer._commit_offsets`), on a rebalance and when it stops, and
`attach` makes that flush also wait until every record handed to this
producer is acknowledged, so a committed offset still has its output behind it.
A record Kafka refused for good (librdkafka gave up after its own retries)
makes every later flush raise: the commit fails, the worker stops, and its
replacement processes the uncommitted records again.

Used by dedupe (its versions) and the metrics (contributions, table changelogs,
metrics records).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, Producer

from processors.call_store import DeliveryFailedError

log = logging.getLogger(__name__)

# How often a flush looks again for acknowledgements (librdkafka delivers them on poll).
FLUSH_POLL_S = 0.002


def producer_settings(connection: Mapping[str, str], linger_ms: int = 20) -> dict[str, Any]:
    """librdkafka settings: the service's connection, as Faust's producer is set up."""
    return {
        **connection,
        "enable.idempotence": True,  # acks=all, ordered retries
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": linger_ms,
        "socket.keepalive.enable": True,
        # For records sent without a partition: the partition Java clients and Faust's
        # aiokafka producer pick for the same key (librdkafka's default hashes otherwise).
        "partitioner": "murmur2_random",
    }


class BatchDelivery:
    """The acknowledgements of one batch of records: done when every one has answered."""

    def __init__(self, count: int, on_failure: Callable[[KafkaError], None] | None = None) -> None:
        self.remaining = count
        self.error: KafkaError | None = None
        self._on_failure = on_failure

    def on_delivery(self, error: KafkaError | None, message: Any) -> None:
        self.remaining -= 1
        if error is not None and self.error is None:
            self.error = error
            # librdkafka's reason names the topic and partition, never a record's content.
            log.error("a record was not delivered to %s: %s", message.topic(), error)
            if self._on_failure is not None:
                self._on_failure(error)

    def done(self) -> bool:
        return self.remaining <= 0

    def exception(self) -> BaseException | None:
        return None if self.error is None else RuntimeError(str(self.error))


class VersionProducer:
    def __init__(self, settings: Mapping[str, Any]) -> None:
        self._producer = Producer(dict(settings))
        self.failure: KafkaError | None = None

    def _failed(self, error: KafkaError) -> None:
        if self.failure is None:
            self.failure = error

    async def send(
        self, topic: str, versions: Sequence[tuple[bytes | None, bytes, int]]
    ) -> BatchDelivery:
        """Hands over (key, value, partition) records; returns their acknowledgements.

        A partition of -1 lets the partitioner pick it from the key."""
        delivery = BatchDelivery(len(versions), self._failed)
        produce, on_delivery = self._producer.produce, delivery.on_delivery
        for key, value, partition in versions:
            while True:
                try:
                    produce(topic, value, key, partition, on_delivery=on_delivery)
                    break
                except BufferError:  # librdkafka's queue is full: let it drain
                    self._producer.poll(0)
                    await asyncio.sleep(FLUSH_POLL_S)
        self._producer.poll(0)  # acknowledgements of earlier batches
        return delivery

    async def flush(self) -> None:
        """Returns once every record handed over was acknowledged.

        Raises DeliveryFailedError, now and at every later flush, once a record failed
        for good: what it carried is not in Kafka, so no offset may be committed past it.
        """
        # Polling: librdkafka serves acknowledgements on poll, there is nothing to await.
        while self._producer.flush(0):  # noqa: ASYNC110
            await asyncio.sleep(FLUSH_POLL_S)
        if self.failure is not None:
            raise DeliveryFailedError(f"a record was not delivered: {self.failure.str()}")

    def attach(self, faust_producer: Any) -> None:
        """Makes Faust's producer flush (before each commit) flush this producer too."""
        faust_flush = faust_producer.flush

        async def flush() -> None:
            await faust_flush()
            await self.flush()

        faust_producer.flush = flush
