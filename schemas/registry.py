"""Registers the checked-in schemas with the Schema Registry (Confluent API)."""

from __future__ import annotations

import time
from http import HTTPStatus

import httpx
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas.catalog import load_schema, subjects_for
from schemas.connection import RegistryConnection
from schemas.errors import RegistryAuthenticationError, RegistryUnavailableError
from schemas.settings import TopicNames

COMPATIBILITY = "BACKWARD"
CONFLICT_ATTEMPTS = 5


def registry_client(connection: RegistryConnection | str) -> SchemaRegistryClient:
    """The Confluent client, with the connection's basic auth and CA (a bare URL: neither)."""
    if isinstance(connection, str):
        connection = RegistryConnection(url=connection)
    return SchemaRegistryClient(connection.client_config())


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
    # Processes that start together (the workers of `worker all`, the ingress) register
    # the same new subjects at the same moment, and Apicurio answers the loser of two
    # racing creations with 409 Conflict instead of treating it as a repeat. Both steps
    # are idempotent once the subject exists, so the loser tries again.
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            client.set_compatibility(subject_name=subject, level=COMPATIBILITY)
            return int(client.register_schema(subject, schema))
        except SchemaRegistryError as exc:
            if exc.http_status_code in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
                raise RegistryAuthenticationError(
                    f"the registry refused the credentials registering {subject}"
                    f" (HTTP {exc.http_status_code})"
                ) from exc
            if exc.http_status_code != HTTPStatus.CONFLICT or attempt == CONFLICT_ATTEMPTS:
                raise RegistryUnavailableError(f"registering {subject} failed: {exc}") from exc
        except (httpx.HTTPError, OSError) as exc:
            raise RegistryUnavailableError(f"registering {subject} failed: {exc}") from exc
        time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")  # the last attempt returns or raises
