"""Reading topics back from the start, again and again, to whatever they hold now."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from onoff_bridge.simulation import TopicReadError
from schemas import AvroCodec


@dataclass(frozen=True)
class ReadRecord:
    key: str | None
    value: dict[str, Any]
    partition: int
    offset: int


class TopicReader:
    """Assigned to every partition of one topic; each `drain` adds what arrived since the last."""

    def __init__(self, connection: str | Mapping[str, str], topic: str, codec: AvroCodec) -> None:
        """`connection`: `BridgeSettings.kafka_config()`, or bare bootstrap servers."""
        if isinstance(connection, str):
            connection = {"bootstrap.servers": connection}
        self.topic = topic
        self.records: list[ReadRecord] = []
        self._codec = codec
        self._consumer = Consumer(
            {
                **connection,
                "group.id": f"onoff-bridge-verify-{uuid.uuid4().hex[:10]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            }
        )
        metadata = self._consumer.list_topics(topic, timeout=10)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            raise TopicReadError(f"topic {topic} does not exist")
        self._partitions = sorted(metadata.topics[topic].partitions)
        self._consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in self._partitions]
        )
        self._next = dict.fromkeys(self._partitions, 0)

    def drain(self, timeout_s: float = 20.0) -> None:
        import time

        ends = {}
        for partition in self._partitions:
            _low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=10, cached=False
            )
            if high > self._next[partition]:
                ends[partition] = high
        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            message = self._consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise TopicReadError(f"{self.topic}: {error}")
                continue
            partition, offset = message.partition(), message.offset()
            assert partition is not None and offset is not None
            self._next[partition] = offset + 1
            value = message.value()
            if isinstance(value, bytes):
                raw_key = message.key()
                key = raw_key.decode(errors="replace") if isinstance(raw_key, bytes) else None
                self.records.append(ReadRecord(key, self._codec.decode(value), partition, offset))
            if partition in ends and offset + 1 >= ends[partition]:
                del ends[partition]

    def close(self) -> None:
        self._consumer.close()
