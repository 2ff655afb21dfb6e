"""The generated Avro writer writes fastavro's bytes, for the project's schemas and any other."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import AvroCodec, RecordEncodeError, SchemaName, load_schema
from schemas.avro_writer import UnsupportedSchemaError, compile_writer
from tests.unit.schemas.avro_strategies import schemas, values


def fastavro_bytes(schema: Any, record: Mapping[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


# --- the project's schemas ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SchemaName))
@settings(deadline=None)
@given(data=st.data())
def test_every_schema_of_the_project_is_written_as_fastavro_writes_it(
    name: SchemaName, data: st.DataObject
) -> None:
    schema = json.loads(load_schema(name))
    record = data.draw(values(schema, {}))
    assert compile_writer(schema)(record) == fastavro_bytes(schema, record)


def test_the_generated_writer_is_plain_python_one_can_read() -> None:
    write = compile_writer(json.loads(load_schema(SchemaName.CALL_EVENT)))
    assert "def write(datum):" in write.source  # type: ignore[attr-defined]
    assert "datum.get('callNotes')" in write.source  # type: ignore[attr-defined]


# --- any schema of the supported kinds ------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_schema_of_the_supported_kinds_is_written_as_fastavro_writes_it(
    data: st.DataObject,
) -> None:
    schema = data.draw(schemas())
    record = data.draw(values(schema, {}))
    assert compile_writer(schema)(record) == fastavro_bytes(schema, record)


def test_a_missing_field_takes_its_default_or_null_as_in_fastavro() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "a", "type": "long", "default": 7},
            {"name": "b", "type": ["null", "string"]},
            {"name": "c", "type": ["string", "null"], "default": "x"},
            {"name": "d", "type": {"type": "map", "values": "int"}, "default": {"k": 1}},
        ],
    }
    assert compile_writer(schema)({}) == fastavro_bytes(schema, {})
    assert compile_writer(schema)({}) == b"\x0e\x00\x00\x02x\x02\x02k\x02\x00"


def test_a_named_record_used_twice_is_written_twice() -> None:
    point = {"type": "record", "name": "P", "fields": [{"name": "x", "type": "int"}]}
    schema = {
        "type": "record",
        "name": "Line",
        "namespace": "geo",
        "fields": [{"name": "a", "type": point}, {"name": "b", "type": "geo.P"}],
    }
    record = {"a": {"x": 1}, "b": {"x": -1}}
    assert compile_writer(schema)(record) == fastavro_bytes(schema, record) == b"\x02\x01"


# --- what it refuses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field_type",
    [
        {"type": "enum", "name": "E", "symbols": ["A"]},
        {"type": "fixed", "name": "F", "size": 4},
        ["null", "string", "long"],
        ["string", "long"],
        {"type": "bytes", "logicalType": "decimal", "precision": 4},
        {"type": "string", "logicalType": "uuid"},
    ],
)
def test_a_schema_it_does_not_cover_is_refused(field_type: Any) -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "f", "type": field_type}]}
    with pytest.raises(UnsupportedSchemaError):
        compile_writer(schema)


def test_a_recursive_record_is_refused() -> None:
    schema = {
        "type": "record",
        "name": "Node",
        "fields": [{"name": "next", "type": ["null", "Node"]}],
    }
    with pytest.raises(UnsupportedSchemaError):
        compile_writer(schema)


CALL_EVENT = json.loads(load_schema(SchemaName.CALL_EVENT))
VALID_CALL: dict[str, Any] = {
    "id": "c-1",
    "callDuration": 5,
    "callStarted": datetime(2026, 3, 2, tzinfo=UTC),
    "tags": [{"tagId": "t"}],
    "ingest": {
        "receivedAt": datetime(2026, 3, 2, tzinfo=UTC),
        "requestId": "r",
        "contentSha256": "0" * 64,
        "path": "/v1/onoff/cdr",
    },
}


@pytest.mark.parametrize(
    "wrong",
    [
        {"id": 5},
        {"id": None},
        {"callNotes": 1.5},
        {"callNotes": b"bytes"},
        {"callDuration": "5"},
        {"callDuration": True},
        {"callDuration": 2**63},
        {"callDuration": 1.0},
        {"callStarted": True},
        {"ingest": {**VALID_CALL["ingest"], "receivedAt": "2026-03-02"}},
        {"callStarted": "2026-03-02T00:00:00Z"},
        {"tags": "Billing"},
        {"tags": [{"tagId": 7}]},
        {"tags": ["t"]},
        {"ingest": None},
        {"ingest": {"requestId": "r"}},
    ],
)
def test_a_value_that_does_not_fit_raises_as_in_fastavro(wrong: dict[str, Any]) -> None:
    """In a union (every optional field here) fastavro takes only the branch's own type."""
    record = VALID_CALL | wrong
    with pytest.raises(Exception):  # noqa: B017 (fastavro raises several kinds)
        fastavro_bytes(CALL_EVENT, record)
    with pytest.raises((TypeError, ValueError, AttributeError)):
        compile_writer(CALL_EVENT)(record)
    codec = AvroCodec(None, SchemaName.CALL_EVENT, "t")  # type: ignore[arg-type]
    with pytest.raises(RecordEncodeError, match="value does not fit t"):
        codec.encode_body(record)
    assert codec.encode_body(VALID_CALL) == fastavro_bytes(CALL_EVENT, VALID_CALL)
