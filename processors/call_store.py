"""Where dedupe keeps its calls between deliveries: Faust's table store, read and written in bulk.

Dedupe writes its table without Faust's per-event table API: that API binds
every read and write to the event being processed (`current_event()`), costs
a changelog message per write, and encodes each call a second time for RocksDB.
The changelog of the table *is* `onoff.calls`, which dedupe sends itself, so
the store only needs the value; these adapters put it where Faust would have.
The metrics' two tables use the same adapters, with JSON values, and send
their changelog records themselves too.

Each adapter keeps whatever value its processor gives it (`V`): dedupe's are
Avro-decoded calls; the metrics' are their JSON bytes, as in the changelog, so
that a table of millions of rows is millions of bytes objects rather than of
dicts and lists for the garbage collector to walk.

- `MemoryCalls`: the dict Faust's memory store keeps, plus its key -> partition
  index (Faust drops the calls of revoked partitions with it).
- `RocksCalls`: one RocksDB database per partition, as Faust opens them. A call
  is written to disk only once Kafka has acknowledged its version: until then
  it is read from memory (`pending`). A worker killed in between therefore
  never finds on disk a version that `onoff.calls` does not hold (which would
  make it drop the replayed delivery as a duplicate and lose that version);
  on restart Faust replays the changelog into the database.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

V = TypeVar("V")
V_co = TypeVar("V_co", covariant=True)


class Decoder(Protocol[V_co]):
    """Reads a stored value back: the table's value serializer (Avro for dedupe, the bytes
    as they are for the metrics)."""

    def decode(self, data: bytes) -> V_co: ...


class Delivery(Protocol):
    """What the producer returns for a record handed to it (an asyncio future)."""

    def done(self) -> bool: ...

    def exception(self) -> BaseException | None: ...


class CallStore(Protocol[V]):
    def get(self, call_id: str, partition: int) -> V | None:
        """The call as last emitted, or None for a call never seen on this partition."""

    def put(self, call_id: str, call: V, partition: int, value: bytes) -> None:
        """Keeps `call` (encoded as `value`, the bytes sent to onoff.calls) as the current state."""

    def sent(self, deliveries: Iterable[Delivery]) -> None:
        """The puts since the last call were handed to the producer; these are their deliveries."""

    def settle(self) -> None:
        """Does what waits for deliveries that have completed since the last call."""

    def forget(self) -> None:
        """Drops what is only in memory: the partitions may have moved (a rebalance)."""

    def unwritten(self) -> Mapping[str, V]:
        """What was put and is not in Faust's store yet (waiting for its acknowledgement)."""


class DeliveryFailedError(RuntimeError):
    """Kafka refused a version after the producer's own retries; it is not stored."""


class MemoryCalls(Generic[V]):
    def __init__(self, store: Any) -> None:
        # faust.stores.memory.Store: `data` is its dict, `_key_partition` its revocation index.
        self._data: MutableMapping[str, V] = store.data
        self._partitions: MutableMapping[str, int] = store._key_partition

    def get(self, call_id: str, partition: int) -> V | None:
        return self._data.get(call_id)

    def put(self, call_id: str, call: V, partition: int, value: bytes) -> None:
        self._data[call_id] = call
        self._partitions[call_id] = partition

    def sent(self, deliveries: Iterable[Delivery]) -> None:
        # Memory is lost with the process and rebuilt from onoff.calls: nothing to wait for.
        return None

    def settle(self) -> None:
        return None

    def forget(self) -> None:
        return None

    def unwritten(self) -> Mapping[str, V]:
        return {}


@dataclass
class _SentBatch(Generic[V]):
    deliveries: list[Delivery]
    # (partition, call id, call, encoded call) in the order they were sent.
    writes: list[tuple[int, str, V, bytes]] = field(default_factory=list)


class RocksCalls(Generic[V]):
    def __init__(self, store: Any, codec: Decoder[V]) -> None:
        # faust.stores.rocksdb.Store (rocksdict): one database per partition, raw bytes.
        self._store = store
        self._codec = codec
        self.pending: dict[str, V] = {}
        self._unsent: list[tuple[int, str, V, bytes]] = []
        self._in_flight: deque[_SentBatch[V]] = deque()

    def get(self, call_id: str, partition: int) -> V | None:
        call = self.pending.get(call_id)
        if call is not None:
            return call
        value = self._store._db_for_partition(partition).get(call_id.encode())
        return None if value is None else self._codec.decode(value)

    def put(self, call_id: str, call: V, partition: int, value: bytes) -> None:
        self.pending[call_id] = call
        self._unsent.append((partition, call_id, call, value))

    def sent(self, deliveries: Iterable[Delivery]) -> None:
        if self._unsent:
            self._in_flight.append(_SentBatch(list(deliveries), self._unsent))
            self._unsent = []

    def settle(self) -> None:
        # Batches complete in order (one partition's deliveries are acknowledged in order,
        # and a call always lives on one partition), so stop at the first one still waiting.
        while self._in_flight and all(f.done() for f in self._in_flight[0].deliveries):
            batch = self._in_flight.popleft()
            failed = next((f.exception() for f in batch.deliveries if f.exception()), None)
            self._write(batch.writes, failed is None)
            if failed is not None:
                raise DeliveryFailedError(f"a version was not delivered: {failed!r}") from failed

    def forget(self) -> None:
        # Faust recovers each assigned partition from onoff.calls after a rebalance,
        # which brings the database up to what Kafka holds.
        self.pending.clear()
        self._unsent.clear()
        self._in_flight.clear()

    def unwritten(self) -> Mapping[str, V]:
        return self.pending

    def _write(self, writes: list[tuple[int, str, V, bytes]], delivered: bool) -> None:
        from rocksdict import WriteBatch

        by_partition: dict[int, Any] = {}
        for partition, call_id, call, value in writes:
            # A later version of the call is in memory and will be written by its own batch.
            if self.pending.get(call_id) is not call:
                continue
            del self.pending[call_id]
            if delivered:
                if partition not in by_partition:
                    by_partition[partition] = WriteBatch(raw_mode=True)
                by_partition[partition].put(call_id.encode(), value)
        for partition, batch in by_partition.items():
            self._store._db_for_partition(partition).write(batch)


def rocksdb_options(block_cache_mb: int, write_buffer_mb: int) -> Mapping[str, Any]:
    """Faust's RocksDB options (per partition database) that bound a worker's memory.

    Faust's defaults allow each partition's database a 2 GiB block cache and three
    64 MiB memtables; with six partitions a worker's resident memory would follow
    the size of its state.
    """
    return {
        "block_cache_size": block_cache_mb * 2**20,
        "write_buffer_size": write_buffer_mb * 2**20,
        "max_write_buffer_number": 2,
    }
