"""The publisher on a real broker: acknowledgements, the delivery timeout, no thread of its own."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest

from bench.common import free_port
from ingress.errors import PublishError
from ingress.publisher import KafkaPublisher, producer_config
from onoff_bridge.localstack import StackEndpoints
from tests.integration.conftest import TopicFactory


def test_concurrent_publishes_each_get_their_own_acknowledgement(
    endpoints: StackEndpoints, topic_factory: TopicFactory
) -> None:
    topic = topic_factory("publisher", partitions=3)

    async def publish_all() -> list[tuple[int, int]]:
        publisher = KafkaPublisher(
            producer_config(endpoints.kafka_bootstrap_servers, message_timeout_ms=20_000), 30.0
        )
        threads = threading.active_count()
        publisher.start()
        assert threading.active_count() == threads  # the loop polls: no thread of its own
        try:
            receipts = await asyncio.gather(
                *(publisher.publish(topic, f"k-{i}", b"v%d" % i) for i in range(500))
            )
        finally:
            assert publisher.close() == 0
        assert {r.topic for r in receipts} == {topic}
        return [(r.partition, r.offset) for r in receipts]

    positions = asyncio.run(publish_all())
    # Every record has a place of its own, and each partition's offsets run 0, 1, 2...
    assert len(set(positions)) == 500
    per_partition = Counter(partition for partition, _ in positions)
    for partition, count in per_partition.items():
        offsets = sorted(o for p, o in positions if p == partition)
        assert offsets == list(range(count))


def test_no_acknowledgement_within_the_delivery_timeout_is_a_transient_publish_error() -> None:
    # Nothing listens on this port: the record is queued and never acknowledged.
    config = producer_config(f"127.0.0.1:{free_port()}", message_timeout_ms=60_000)

    async def publish_one() -> tuple[str, bool, float]:
        publisher = KafkaPublisher(config, delivery_timeout_s=1.0)
        publisher.start()
        started = time.monotonic()
        try:
            with pytest.raises(PublishError) as raised:
                await publisher.publish("nowhere", "k", b"v")
            # Not the exception itself: its traceback would keep the producer (and its
            # reconnecting threads) alive after the test.
            return str(raised.value), raised.value.transient, time.monotonic() - started
        finally:
            publisher.close(timeout_s=0.1)

    error, transient, waited = asyncio.run(publish_one())
    assert "no acknowledgement from Kafka within 1.0s" in error
    assert transient
    assert 0.9 <= waited < 5  # the timeout, not librdkafka's 60 s message timeout


def test_closing_fails_what_kafka_has_not_acknowledged_instead_of_leaving_it_waiting() -> None:
    config = producer_config(f"127.0.0.1:{free_port()}", message_timeout_ms=60_000)

    async def close_while_waiting() -> tuple[str, int]:
        publisher = KafkaPublisher(config, delivery_timeout_s=60.0)
        publisher.start()
        waiting = asyncio.ensure_future(publisher.publish("nowhere", "k", b"v"))
        await asyncio.sleep(0.2)
        left = publisher.close(timeout_s=0.1)
        async with asyncio.timeout(5):
            with pytest.raises(PublishError) as raised:
                await waiting
        return str(raised.value), left

    error, left = asyncio.run(close_while_waiting())
    assert left == 1
    assert "Purged" in error or "closed before Kafka acknowledged" in error
