"""Publishes records to Kafka and lets the request handler await the broker's acknowledgement.

A plain confluent-kafka `Producer` is driven by one poll thread; each delivery
report completes an asyncio future on the event loop that is waiting for it.
So the handler answers 200 only once the broker has the record (`acks=all`,
idempotent producer), and never blocks the event loop while it waits.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ingress.errors import PublishError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryReceipt:
    topic: str
    partition: int
    offset: int


def producer_config(
    bootstrap_servers: str,
    message_timeout_ms: int,
    linger_ms: int = 5,
    compression: str = "lz4",
    queue_max_messages: int = 100_000,
    extra: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap_servers,
        # librdkafka's default is off; idempotence implies acks=all and ordered retries.
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": compression,
        "linger.ms": linger_ms,
        "message.timeout.ms": message_timeout_ms,
        "queue.buffering.max.messages": queue_max_messages,
        "socket.keepalive.enable": True,
        # The Java client's partitioner, which Faust and Kafka Streams use too, so a call
        # id lands in the same partition whoever produces it.
        "partitioner": "murmur2_random",
        **(extra or {}),
    }


class KafkaPublisher:
    def __init__(self, config: Mapping[str, Any], delivery_timeout_s: float) -> None:
        self._producer = Producer(dict(config))
        self._delivery_timeout_s = delivery_timeout_s
        self._running = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._running.set()
        self._thread = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        while self._running.is_set():
            self._producer.poll(0.05)

    async def publish(self, topic: str, key: str, value: bytes) -> DeliveryReceipt:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[DeliveryReceipt] = loop.create_future()

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            loop.call_soon_threadsafe(_settle, future, error, message)

        try:
            self._producer.produce(topic, value=value, key=key.encode(), on_delivery=on_delivery)
        except BufferError as exc:
            raise PublishError("producer queue is full") from exc
        except KafkaException as exc:
            raise PublishError(f"produce to {topic} failed: {exc}") from exc
        try:
            return await asyncio.wait_for(future, self._delivery_timeout_s)
        except TimeoutError as exc:
            # The message may still be written later; the processors deduplicate.
            raise PublishError(
                f"no acknowledgement from Kafka within {self._delivery_timeout_s}s"
            ) from exc

    def queue_depth(self) -> int:
        return len(self._producer)

    def reachable(self, topic: str, timeout_s: float = 2.0) -> bool:
        """True when a broker answers a metadata request for `topic` and it exists."""
        try:
            metadata = self._producer.list_topics(topic, timeout=timeout_s)
        except KafkaException:
            return False
        found = metadata.topics.get(topic)
        return found is not None and found.error is None

    def close(self, timeout_s: float = 10.0) -> int:
        """Flushes what is queued, stops the poll thread; returns messages left unsent."""
        left = int(self._producer.flush(timeout_s))
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if left:
            log.error("producer closed with undelivered messages", extra={"undelivered": left})
        return left


def _settle(
    future: asyncio.Future[DeliveryReceipt], error: KafkaError | None, message: Message
) -> None:
    if future.done():  # the handler gave up waiting already
        return
    if error is not None:
        future.set_exception(PublishError(f"delivery to {message.topic()} failed: {error.str()}"))
    else:
        future.set_result(
            DeliveryReceipt(message.topic() or "", message.partition() or 0, message.offset() or 0)
        )
