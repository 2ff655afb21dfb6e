"""The bottom layer: each topic's Avro schema and the code that registers and (de)serializes
it, the shared settings, how every client connects, and what every topic looks like.

Errors (all derive from `SchemaError`)::

    SchemaError
    ├── RegistryUnavailableError       the Schema Registry could not be reached or answered an error
    │   └── RegistryAuthenticationError    it answered 401/403: wrong or missing credentials
    ├── KafkaUnavailableError          no broker answered within the connect timeout
    │   └── KafkaAuthenticationError       a broker refused the credentials or the TLS handshake
    ├── TopicLayoutError               a topic is missing or configured unlike its spec
    ├── RecordEncodeError              a value does not fit its schema
    └── RecordDecodeError              bytes are not a valid Confluent-framed Avro record
"""

from schemas.catalog import SchemaName, load_schema, subjects_for
from schemas.errors import (
    KafkaAuthenticationError,
    KafkaUnavailableError,
    RecordDecodeError,
    RecordEncodeError,
    RegistryAuthenticationError,
    RegistryUnavailableError,
    SchemaError,
    TopicLayoutError,
)
from schemas.registry import register_all, registry_client
from schemas.serde import AvroCodec

__all__ = [
    "AvroCodec",
    "KafkaAuthenticationError",
    "KafkaUnavailableError",
    "RecordDecodeError",
    "RecordEncodeError",
    "RegistryAuthenticationError",
    "RegistryUnavailableError",
    "SchemaError",
    "SchemaName",
    "TopicLayoutError",
    "load_schema",
    "register_all",
    "registry_client",
    "subjects_for",
]
