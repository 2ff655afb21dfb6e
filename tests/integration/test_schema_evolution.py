"""Schema evolution against the real registry: the history is BACKWARD, a break is caught."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from onoff_bridge.localstack import StackEndpoints
from schemas.catalog import SchemaName, load_schema
from schemas.evolution import check_against_registry, check_history, check_versions, history
from tests.integration.conftest import unique


def _call_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(load_schema(SchemaName.CALL))
    return schema


def test_every_released_version_reads_what_the_one_before_wrote(
    registry: SchemaRegistryClient,
) -> None:
    verdicts = check_history(registry, prefix=unique("evolution"))
    assert len(verdicts) == sum(len(history(name)) for name in SchemaName)
    assert all(verdict.compatible for verdict in verdicts), verdicts


def test_a_new_field_without_a_default_is_reported_as_breaking(
    registry: SchemaRegistryClient,
) -> None:
    current = _call_schema()
    broken = dict(current, fields=[*current["fields"], {"name": "region", "type": "string"}])
    versions = [("001", json.dumps(current)), ("002", json.dumps(broken))]
    verdicts = check_versions(registry, "call", versions, unique("evolution-break"))
    assert [v.compatible for v in verdicts] == [True, False]
    assert "cannot read data written with 001" in verdicts[-1].detail


def test_the_schemas_in_use_are_checked_against_what_a_subject_holds(
    registry: SchemaRegistryClient, endpoints: StackEndpoints
) -> None:
    # A subject holding an older Call without `id`: the Call in use requires it, so it
    # cannot read those records.
    current = _call_schema()
    older = dict(current, fields=[f for f in current["fields"] if f["name"] != "id"])
    subject = f"{unique('evolution-held')}-value"
    registry.register_schema(subject, Schema(json.dumps(older), "AVRO"))
    registry.set_compatibility(subject_name=subject, level="BACKWARD")
    verdicts = check_against_registry(registry, {subject: SchemaName.CALL})
    assert [v.compatible for v in verdicts] == [False]

    fine = check_against_registry(registry, {f"{unique('evolution-new')}-value": SchemaName.CALL})
    assert [v.compatible for v in fine] == [True]

    env = {"ONOFF_BRIDGE_SCHEMA_REGISTRY_URL": endpoints.schema_registry_url, "PATH": ""}
    checked = subprocess.run(
        [sys.executable, "-m", "onoff_bridge", "schemas", "check", "--history"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "call 002: ok" in checked.stdout
