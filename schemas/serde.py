"""Avro values in the Confluent wire format (magic byte, 4-byte schema id, body) for one topic.

The same bytes as confluent-kafka's `AvroSerializer`/`AvroDeserializer` (the
tests check it), written directly: the schema is registered once and its id
cached, writer schemas are fetched once per id, so the hot paths (the ingress
handler, the processors' loops) do no registry work and skip the serializers'
generic rule machinery. Values are written by a writer generated from the
schema (`schemas.avro_writer`: fastavro's bytes, several times faster) and read
by a reader generated the same way (`schemas.avro_reader`: about twice as fast as
fastavro) when the record's writer schema is ours; with fastavro's schema
resolution when it is not.
"""

from __future__ import annotations

import io
import json
import struct
import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any

import fastavro
import httpx
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas.avro_reader import Reader, compile_reader
from schemas.avro_writer import UnsupportedSchemaError, compile_writer
from schemas.catalog import SchemaName, load_schema
from schemas.errors import RecordDecodeError, RecordEncodeError, RegistryUnavailableError

_MAGIC = 0
# Marks a writer schema equal to the reader's: no resolution needed.
_SAME = object()
_HEADER = struct.Struct(">bI")


class AvroCodec:
    """Writes and reads one topic's values with the checked-in schema.

    Reading resolves the writer's schema by id and projects it onto ours, so
    records written with an older compatible schema still read. With `fields`,
    `decode` returns only those top-level fields, and does not build the others.
    """

    def __init__(
        self,
        client: SchemaRegistryClient,
        name: SchemaName,
        topic: str,
        fields: Collection[str] | None = None,
    ) -> None:
        self.topic = topic
        self.name = name
        self._client = client
        self._schema = load_schema(name)
        self._subject = f"{topic}-value"
        self._reader = fastavro.parse_schema(json.loads(self._schema))
        self._writer = _body_writer(self._schema, self._reader)
        self._fields = None if fields is None else frozenset(fields)
        self._read_ours = _body_reader(self._schema, self._reader, self._fields)
        self._schema_id: int | None = None
        self._header: bytes | None = None
        self._writers: dict[int, Any] = {}
        self._lock = threading.Lock()

    def schema_id(self) -> int:
        """Registers the schema under `<topic>-value` on first use; cached afterwards."""
        if self._schema_id is None:
            with self._lock:
                if self._schema_id is None:
                    self._schema_id = self._registry_call(
                        self._client.register_schema, self._subject, Schema(self._schema, "AVRO")
                    )
        return self._schema_id

    def encode(self, record: Mapping[str, Any]) -> bytes:
        header = self._header
        if header is None:
            header = self._header = _HEADER.pack(_MAGIC, self.schema_id())
        return header + self.encode_body(record)

    def encode_body(self, record: Mapping[str, Any]) -> bytes:
        """The Avro body alone, without the registry's schema id: no registry call.

        `frame(encode_body(r)) == encode(r)`. The ingress spools a record this way
        while the registry has not given it an id yet, and frames it when it drains.
        """
        try:
            return self._writer(record)
        except Exception as exc:  # ValueError, TypeError, AttributeError, KeyError and others
            raise RecordEncodeError(f"value does not fit {self.topic}: {exc!r}") from exc

    def frame(self, body: bytes) -> bytes:
        """Prefixes a body from `encode_body` with the magic byte and the schema id."""
        return _HEADER.pack(_MAGIC, self.schema_id()) + body

    def decode(self, data: bytes) -> dict[str, Any]:
        if len(data) < _HEADER.size or data[0] != _MAGIC:
            raise RecordDecodeError(f"{self.topic}: not a Confluent-framed Avro record")
        _, schema_id = _HEADER.unpack_from(data)
        if schema_id not in self._writers:
            self._writers[schema_id] = self._writer_schema(schema_id)
        writer = self._writers[schema_id]
        record: Any
        try:
            if writer is _SAME:  # written with our own schema: read as is, no resolution
                record = self._read_ours(data, _HEADER.size)
            else:
                record = fastavro.schemaless_reader(
                    io.BytesIO(data[_HEADER.size :]), writer, self._reader
                )
                if self._fields is not None and isinstance(record, dict):
                    record = _projected(record, self._fields)
        except Exception as exc:
            raise RecordDecodeError(f"cannot decode a record of {self.topic}: {exc!r}") from exc
        if not isinstance(record, dict):
            raise RecordDecodeError(f"{self.topic}: expected a record, got {type(record).__name__}")
        return record

    def _writer_schema(self, schema_id: int) -> Any:
        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:  # an id the registry never issued: bad data
                raise RecordDecodeError(f"{self.topic}: unknown schema id {schema_id}") from exc
            raise RegistryUnavailableError(f"registry lookup for {self.topic}: {exc}") from exc
        except (httpx.HTTPError, OSError) as exc:
            raise RegistryUnavailableError(f"registry lookup for {self.topic}: {exc}") from exc
        try:
            writer = fastavro.parse_schema(json.loads(schema.schema_str or ""))
        except Exception as exc:
            raise RecordDecodeError(f"{self.topic}: writer schema {schema_id} is unusable") from exc
        return _SAME if writer == self._reader else writer

    def _registry_call(self, call: Any, *args: Any) -> int:
        try:
            return int(call(*args))
        except (SchemaRegistryError, httpx.HTTPError, OSError) as exc:
            raise RegistryUnavailableError(f"registry lookup for {self.topic}: {exc}") from exc


def _body_writer(schema: str, parsed: Any) -> Callable[[Mapping[str, Any]], bytes]:
    """The generated writer of `schema`; fastavro's for a schema the generator does not cover."""
    try:
        return compile_writer(json.loads(schema))
    except UnsupportedSchemaError:

        def write(record: Mapping[str, Any]) -> bytes:
            out = io.BytesIO()
            fastavro.schemaless_writer(out, parsed, record)
            return out.getvalue()

        return write


def _projected(record: dict[str, Any], fields: Collection[str]) -> dict[str, Any]:
    # In the schema's order, as the generated reader returns them.
    return {name: value for name, value in record.items() if name in fields}


def _body_reader(schema: str, parsed: Any, fields: Collection[str] | None) -> Reader:
    """The generated reader of `schema`; fastavro's for a schema the generator does not cover."""
    try:
        return compile_reader(json.loads(schema), fields)
    except UnsupportedSchemaError:

        def read(data: bytes, start: int) -> Any:
            record = fastavro.schemaless_reader(io.BytesIO(data[start:]), parsed, None)
            if fields is None or not isinstance(record, dict):
                return record
            return _projected(record, fields)

        return read
