"""The bottom layer's exceptions; the tree is drawn in the package docstring."""


class SchemaError(Exception):
    """Root of every error the bottom layer (schemas, connections, topics) raises on purpose."""


class RegistryUnavailableError(SchemaError):
    """The Schema Registry could not be reached, or refused a request."""


class RegistryAuthenticationError(RegistryUnavailableError):
    """The Schema Registry answered 401 or 403: the credentials are wrong or missing."""


class KafkaUnavailableError(SchemaError):
    """No broker answered within the connect timeout."""


class KafkaAuthenticationError(KafkaUnavailableError):
    """A broker refused the client's credentials (SASL) or the TLS handshake failed."""


class TopicLayoutError(SchemaError):
    """A topic a worker needs is missing or configured unlike its spec."""


class RecordEncodeError(SchemaError):
    """A value could not be written with its schema."""


class RecordDecodeError(SchemaError):
    """Bytes could not be read as a Confluent-framed Avro record."""
