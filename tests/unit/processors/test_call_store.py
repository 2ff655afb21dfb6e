"""processors.call_store: RocksDB holds a version only once Kafka acknowledged it."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import rocksdict

from processors.call_store import DeliveryFailedError, MemoryCalls, RocksCalls, rocksdb_options


class PartitionDatabases:
    """The part of faust's RocksDB store that RocksCalls uses: one real database per partition."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dbs: dict[int, rocksdict.Rdict] = {}

    def _db_for_partition(self, partition: int) -> rocksdict.Rdict:
        if partition not in self.dbs:
            options = rocksdict.Options(raw_mode=True)
            options.create_if_missing(True)
            self.dbs[partition] = rocksdict.Rdict(str(self.root / str(partition)), options=options)
        return self.dbs[partition]

    def on_disk(self, partition: int, call_id: str) -> bytes | None:
        value: bytes | None = self._db_for_partition(partition).get(call_id.encode())
        return value

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()


class BytesCodec:
    def decode(self, data: bytes) -> dict[str, Any]:
        return {"id": data.decode().split("@")[0], "version": int(data.decode().split("@")[1])}


def version(call_id: str, number: int) -> tuple[dict[str, Any], bytes]:
    return {"id": call_id, "version": number}, f"{call_id}@{number}".encode()


def delivered() -> Future[None]:
    future: Future[None] = Future()
    future.set_result(None)
    return future


@pytest.fixture
def databases(tmp_path: Path) -> Any:
    dbs = PartitionDatabases(tmp_path)
    yield dbs
    dbs.close()


def rocks(databases: PartitionDatabases) -> RocksCalls[dict[str, Any]]:
    return RocksCalls(databases, BytesCodec())


def test_a_version_reaches_the_disk_only_after_kafka_acknowledged_it(
    databases: PartitionDatabases,
) -> None:
    calls = rocks(databases)
    call, value = version("a", 1)
    calls.put("a", call, 0, value)
    pending: Future[None] = Future()
    calls.sent([pending])
    calls.settle()

    assert calls.get("a", 0) is call  # read back from memory meanwhile
    assert databases.on_disk(0, "a") is None

    pending.set_result(None)
    calls.settle()
    assert databases.on_disk(0, "a") == value
    assert calls.pending == {}
    assert calls.get("a", 0) == call  # now decoded from disk


def test_an_older_batch_acknowledged_later_never_overwrites_a_newer_version(
    databases: PartitionDatabases,
) -> None:
    calls = rocks(databases)
    first, first_value = version("a", 1)
    other, other_value = version("b", 1)
    calls.put("a", first, 0, first_value)
    calls.put("b", other, 1, other_value)
    slow: Future[None] = Future()  # partition 1 is slow to acknowledge
    calls.sent([delivered(), slow])
    second, second_value = version("a", 2)
    calls.put("a", second, 0, second_value)
    calls.sent([delivered()])
    calls.settle()
    assert databases.on_disk(0, "a") is None  # batches settle in order
    assert calls.get("a", 0) is second

    slow.set_result(None)
    calls.settle()
    assert databases.on_disk(0, "a") == second_value
    assert databases.on_disk(1, "b") == other_value
    assert calls.pending == {}


def test_a_version_kafka_refused_is_not_stored_and_stops_the_worker(
    databases: PartitionDatabases,
) -> None:
    calls = rocks(databases)
    call, value = version("a", 1)
    calls.put("a", call, 0, value)
    refused: Future[None] = Future()
    refused.set_exception(OSError("broker gone"))
    calls.sent([refused])

    with pytest.raises(DeliveryFailedError):
        calls.settle()
    assert databases.on_disk(0, "a") is None
    assert calls.get("a", 0) is None


def test_a_rebalance_forgets_what_only_memory_holds(databases: PartitionDatabases) -> None:
    calls = rocks(databases)
    call, value = version("a", 1)
    calls.put("a", call, 0, value)
    calls.sent([Future()])
    calls.forget()
    calls.settle()

    assert calls.get("a", 0) is None
    assert databases.on_disk(0, "a") is None


class MemoryStore:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self._key_partition: dict[str, int] = {}


def test_the_memory_store_keeps_the_call_and_its_partition_at_once() -> None:
    store = MemoryStore()
    calls = MemoryCalls[dict[str, Any]](store)
    call, value = version("a", 1)
    calls.put("a", call, 4, value)

    assert calls.get("a", 4) is call
    assert (store.data, store._key_partition) == ({"a": call}, {"a": 4})


def test_the_rocksdb_options_bound_each_partition_database() -> None:
    assert rocksdb_options(block_cache_mb=8, write_buffer_mb=4) == {
        "block_cache_size": 8 * 2**20,
        "write_buffer_size": 4 * 2**20,
        "max_write_buffer_number": 2,
    }
