"""The data contract: each topic's Avro schema, and the code that registers and (de)serializes it.

Errors (all derive from `SchemaError`)::

    SchemaError
    ├── RegistryUnavailableError   the Schema Registry could not be reached or answered an error
    ├── RecordEncodeError          a value does not fit its schema
    └── RecordDecodeError          bytes are not a valid Confluent-framed Avro record
"""

from schemas.catalog import SchemaName, load_schema, subjects_for
from schemas.errors import (
    RecordDecodeError,
    RecordEncodeError,
    RegistryUnavailableError,
    SchemaError,
)
from schemas.registry import register_all, registry_client
from schemas.serde import AvroCodec

__all__ = [
    "AvroCodec",
    "RecordDecodeError",
    "RecordEncodeError",
    "RegistryUnavailableError",
    "SchemaError",
    "SchemaName",
    "load_schema",
    "register_all",
    "registry_client",
    "subjects_for",
]
