"""processors.records: decoding with the registry retry, the event clock, dead-letter records."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from processors.records import EventClock, decode_with_retry, redact_reason, rejected_record
from schemas import RecordDecodeError, RegistryUnavailableError


class FlakyCodec:
    """Raises `errors` in turn, then decodes to a fixed record."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def decode(self, data: bytes) -> dict[str, Any]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return {"data": data}


def decode(codec: FlakyCodec, sleeps: list[float]) -> dict[str, Any]:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return asyncio.run(decode_with_retry(codec, b"x", sleep=sleep))  # type: ignore[arg-type]  # a fake codec


def test_a_registry_outage_is_waited_out_doubling_up_to_30_s() -> None:
    codec = FlakyCodec(*(RegistryUnavailableError("down") for _ in range(9)))
    sleeps: list[float] = []
    assert decode(codec, sleeps) == {"data": b"x"}
    assert sleeps == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert codec.calls == 10


def test_bad_data_is_not_retried() -> None:
    codec = FlakyCodec(RecordDecodeError("not Avro"))
    sleeps: list[float] = []
    with pytest.raises(RecordDecodeError):
        decode(codec, sleeps)
    assert (sleeps, codec.calls) == ([], 1)


def test_each_retry_is_logged_without_values(caplog: pytest.LogCaptureFixture) -> None:
    codec = FlakyCodec(RegistryUnavailableError("registry lookup for t: 'ada@example.com'"))
    with caplog.at_level(logging.WARNING, logger="processors.records"):
        decode(codec, [])
    [record] = caplog.records
    assert record.getMessage() == "registry unavailable; retrying"
    assert "ada@example.com" not in str(record.__dict__)


def test_the_event_clock_only_moves_forward() -> None:
    clock = EventClock()
    assert not clock.started
    late, early = datetime(2026, 3, 2, 10, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    clock.advance(late)
    clock.advance(early)
    assert clock.now == late and clock.ms == int(late.timestamp() * 1000)


def test_a_rejected_record_keeps_the_whole_reason_and_names_its_source() -> None:
    record = rejected_record("dedupe", "onoff.cdr.raw", 2, 41, b"{}", "bad value '+33612345678'")
    assert record["requestId"] == "onoff.cdr.raw/2/41"
    assert record["reason"] == "bad value '+33612345678'"
    assert (record["sourcePartition"], record["sourceOffset"], record["body"]) == (2, 41, b"{}")


@pytest.mark.parametrize(
    "reason",
    [
        "cannot decode a record of onoff.cdr.raw: ValueError('+33612345678 is not a long')",
        "externalNumber must be a number: +33 6 12 34 56 78",
        "no such user ada.moreau@example.com",
        'externalName "Ada Moreau" is too long',
        "fetch https://cdn.example.com/a.mp3?X-Amz-Signature=abc failed",
    ],
)
def test_a_logged_reason_carries_no_values(reason: str) -> None:
    redacted = redact_reason(reason)
    for value in ("33612345678", "+33", "12 34", "ada.moreau", "Ada Moreau", "Signature", "cdn."):
        assert value not in redacted
    assert redacted.split()[0] == reason.split()[0]  # the words that say what went wrong stay


def test_a_reason_without_values_is_logged_as_it_is() -> None:
    reason = "the call is past the dedupe retention"
    assert redact_reason(reason) == reason


class FakeTopic:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    async def send(self, key: bytes, value: bytes) -> asyncio.Future[None]:
        self.sent.append((key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class EchoCodec:
    def encode(self, record: dict[str, Any]) -> bytes:
        return repr(record).encode()


def test_the_dead_letter_log_line_has_no_values_but_the_record_keeps_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from processors.deadletter import DeadLetters

    @dataclass
    class Message:
        topic: str = "onoff.cdr.raw"
        partition: int = 1
        offset: int = 7
        value: bytes = b"{}"

    topic = FakeTopic()
    letters = DeadLetters(EchoCodec(), topic)  # type: ignore[arg-type]  # fakes
    reason = "cannot decode: ValueError('+33612345678 of ada@example.com')"
    with caplog.at_level(logging.WARNING, logger="processors.deadletter"):
        asyncio.run(letters.reject("dedupe", Message(), reason))  # type: ignore[arg-type]
    [record] = caplog.records
    line = record.getMessage()
    assert line.startswith("dead-lettered onoff.cdr.raw/1/7: cannot decode")
    assert "33612345678" not in line and "ada@example.com" not in line
    assert (record.topic, record.partition, record.offset) == ("onoff.cdr.raw", 1, 7)  # type: ignore[attr-defined]
    [(key, value)] = topic.sent
    assert key == b"onoff.cdr.raw/1/7" and b"+33612345678 of ada@example.com" in value
