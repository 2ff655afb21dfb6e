"""Schema evolution, guarded: every released version of each schema, and the BACKWARD check.

Each schema keeps its released versions under `schemas/avro/history/<name>/`
(`001.avsc`, `002.avsc`, …); the last one must equal the schema in use. A
change to a `.avsc` therefore comes with a new history file, and
`check_history` asks a real registry whether each version can read the data
written with the one before (BACKWARD, what the subjects are set to): a
consumer upgraded first must still read what producers wrote before.
`check_against_registry` asks the same of the schemas in use against what a
registry already holds, before a deployment.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas.catalog import SchemaName, load_schema

COMPATIBILITY = "BACKWARD"


@dataclass(frozen=True)
class Verdict:
    name: str
    version: str
    compatible: bool
    detail: str = ""


def history(name: SchemaName) -> list[tuple[str, str]]:
    """(version, schema text) of every released version of `name`, oldest first."""
    folder = resources.files("schemas").joinpath("avro", "history", name.value)
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".avsc")),
        key=lambda entry: entry.name,
    )
    return [(entry.name.removesuffix(".avsc"), entry.read_text()) for entry in files]


def canonical(text: str) -> Any:
    return json.loads(text)


def unrecorded_changes() -> list[str]:
    """The schemas whose text in use is not their last released version."""
    return [
        name.value
        for name in SchemaName
        if not history(name) or canonical(history(name)[-1][1]) != canonical(load_schema(name))
    ]


def check_versions(
    client: SchemaRegistryClient, name: str, versions: list[tuple[str, str]], subject: str
) -> list[Verdict]:
    """Registers `versions` in order under a fresh `subject`, each checked BACKWARD first."""
    client.set_compatibility(subject_name=subject, level=COMPATIBILITY)
    verdicts = []
    for position, (version, text) in enumerate(versions):
        schema = Schema(text, "AVRO")
        if position and not client.test_compatibility(subject, schema):
            verdicts.append(
                Verdict(
                    name,
                    version,
                    False,
                    f"cannot read data written with {versions[position - 1][0]}",
                )
            )
            return verdicts
        client.register_schema(subject, schema)
        verdicts.append(Verdict(name, version, True))
    return verdicts


def check_history(client: SchemaRegistryClient, prefix: str = "evolution") -> list[Verdict]:
    """Every schema's history replayed on the registry, each under a subject of its own."""
    run = uuid.uuid4().hex[:12]
    verdicts: list[Verdict] = []
    for name in SchemaName:
        subject = f"{prefix}-{run}-{name.value}"
        verdicts += check_versions(client, name.value, history(name), subject)
    return verdicts


def check_against_registry(
    client: SchemaRegistryClient, subjects: Mapping[str, SchemaName]
) -> list[Verdict]:
    """Whether each schema in use can be registered over what its subject holds now."""
    verdicts = []
    for subject, name in subjects.items():
        try:
            compatible = client.test_compatibility(subject, Schema(load_schema(name), "AVRO"))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:  # a new subject takes any first version
                verdicts.append(
                    Verdict(name.value, "in use", True, f"{subject}: not registered yet")
                )
                continue
            raise
        detail = subject if compatible else f"{subject}: cannot read what the registry holds"
        verdicts.append(Verdict(name.value, "in use", compatible, detail))
    return verdicts
