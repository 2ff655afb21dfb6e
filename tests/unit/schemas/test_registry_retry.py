"""Schema registration retries the 409 race and nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas.errors import RegistryAuthenticationError, RegistryUnavailableError
from schemas.registry import CONFLICT_ATTEMPTS, _register


class ScriptedRegistry:
    """Answers register_schema with the given errors in turn, then with id 7."""

    def __init__(self, *errors: int) -> None:
        self.errors = list(errors)
        self.calls = 0

    def set_compatibility(self, subject_name: str, level: str) -> None:
        pass

    def register_schema(self, subject: str, schema: Schema) -> int:
        self.calls += 1
        if self.errors:
            status = self.errors.pop(0)
            raise SchemaRegistryError(status, status * 100, f"HTTP {status}")
        return 7


SCHEMA = Schema('{"type": "string"}', "AVRO")


def _register_with(client: Any) -> int:
    return _register(client, "topic-value", SCHEMA)


def test_a_lost_creation_race_is_retried_until_it_succeeds() -> None:
    client = ScriptedRegistry(409, 409)
    assert _register_with(client) == 7
    assert client.calls == 3


def test_conflicts_that_never_end_give_up_as_unavailable() -> None:
    client = ScriptedRegistry(*[409] * CONFLICT_ATTEMPTS)
    with pytest.raises(RegistryUnavailableError, match="registering topic-value failed"):
        _register_with(client)
    assert client.calls == CONFLICT_ATTEMPTS


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_fail_at_once_with_a_clear_error(status: int) -> None:
    client = ScriptedRegistry(status)
    with pytest.raises(RegistryAuthenticationError, match=f"refused the credentials.*{status}"):
        _register_with(client)
    assert client.calls == 1


def test_another_registry_error_is_not_retried() -> None:
    client = ScriptedRegistry(500)
    with pytest.raises(RegistryUnavailableError):
        _register_with(client)
    assert client.calls == 1
