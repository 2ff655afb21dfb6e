"""The partition Kafka's default partitioner gives a key, computed here rather than by the producer.

Java's clients, aiokafka (so Faust's router) and librdkafka's `murmur2_random`
(what `version_producer.producer_settings` sets) all place a keyed record in
`(murmur2(key) & 0x7fffffff) % partitions`. A processor that packs the records
of many keys into one message per partition computes that placement itself, so
every key still lands where a record keyed by it alone would: where its table
state already is, and where the router looks for it.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

# Keys whose partition is kept: a cache, cleared when full (a user key is ~30 bytes).
CACHED_KEYS = 100_000


class KeyPartitions:
    """key -> its partition among `count`, as a keyed produce would pick it."""

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
            # aiokafka's murmur2 is Java's, in pure Python (a few µs): hence the cache.
            partition = (murmur2(key.encode()) & 0x7FFFFFFF) % self.count
            self._known[key] = partition
        return partition
