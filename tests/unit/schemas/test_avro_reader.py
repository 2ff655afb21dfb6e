"""The generated Avro reader reads what fastavro reads, for the project's schemas and any other."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import AvroCodec, RecordDecodeError, SchemaName, load_schema, serde
from schemas.avro_reader import UnsupportedSchemaError, compile_reader
from tests.unit.schemas.avro_strategies import schemas, values


def written(schema: Any, record: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def fastavro_read(schema: Any, body: bytes) -> Any:
    return fastavro.schemaless_reader(io.BytesIO(body), fastavro.parse_schema(schema), None)


def assert_read_as_fastavro_reads(schema: Any, body: bytes, start: int = 0) -> None:
    """The same record, or both raise (fastavro writes timestamps it cannot read back: a
    year past 9999 overflows a datetime)."""
    try:
        expected = fastavro_read(schema, body[start:])
    except OverflowError:
        with pytest.raises(OverflowError):
            compile_reader(schema)(body, start)
        return
    ours = compile_reader(schema)(body, start)
    # repr, for NaN (never equal to itself) and to tell -0.0 from 0.0.
    assert repr(ours) == repr(expected)


@pytest.mark.parametrize("name", list(SchemaName))
@settings(deadline=None)
@given(data=st.data())
def test_every_schema_of_the_project_is_read_as_fastavro_reads_it(
    name: SchemaName, data: st.DataObject
) -> None:
    schema = json.loads(load_schema(name))
    body = written(schema, data.draw(values(schema, {})))
    header = b"\x00\x00\x00\x00\x07"
    assert_read_as_fastavro_reads(schema, header + body, len(header))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_schema_of_the_supported_kinds_is_read_as_fastavro_reads_it(
    data: st.DataObject,
) -> None:
    schema = data.draw(schemas())
    assert_read_as_fastavro_reads(schema, written(schema, data.draw(values(schema, {}))))


def test_long_varints_and_blocks_with_a_byte_size_are_read() -> None:
    """Writers other than fastavro may write an array in several blocks, some with a negative
    count followed by the block's size in bytes (the Avro spec allows it)."""
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "n", "type": "long"},
            {"name": "a", "type": {"type": "array", "items": "int"}},
        ],
    }
    # n = -2**40; a = [1] in a block of count 1, then [2, 3] as count -2 with size 2.
    body = written(schema, {"n": -(2**40), "a": []})[:-1]
    body += b"\x02\x02" + b"\x03\x04" + b"\x04\x06" + b"\x00"
    assert compile_reader(schema)(body, 0) == {"n": -(2**40), "a": [1, 2, 3]}
    assert fastavro_read(schema, body) == {"n": -(2**40), "a": [1, 2, 3]}


def test_an_array_of_nulls_takes_no_bytes_per_item() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "a", "type": {"type": "array", "items": "null"}}],
    }
    body = written(schema, {"a": [None] * 50})
    assert compile_reader(schema)(body, 0) == {"a": [None] * 50}


CALL_EVENT = json.loads(load_schema(SchemaName.CALL_EVENT))
CALL: dict[str, Any] = {
    "id": "c-1",
    "callNotes": "Asked for the March invoice.",
    "tags": [{"tagId": "t", "tagName": "Billing"}],
    "ingest": {
        "receivedAt": 1_772_409_600_000,
        "requestId": "r",
        "contentSha256": "0" * 64,
        "path": "/v1/onoff/cdr",
    },
}


@pytest.mark.parametrize("cut", [1, 2, 10, 40, 60])
def test_a_truncated_body_raises_as_fastavro_does(cut: int) -> None:
    body = written(CALL_EVENT, CALL)
    with pytest.raises(Exception):  # noqa: B017 (fastavro raises several kinds)
        fastavro_read(CALL_EVENT, body[:-cut])
    with pytest.raises((IndexError, EOFError, ValueError)):
        compile_reader(CALL_EVENT)(body[:-cut], 0)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda body: b"\x7f" + body[1:],  # a negative length for the id
        lambda body: body[:4] + b"\x04" + body[5:],  # union branch 2 of a two-branch union
        lambda body: body[:1] + b"\xff" * 11 + body[12:],  # a varint longer than ten bytes
    ],
)
def test_a_corrupt_body_raises(corrupt: Any) -> None:
    with pytest.raises((IndexError, EOFError, ValueError)):
        compile_reader(CALL_EVENT)(corrupt(written(CALL_EVENT, CALL)), 0)


def test_the_codec_reads_with_the_generated_reader_and_wraps_its_errors() -> None:
    codec = AvroCodec(None, SchemaName.CALL_EVENT, "t")  # type: ignore[arg-type]
    # No registry here: the id as registration would give it, the writer schema as ours.
    codec._schema_id = 7
    codec._writers[7] = serde._SAME
    record = codec.decode(codec.encode(CALL))
    assert record == fastavro_read(CALL_EVENT, written(CALL_EVENT, CALL))
    with pytest.raises(RecordDecodeError, match="cannot decode a record of t"):
        codec.decode(codec.encode(CALL)[:-20])


def test_a_schema_it_does_not_cover_is_refused() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "f", "type": {"type": "enum", "name": "E", "symbols": ["A"]}}],
    }
    with pytest.raises(UnsupportedSchemaError):
        compile_reader(schema)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_projected_reader_returns_the_fields_asked_for_as_the_full_reader_reads_them(
    data: st.DataObject,
) -> None:
    schema = data.draw(schemas())
    body = written(schema, data.draw(values(schema, {})))
    names = [field["name"] for field in schema["fields"]]
    kept = data.draw(st.lists(st.sampled_from(names), unique=True) if names else st.just([]))
    try:
        full = compile_reader(schema)(body, 0)
    except OverflowError:  # a timestamp past year 9999, kept or not: nothing to compare
        return
    # The fields in the schema's order, whatever the order asked for.
    expected = {name: value for name, value in full.items() if name in kept}
    assert repr(compile_reader(schema, kept)(body, 0)) == repr(expected)


def test_a_projected_reader_still_refuses_a_truncated_body() -> None:
    body = written(CALL_EVENT, CALL)
    with pytest.raises((IndexError, EOFError, ValueError)):
        compile_reader(CALL_EVENT, ["id"])(body[:-10], 0)


def test_a_projection_onto_a_field_the_schema_lacks_is_refused() -> None:
    with pytest.raises(ValueError, match="callNotez"):
        compile_reader(CALL_EVENT, ["id", "callNotez"])


def test_the_codec_projects_records_of_its_own_schema_and_of_older_writers() -> None:
    fields = ("callNotes", "id")
    codec = AvroCodec(None, SchemaName.CALL_EVENT, "t", fields)  # type: ignore[arg-type]
    codec._schema_id = 7
    codec._writers[7] = serde._SAME
    projected = codec.decode(codec.encode(CALL))
    assert list(projected.items()) == [("id", "c-1"), ("callNotes", CALL["callNotes"])]
    # A writer schema that is not ours goes through fastavro's resolution, then the projection.
    older = {**CALL_EVENT, "fields": [f for f in CALL_EVENT["fields"] if f["name"] != "callNotes"]}
    codec._writers[8] = fastavro.parse_schema(older)
    record = {k: v for k, v in CALL.items() if k != "callNotes"}
    framed = b"\x00\x00\x00\x00\x08" + written(older, record)
    assert list(codec.decode(framed).items()) == [("id", "c-1"), ("callNotes", None)]
