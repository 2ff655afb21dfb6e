"""Publishes records to Kafka and lets the request handler await the broker's acknowledgement.

A plain confluent-kafka `Producer` is driven by one poll thread; the delivery
reports of one poll are handed to the event loop in one batch (one wake-up,
not one per message), where they complete the futures the handlers await. So
the handler answers 200 only once the broker has the record (`acks=all`,
idempotent producer), and never blocks the event loop while it waits.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ingress.errors import PublishError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryReceipt:
    topic: str
    partition: int
    offset: int


_Report = tuple["asyncio.Future[DeliveryReceipt]", KafkaError | None, Message]

# Kafka refusing this record (or this producer) for good: waiting does not help, so
# such a record is answered 503 rather than spooled. Anything else (timeouts, no
# leader, too few in-sync replicas, a broker away) is an outage the spool outlives.
PERMANENT_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_REQUIRED_ACKS,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.POLICY_VIOLATION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
        KafkaError.UNSUPPORTED_COMPRESSION_TYPE,
        KafkaError._INVALID_ARG,
        KafkaError._FATAL,
    }
)


def producer_config(
    connection: str | Mapping[str, str],
    message_timeout_ms: int,
    linger_ms: int = 5,
    compression: str = "lz4",
    queue_max_messages: int = 100_000,
    extra: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`connection`: the librdkafka settings of `BridgeSettings.kafka_config()` (TLS, SASL),
    or bare bootstrap servers for a plaintext broker."""
    if isinstance(connection, str):
        connection = {"bootstrap.servers": connection}
    return {
        **connection,
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
        self._loop: asyncio.AbstractEventLoop | None = None
        # Filled by delivery callbacks, which run in the thread that polls.
        self._reports: list[_Report] = []

    def start(self) -> None:
        """Starts the poll thread; call it from the event loop that will publish."""
        self._loop = asyncio.get_running_loop()
        self._running.set()
        self._thread = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        assert self._loop is not None
        while self._running.is_set():
            self._producer.poll(0.05)
            if self._reports:
                reports, self._reports = self._reports, []
                self._loop.call_soon_threadsafe(_settle_all, reports)

    async def publish(self, topic: str, key: str, value: bytes) -> DeliveryReceipt:
        future: asyncio.Future[DeliveryReceipt] = asyncio.get_running_loop().create_future()
        try:
            self._producer.produce(
                topic, value=value, key=key.encode(), on_delivery=partial(self._collect, future)
            )
        except BufferError as exc:
            raise PublishError("producer queue is full") from exc
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            raise PublishError(
                f"produce to {topic} failed: {exc}",
                transient=error is None or error.code() not in PERMANENT_ERRORS,
            ) from exc
        try:
            async with asyncio.timeout(self._delivery_timeout_s):
                return await future
        except TimeoutError as exc:
            # The message may still be written later; the processors deduplicate.
            raise PublishError(
                f"no acknowledgement from Kafka within {self._delivery_timeout_s}s"
            ) from exc

    def _collect(
        self, future: asyncio.Future[DeliveryReceipt], error: KafkaError | None, message: Message
    ) -> None:
        self._reports.append((future, error, message))

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
        """Stops the poll thread, flushes what is queued; returns messages left unsent.

        Call it on the event loop's thread: the last reports are settled here.
        """
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout=2)
        left = int(self._producer.flush(timeout_s))
        reports, self._reports = self._reports, []
        _settle_all(reports)
        if left:
            log.error("producer closed with undelivered messages", extra={"undelivered": left})
        return left


def _settle_all(reports: list[_Report]) -> None:
    for future, error, message in reports:
        if future.done():  # the handler gave up waiting already
            continue
        if error is not None:
            future.set_exception(
                PublishError(
                    f"delivery to {message.topic()} failed: {error.str()}",
                    transient=error.code() not in PERMANENT_ERRORS,
                )
            )
        else:
            future.set_result(
                DeliveryReceipt(
                    message.topic() or "", message.partition() or 0, message.offset() or 0
                )
            )
