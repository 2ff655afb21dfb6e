"""Reading chosen partitions of a topic up to their current end, and finding a key's partition.

The support tools (`onoff-bridge deadletter`, `onoff-bridge inspect`) read the
one partition a key lives in, not the whole topic: `partition_for`
(`processors.partitioning`, the Java client's rule every producer of the design
follows; dedupe writes each call to the partition of its raw deliveries, which
has the same count).

Consumers are built from `BridgeSettings.kafka_config()`, so the tools work on
a secured cluster as every other client does. They join no consumer group and
commit nothing.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

# (what is read, records read so far, records to read); called every few hundred records.
Progress = Callable[[str, int, int], None]

PROGRESS_EVERY = 500
POLL_S = 0.5
# A partition that yields nothing for this long, while its end says there is more, is an error.
STALL_S = 30.0


class TopicReadError(Exception):
    """A topic is missing, or a partition could not be read to its end."""


@dataclass(frozen=True)
class ReadRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)

    @property
    def key_text(self) -> str | None:
        return None if self.key is None else self.key.decode(errors="replace")


def _headers(given: Any) -> dict[str, bytes]:
    """A message's headers (a list of pairs as read; the type also allows a dict)."""
    pairs = given.items() if isinstance(given, dict) else given or []
    return {
        str(name): value.encode() if isinstance(value, str) else value or b""
        for name, value in pairs
    }


class PartitionReader:
    """One consumer, assigned to one partition at a time; `read` yields to the current end."""

    def __init__(self, kafka_config: Mapping[str, str], progress: Progress | None = None) -> None:
        self._consumer = Consumer(
            {
                **kafka_config,
                # No group is joined (partitions are assigned) and no offset committed.
                "group.id": f"onoff-bridge-support-{uuid.uuid4().hex[:10]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            }
        )
        self._progress = progress
        self.partitions_read: list[tuple[str, int]] = []

    def __enter__(self) -> PartitionReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def partition_count(self, topic: str, timeout_s: float = 15.0) -> int:
        try:
            metadata = self._consumer.list_topics(topic, timeout=timeout_s)
        except KafkaException as exc:
            raise TopicReadError(f"cannot list topic {topic}: {exc.args[0].str()}") from exc
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise TopicReadError(f"topic {topic} does not exist")
        return len(found.partitions)

    def offset_at(self, topic: str, partition: int, timestamp_ms: int) -> int:
        """The first offset whose timestamp is at or after `timestamp_ms`; the end if none."""
        try:
            [found] = self._consumer.offsets_for_times(
                [TopicPartition(topic, partition, max(timestamp_ms, 0))], timeout=15
            )
        except KafkaException as exc:
            raise TopicReadError(f"cannot seek {topic}[{partition}]: {exc.args[0].str()}") from exc
        if found.offset >= 0:
            return int(found.offset)
        return self._watermarks(topic, partition)[1]

    def read(self, topic: str, partition: int, start: int | None = None) -> Iterator[ReadRecord]:
        """Every record of one partition from `start` (its beginning when None) to its end now."""
        low, high = self._watermarks(topic, partition)
        first = low if start is None else max(low, start)
        self.partitions_read.append((topic, partition))
        if first >= high:
            return
        label = f"{topic}[{partition}]"
        total = high - first
        self._consumer.assign([TopicPartition(topic, partition, first)])
        try:
            yield from self._drain(label, high, first, total)
        finally:
            self._consumer.unassign()

    def _drain(self, label: str, high: int, first: int, total: int) -> Iterator[ReadRecord]:
        last_seen = time.monotonic()
        count = 0
        while True:
            message = self._consumer.poll(POLL_S)
            if message is None:
                if time.monotonic() - last_seen > STALL_S:
                    raise TopicReadError(f"{label}: no record for {STALL_S:.0f} s before its end")
                continue
            last_seen = time.monotonic()
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    break
                raise TopicReadError(f"{label}: {error.str()}")
            offset = message.offset()
            partition = message.partition()
            topic = message.topic()
            assert offset is not None and partition is not None and topic is not None
            _kind, timestamp = message.timestamp()
            headers = _headers(message.headers())
            yield ReadRecord(
                topic, partition, offset, timestamp, message.key(), message.value(), headers
            )
            count += 1
            if self._progress is not None and count % PROGRESS_EVERY == 0:
                # Offsets, not records: a compacted topic has gaps.
                self._progress(label, offset + 1 - first, total)
            if offset + 1 >= high:
                break
        if self._progress is not None:
            self._progress(label, total, total)

    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        try:
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=15, cached=False
            )
        except KafkaException as exc:
            raise TopicReadError(f"cannot read {topic}[{partition}]: {exc.args[0].str()}") from exc
        return int(low), int(high)

    def close(self) -> None:
        self._consumer.close()


@contextlib.contextmanager
def terminal_progress(enabled: bool = True) -> Iterator[Progress | None]:
    """A progress bar per partition on stderr (rich), gone when the reads end."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress as Bars

    with Bars(console=Console(stderr=True), transient=True) as bars:
        tasks: dict[str, Any] = {}

        def update(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bars.add_task(label, total=total)
            bars.update(tasks[label], completed=done, total=total)

        yield update
