"""Every schema in use is its last released version, so no change skips the BACKWARD check."""

from __future__ import annotations

import json

from schemas.catalog import SchemaName, load_schema
from schemas.evolution import history, unrecorded_changes


def test_every_schema_in_use_is_its_last_released_version() -> None:
    assert unrecorded_changes() == [], "add the changed schema as a new file under its history"


def test_each_history_is_numbered_from_one_without_gaps() -> None:
    for name in SchemaName:
        versions = [version for version, _ in history(name)]
        assert versions == [f"{n:03d}" for n in range(1, len(versions) + 1)], name
        assert json.loads(history(name)[-1][1]) == json.loads(load_schema(name))
