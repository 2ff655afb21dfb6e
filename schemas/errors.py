"""The schema layer's exceptions; the tree is drawn in the package docstring."""


class SchemaError(Exception):
    """Root of every error the schema layer raises on purpose."""


class RegistryUnavailableError(SchemaError):
    """The Schema Registry could not be reached, or refused a request."""


class RecordEncodeError(SchemaError):
    """A value could not be written with its schema."""


class RecordDecodeError(SchemaError):
    """Bytes could not be read as a Confluent-framed Avro record."""
