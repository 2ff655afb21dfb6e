"""A key's partition is the Java client's, with or without the cache of KeyPartitions."""

import pytest

from processors.partitioning import KeyPartitions, partition_for

# Kafka's own murmur2 vectors (clients/src/test/.../UtilsTest.java), as signed 32-bit ints.
JAVA = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "hashed"), JAVA.items())
@pytest.mark.parametrize("partitions", [1, 3, 6, 12])
def test_a_key_lands_where_the_java_client_puts_it(
    key: bytes, hashed: int, partitions: int
) -> None:
    assert partition_for(key, partitions) == (hashed & 0x7FFFFFFF) % partitions


def test_text_keys_are_hashed_as_utf8() -> None:
    assert partition_for("c-7f3a2b10-0001", 6) == partition_for(b"c-7f3a2b10-0001", 6)


def test_key_partitions_remember_what_partition_for_says_and_stay_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("processors.partitioning.CACHED_KEYS", 3)
    partition_of = KeyPartitions(7)
    keys = [f"user{n}@example.com" for n in range(10)]
    assert [partition_of(k) for k in keys * 2] == [partition_for(k, 7) for k in keys * 2]
    assert len(partition_of._known) <= 3


def test_a_topic_without_partitions_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one partition"):
        KeyPartitions(0)
