"""processors.version_producer: a batch is acknowledged when all its versions are; Faust's
flush waits for this producer too."""

from __future__ import annotations

import asyncio

from confluent_kafka import KafkaError

from processors.call_store import DeliveryFailedError
from processors.version_producer import BatchDelivery, VersionProducer, producer_settings


class Message:
    def topic(self) -> str:
        return "onoff.calls"


def test_a_batch_is_done_when_every_version_answered_and_keeps_the_first_error() -> None:
    delivery = BatchDelivery(3)
    delivery.on_delivery(None, Message())
    delivery.on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), Message())
    assert not delivery.done()

    delivery.on_delivery(KafkaError(KafkaError._TRANSPORT), Message())
    assert delivery.done()
    assert "timed out" in str(delivery.exception()).lower()


def test_an_acknowledged_batch_has_no_exception() -> None:
    delivery = BatchDelivery(1)
    delivery.on_delivery(None, Message())
    assert delivery.done() and delivery.exception() is None


class FaustProducer:
    def __init__(self) -> None:
        self.flushed = 0

    async def flush(self) -> None:
        self.flushed += 1


def test_faust_s_flush_before_a_commit_flushes_the_versions_too() -> None:
    faust_producer = FaustProducer()
    versions = VersionProducer(producer_settings({"bootstrap.servers": "127.0.0.1:9"}))
    flushed: list[str] = []

    async def flush() -> None:
        flushed.append("versions")

    versions.flush = flush  # type: ignore[method-assign]  # recorded instead of librdkafka's
    versions.attach(faust_producer)

    asyncio.run(faust_producer.flush())
    assert (faust_producer.flushed, flushed) == (1, ["versions"])


def test_the_versions_producer_is_idempotent_with_acks_from_every_replica() -> None:
    settings = producer_settings({"bootstrap.servers": "b:9092", "security.protocol": "SSL"})
    assert settings["enable.idempotence"] is True and settings["acks"] == "all"
    assert settings["security.protocol"] == "SSL"


def test_a_record_kafka_never_took_makes_every_later_flush_raise() -> None:
    """No broker answers: librdkafka gives up on the record after message.timeout.ms, and the
    flush that Faust runs before a commit refuses, so no offset passes the lost record."""
    settings = producer_settings({"bootstrap.servers": "127.0.0.1:9"}) | {"message.timeout.ms": 300}
    versions = VersionProducer(settings)

    async def run() -> list[str]:
        delivery = await versions.send("onoff.calls", [(b"c-1", b"v", 0)])
        raised = []
        for _ in range(2):
            try:
                await versions.flush()
            except DeliveryFailedError as exc:
                raised.append(str(exc))
        assert delivery.done() and delivery.exception() is not None
        return raised

    raised = asyncio.run(run())
    assert len(raised) == 2 and all("not delivered" in r for r in raised)
