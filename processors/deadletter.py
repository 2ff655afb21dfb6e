"""Records a processor cannot use go to the dead-letter topic with the reason, never nowhere."""

from __future__ import annotations

import logging

from faust.types import Message, TopicT

from processors.records import redact_reason, rejected_record
from schemas import AvroCodec

log = logging.getLogger(__name__)


class DeadLetters:
    def __init__(self, codec: AvroCodec, topic: TopicT) -> None:
        self._codec = codec
        self._topic = topic

    async def reject(self, source: str, message: Message, reason: str) -> None:
        """Writes a RejectedDelivery for `message`, acknowledged before its offset can commit."""
        key, value = self.encode(
            source, message.topic, message.partition, message.offset, message.value or b"", reason
        )
        await (await self._topic.send(key=key, value=value))
        # The record keeps the reason whole; a log line must not carry the body's values
        # (phone numbers, e-mail addresses), which decode errors can quote.
        log.warning(
            "dead-lettered %s/%s/%s: %s",
            message.topic,
            message.partition,
            message.offset,
            redact_reason(reason),
            extra={
                "topic": message.topic,
                "partition": message.partition,
                "offset": message.offset,
            },
        )

    def encode(
        self, source: str, topic: str, partition: int, offset: int, body: bytes, reason: str
    ) -> tuple[bytes, bytes]:
        """The key and value of a RejectedDelivery for one source record."""
        record = rejected_record(source, topic, partition, offset, body, reason)
        return record["requestId"].encode(), self._codec.encode(record)
