"""Publishes records to Kafka and lets the request handler await the broker's acknowledgement.

A plain confluent-kafka `Producer`, polled from the event loop (every
millisecond while records await their acknowledgement): each delivery report
completes the future its handler awaits, or fails it after the delivery
timeout. So the handler answers 200 only once the broker has the record
(`acks=all`, idempotent producer), and never blocks the event loop while it waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from functools import partial
from typing import Any, NamedTuple

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ingress.errors import PublishError

log = logging.getLogger(__name__)


class DeliveryReceipt(NamedTuple):
    topic: str
    partition: int
    offset: int


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


# While records await their acknowledgement, the loop polls the producer this often (and
# at each publish): an acknowledgement waits at most this long (Kafka's own takes linger.ms
# plus a round trip).
# uvloop's timers count whole milliseconds, so less would mean polling every loop iteration.
POLL_BUSY_S = 0.001
# With nothing in flight, a slow poll still serves librdkafka's other events.
POLL_IDLE_S = 0.1


class KafkaPublisher:
    def __init__(self, config: Mapping[str, Any], delivery_timeout_s: float) -> None:
        self._producer = Producer(dict(config))
        self._delivery_timeout_s = delivery_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False
        # (deadline, future) of each record sent, in sending order: deadlines are in order too.
        self._in_flight: deque[tuple[float, asyncio.Future[DeliveryReceipt]]] = deque()

    def start(self) -> None:
        """Starts polling for acknowledgements; call it from the event loop that will publish."""
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(POLL_IDLE_S, self._poll)

    def _poll(self) -> None:
        """Serves the delivery reports that arrived, on the loop's thread, and expires the late.

        The reports are polled here rather than in a thread of their own: confluent-kafka
        takes the GIL for each report, and a poll thread doing so contended with the
        request handlers for it once per message (a handoff of the GIL costs a few
        context switches). Here the callbacks complete the futures directly.
        """
        assert self._loop is not None
        try:
            self._producer.poll(0)
        finally:  # whatever a callback raised, the deadlines are kept and the polling goes on
            in_flight = self._in_flight
            now = self._loop.time()
            while in_flight:
                deadline, future = in_flight[0]
                if not future.done():
                    if deadline > now:
                        break
                    # The message may still be written later; the processors deduplicate.
                    future.set_exception(
                        PublishError(
                            f"no acknowledgement from Kafka within {self._delivery_timeout_s}s"
                        )
                    )
                in_flight.popleft()
            self._busy = bool(in_flight)
            delay = POLL_BUSY_S if self._busy else POLL_IDLE_S
            self._timer = self._loop.call_later(delay, self._poll)

    async def publish(self, topic: str, key: str, value: bytes) -> DeliveryReceipt:
        loop = self._loop
        assert loop is not None, "publish before start"
        future: asyncio.Future[DeliveryReceipt] = loop.create_future()
        try:
            self._producer.produce(
                topic, value=value, key=key.encode(), on_delivery=partial(_settle, future)
            )
        except BufferError as exc:
            raise PublishError("producer queue is full") from exc
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            raise PublishError(
                f"produce to {topic} failed: {exc}",
                transient=error is None or error.code() not in PERMANENT_ERRORS,
            ) from exc
        self._in_flight.append((loop.time() + self._delivery_timeout_s, future))
        # Reports that arrived since the last poll are served now rather than at the next
        # timer: at a few hundred requests a second and more, an acknowledgement waits
        # less than the timer's millisecond. An empty poll costs 0.2 µs.
        self._producer.poll(0)
        if not self._busy:  # the next poll was the idle one: bring it forward
            self._busy = True
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_later(POLL_BUSY_S, self._poll)
        return await future

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
        """Stops polling, flushes what is queued; returns messages left unsent.

        Call it on the event loop's thread: the last reports complete their futures here.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        left = int(self._producer.flush(timeout_s))
        if left:
            log.error("producer closed with undelivered messages", extra={"undelivered": left})
            # Dropped now rather than left to the process's end: their reports (errors)
            # complete their futures in the poll below.
            self._producer.purge()
            self._producer.poll(0)
        for _, future in self._in_flight:
            if not future.done():  # no poll will come: not stored, so the sender retries
                future.set_exception(PublishError("the producer closed before Kafka acknowledged"))
        self._in_flight.clear()
        return left


def _settle(
    future: asyncio.Future[DeliveryReceipt], error: KafkaError | None, message: Message
) -> None:
    """The delivery report of one message, served by `poll` or `flush` on the loop's thread."""
    if future.done():  # the handler gave up waiting already
        return
    if error is not None:
        future.set_exception(
            PublishError(
                f"delivery to {message.topic()} failed: {error.str()}",
                transient=error.code() not in PERMANENT_ERRORS,
            )
        )
    else:
        future.set_result(
            DeliveryReceipt(message.topic() or "", message.partition() or 0, message.offset() or 0)
        )
