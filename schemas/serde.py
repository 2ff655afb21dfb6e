"""Avro values in the Confluent wire format (magic byte, schema id, body) for one topic."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas.catalog import SchemaName, load_schema
from schemas.errors import RecordDecodeError, RecordEncodeError, RegistryUnavailableError


class AvroCodec:
    """Writes and reads one topic's values with the checked-in schema.

    Writing registers the schema on first use (then the id is cached); reading
    resolves the writer's schema by id and projects it onto ours, so records
    written with an older compatible schema still read.
    """

    def __init__(self, client: SchemaRegistryClient, name: SchemaName, topic: str) -> None:
        schema = load_schema(name)
        self.topic = topic
        self._context = SerializationContext(topic, MessageField.VALUE)
        self._serializer = AvroSerializer(client, schema, conf={"auto.register.schemas": True})
        self._deserializer = AvroDeserializer(client, schema)

    def encode(self, record: Mapping[str, Any]) -> bytes:
        try:
            data = self._serializer(record, self._context)
        except (SchemaRegistryError, httpx.HTTPError) as exc:
            raise RegistryUnavailableError(f"registry lookup for {self.topic}: {exc}") from exc
        except Exception as exc:  # fastavro raises ValueError/TypeError/KeyError and others
            raise RecordEncodeError(f"value does not fit {self.topic}: {exc}") from exc
        assert data is not None
        return bytes(data)

    def decode(self, data: bytes) -> dict[str, Any]:
        try:
            record = self._deserializer(data, self._context)
        except (SchemaRegistryError, httpx.HTTPError) as exc:
            raise RegistryUnavailableError(f"registry lookup for {self.topic}: {exc}") from exc
        except Exception as exc:
            raise RecordDecodeError(f"cannot decode a record of {self.topic}: {exc}") from exc
        if not isinstance(record, dict):
            raise RecordDecodeError(f"{self.topic}: expected a record, got {type(record).__name__}")
        return record
