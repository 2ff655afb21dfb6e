"""Registers the checked-in schemas with the Schema Registry (Confluent API)."""

from __future__ import annotations

from http import HTTPStatus

import httpx
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_incrementing

from schemas.catalog import load_schema, subjects_for
from schemas.connection import RegistryConnection
from schemas.errors import RegistryAuthenticationError, RegistryUnavailableError
from schemas.settings import TopicNames

COMPATIBILITY = "BACKWARD"
CONFLICT_ATTEMPTS = 5
REQUEST_TIMEOUT_S = 10.0


def registry_client(connection: RegistryConnection | str) -> SchemaRegistryClient:
    """The Confluent client, with the connection's basic auth and CA (a bare URL: neither)."""
    if isinstance(connection, str):
        connection = RegistryConnection(url=connection)
    # The client's own default is no timeout at all: a registry that accepts and never
    # answers would hold a registration (or a processor's decode) for ever.
    return SchemaRegistryClient({"timeout": REQUEST_TIMEOUT_S, **connection.client_config()})


def register_all(client: SchemaRegistryClient, topics: TopicNames) -> dict[str, int]:
    """Registers every schema under its subject with BACKWARD compatibility; returns the ids.

    Registering a schema the subject already holds returns its existing id, so
    this is safe on every start-up.
    """
    return {
        subject: _register(client, subject, Schema(load_schema(name), "AVRO"))
        for subject, name in subjects_for(topics).items()
    }


def _register(client: SchemaRegistryClient, subject: str, schema: Schema) -> int:
    try:
        return _register_retrying_conflicts(client, subject, schema)
    except SchemaRegistryError as exc:
        if exc.http_status_code in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
            raise RegistryAuthenticationError(
                f"the registry refused the credentials registering {subject}"
                f" (HTTP {exc.http_status_code})"
            ) from exc
        raise RegistryUnavailableError(f"registering {subject} failed: {exc}") from exc
    except (httpx.HTTPError, OSError) as exc:
        raise RegistryUnavailableError(f"registering {subject} failed: {exc}") from exc


def _is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, SchemaRegistryError) and exc.http_status_code == HTTPStatus.CONFLICT


# Processes that start together (the workers of `worker all`, the ingress) register the
# same new subjects at the same moment, and Apicurio answers the loser of two racing
# creations with 409 Conflict instead of treating it as a repeat. Both steps are
# idempotent once the subject exists, so the loser tries again; nothing else is retried.
@retry(
    retry=retry_if_exception(_is_conflict),
    stop=stop_after_attempt(CONFLICT_ATTEMPTS),
    wait=wait_incrementing(start=0.05, increment=0.05),
    reraise=True,
)
def _register_retrying_conflicts(client: SchemaRegistryClient, subject: str, schema: Schema) -> int:
    client.set_compatibility(subject_name=subject, level=COMPATIBILITY)
    return int(client.register_schema(subject, schema))
