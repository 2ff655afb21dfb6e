"""Records a processor cannot use go to the dead-letter topic with the reason, never nowhere."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas import AvroCodec


def rejected_record(
    source: str, topic: str, partition: int, offset: int, body: bytes, reason: str
) -> dict[str, Any]:
    return {
        "requestId": f"{topic}/{partition}/{offset}",
        "receivedAt": datetime.now(UTC),
        "source": source,
        "path": topic,
        "reason": reason[:1000],
        "body": body,
        "contentType": None,
        "headers": {},
        "apiKeyName": None,
        "sourcePartition": partition,
        "sourceOffset": offset,
    }


class DeadLetters:
    def __init__(self, codec: AvroCodec) -> None:
        self._codec = codec

    def encode(
        self, source: str, topic: str, partition: int, offset: int, body: bytes, reason: str
    ) -> tuple[bytes, bytes]:
        """The key and value of a RejectedDelivery for one source record."""
        record = rejected_record(source, topic, partition, offset, body, reason)
        return record["requestId"].encode(), self._codec.encode(record)
