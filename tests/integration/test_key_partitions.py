"""A key's partition computed by the worker is where Kafka's producers put a record of that key.

The metrics' calls agent packs many users' updates into one message per partition of
the contributions topic; each user must still land where a record keyed by it alone
went before, and where Faust's router looks for it.
"""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Producer

from onoff_bridge.localstack import StackEndpoints
from processors.partitioning import KeyPartitions
from processors.version_producer import producer_settings
from tests.integration.conftest import ConsumeAll, TopicFactory

PARTITIONS = 7  # not a power of two: a modulo taken wrong shows


def test_a_keys_partition_is_the_one_the_projects_producer_and_fausts_router_use(
    endpoints: StackEndpoints, topic_factory: TopicFactory, consume: ConsumeAll
) -> None:
    topic = topic_factory("key-partitions", partitions=PARTITIONS)
    keys = [
        *(f"user{n}@example.com" for n in range(300)),
        "+15550101234",
        "ünïcødé@exämple.org",
        "a" * 301,  # a length that leaves murmur2 a tail of one byte
        "ab",
        "abc",
    ]
    producer = Producer(producer_settings({"bootstrap.servers": endpoints.kafka_bootstrap_servers}))
    for key in keys:
        producer.produce(topic, b"{}", key.encode())
    assert producer.flush(30) == 0

    placed = {(m.key() or b"").decode(): m.partition() for m in consume(topic, len(keys))}

    partition_of = KeyPartitions(PARTITIONS)
    assert placed == {key: partition_of(key) for key in keys}
    assert len(set(placed.values())) == PARTITIONS  # the keys spread, so the check means something
    every = list(range(PARTITIONS))
    router = DefaultPartitioner()
    assert all(router(key.encode(), every, every) == placed[key] for key in keys)
