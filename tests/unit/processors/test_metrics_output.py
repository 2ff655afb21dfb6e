"""The metrics records written straight from figures are the codec's bytes for the same record."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema
from hypothesis import given
from hypothesis import strategies as st

from processors.metrics.figures import Figures, metrics_record
from processors.metrics.output import SMALL, MetricsRecords, RecordMismatchError
from processors.metrics.windows import Granularity, Window, window_start
from schemas import AvroCodec, SchemaName
from schemas.catalog import load_schema

LONG = st.integers(-(2**63), 2**63 - 1)
# The edges of the one-byte varint and of the writer's table of small integers.
EDGES = st.sampled_from([0, 63, 64, SMALL - 1, SMALL, SMALL + 1])
COUNT = st.one_of(EDGES, st.integers(0, 20_000), st.integers(0, 2**31))
MOMENT = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


class Registry:
    def register_schema(self, subject: str, schema: Schema) -> int:
        return 7


def codec() -> AvroCodec:
    return AvroCodec(Registry(), SchemaName.USER_CALL_METRICS, "t")  # type: ignore[arg-type]


@st.composite
def windows(draw: Any) -> Window:
    granularity = draw(st.sampled_from(list(Granularity)))
    user = draw(st.one_of(st.emails(), st.text(min_size=1, max_size=80)))
    return Window(user, granularity, window_start(draw(MOMENT), granularity))


@st.composite
def figures(draw: Any) -> Figures:
    millis = st.integers(-62_135_596_800_000, 253_402_300_799_999)  # what a datetime holds
    counts = [draw(COUNT) for _ in range(7)]
    talk_total, talk_max = (draw(st.one_of(COUNT, LONG.filter(lambda n: n >= 0))) for _ in "ab")
    return Figures._make([*counts, talk_total, talk_max, draw(millis)])


@given(windows(), figures())
def test_a_record_is_the_codecs_bytes_for_the_same_window_and_figures(
    window: Window, counted: Figures
) -> None:
    metrics = codec()
    assert MetricsRecords(metrics).encode(window, counted) == metrics.encode(
        metrics_record(window, counted)
    )


def test_a_record_reads_back_as_the_window_and_its_figures() -> None:
    window = Window("ana@example.com", Granularity.DAY, datetime(2026, 12, 3, tzinfo=UTC))
    counted = Figures(4, 3, 1, 2, 1, 1, 2, 900, 600, 1_764_720_000_250)
    data = MetricsRecords(codec()).encode(window, counted)
    assert data[:5] == b"\x00\x00\x00\x00\x07"
    schema = fastavro.parse_schema(json.loads(load_schema(SchemaName.USER_CALL_METRICS)))
    record: Any = fastavro.schemaless_reader(io.BytesIO(data[5:]), schema, schema)
    assert record == metrics_record(window, counted)
    assert record["windowEnd"] - record["windowStart"] == timedelta(days=1)
    assert record["talkSecondsAvg"] == 450.0


def test_a_time_outside_the_calendar_is_refused_as_the_codec_path_refused_it() -> None:
    window = Window("ana@example.com", Granularity.HOUR, datetime(2026, 12, 3, tzinfo=UTC))
    with pytest.raises(OverflowError):
        metrics_record(window, Figures(last_updated_ms=2**62))
    with pytest.raises(OverflowError):
        MetricsRecords(codec()).encode(window, Figures(last_updated_ms=2**62))


def test_a_schema_the_writer_does_not_follow_stops_it_at_start() -> None:
    class Renamed(AvroCodec):
        def encode_body(self, record: Any) -> bytes:
            return super().encode_body(record) + b"\x00"  # as if a field were appended

    with pytest.raises(RecordMismatchError):
        MetricsRecords(Renamed(Registry(), SchemaName.USER_CALL_METRICS, "t"))  # type: ignore[arg-type]
