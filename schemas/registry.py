"""Registers the checked-in schemas with the Schema Registry (Confluent API)."""

from __future__ import annotations

import httpx
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from onoff_bridge.settings import TopicNames
from schemas.catalog import load_schema, subjects_for
from schemas.errors import RegistryUnavailableError

COMPATIBILITY = "BACKWARD"


def registry_client(url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": url})


def register_all(client: SchemaRegistryClient, topics: TopicNames) -> dict[str, int]:
    """Registers every schema under its subject with BACKWARD compatibility; returns the ids.

    Registering a schema the subject already holds returns its existing id, so
    this is safe on every start-up.
    """
    ids = {}
    for subject, name in subjects_for(topics).items():
        try:
            client.set_compatibility(subject_name=subject, level=COMPATIBILITY)
            ids[subject] = client.register_schema(subject, Schema(load_schema(name), "AVRO"))
        except (SchemaRegistryError, httpx.HTTPError, OSError) as exc:
            raise RegistryUnavailableError(f"registering {subject} failed: {exc}") from exc
    return ids
