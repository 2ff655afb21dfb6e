"""A body encoded without the registry, framed later, is the same bytes as one encoded at once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema

from ingress.webhooks import CALL_FIELDS, IngestMetadata, build_record
from schemas import AvroCodec, RecordEncodeError, SchemaName
from tests.conftest import sample


class CountingRegistry:
    def __init__(self) -> None:
        self.calls = 0

    def register_schema(self, subject: str, schema: Schema) -> int:
        self.calls += 1
        return 42


def call_event() -> dict[str, Any]:
    meta = IngestMetadata(datetime(2026, 3, 2, tzinfo=UTC), "r-1", "primary", "/v1/onoff/cdr")
    return build_record(sample("cdr-answered-inbound.json"), CALL_FIELDS, meta).record


def test_encode_body_asks_no_registry_and_frame_makes_it_what_encode_writes() -> None:
    registry = CountingRegistry()
    codec = AvroCodec(registry, SchemaName.CALL_EVENT, "onoff.cdr.raw")  # type: ignore[arg-type]
    body = codec.encode_body(call_event())
    assert registry.calls == 0
    framed = codec.frame(body)
    assert framed[:5] == b"\x00\x00\x00\x00\x2a"
    assert framed == codec.encode(call_event())
    assert codec.name == "call_event"


def test_a_record_that_does_not_fit_fails_in_encode_body_too() -> None:
    codec = AvroCodec(CountingRegistry(), SchemaName.CALL_EVENT, "t")  # type: ignore[arg-type]
    with pytest.raises(RecordEncodeError):
        codec.encode_body(call_event() | {"callDuration": "not a number"})
