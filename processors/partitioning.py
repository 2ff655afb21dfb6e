"""The partition Kafka's default partitioner gives a key, computed here rather than by a producer.

Every producer of the design puts a keyed record in
`(murmur2(key) & 0x7fffffff) % partitions`, the Java client's rule: the ingress
and the processors' librdkafka producers through `murmur2_random`
(`processors.version_producer.producer_settings`), Faust's router and aiokafka
through their default partitioner. `partition_for` uses aiokafka's own murmur2,
so it cannot drift from what the workers do.

Two users: the support tools read the one partition a key lives in
(`onoff_bridge.partitions`), and the metrics' calls agent packs many users'
updates into one message per partition of its contributions topic
(`KeyPartitions`), so that every user still lands where a record keyed by it
alone would: where its table state is, and where the router looks for it.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

# Keys whose partition KeyPartitions keeps: a cache, cleared when full (a user key is ~30 bytes).
CACHED_KEYS = 100_000


def partition_for(key: str | bytes, partitions: int) -> int:
    """The partition a keyed record lands in: murmur2 as the Java client and aiokafka do."""
    data = key.encode() if isinstance(key, str) else key
    return int((murmur2(data) & 0x7FFFFFFF) % partitions)


class KeyPartitions:
    """key -> its partition among `count`, remembered: aiokafka's murmur2 is pure Python."""

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError(f"a topic has at least one partition, not {count}")
        self.count = count
        self._known: dict[str, int] = {}

    def __call__(self, key: str) -> int:
        partition = self._known.get(key)
        if partition is None:
            if len(self._known) >= CACHED_KEYS:
                self._known.clear()
            partition = self._known[key] = partition_for(key, self.count)
        return partition
