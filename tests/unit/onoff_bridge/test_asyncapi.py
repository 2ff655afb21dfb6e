"""The AsyncAPI document lists exactly the topics and schemas the code uses, and it is valid."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from onoff_bridge.asyncapi import render
from schemas.catalog import load_schema, subjects_for
from schemas.settings import BridgeSettings
from schemas.topics import design_topics

ROOT = Path(__file__).resolve().parents[3]
DOCUMENT = ROOT / "schemas" / "asyncapi.yaml"
VALIDATOR = ROOT / "tools" / "asyncapi"


def _document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text())
    return loaded


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node, "Node.js is needed to validate the AsyncAPI document (see the README)"
    assert (VALIDATOR / "node_modules").is_dir(), "run `make install` (it runs npm ci there)"
    return subprocess.run(
        [node, str(VALIDATOR / "validate.mjs"), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=VALIDATOR,
    )


def test_the_checked_in_document_is_what_the_code_generates() -> None:
    assert DOCUMENT.read_text() == render(), "run `onoff-bridge schemas asyncapi`"


def test_it_lists_exactly_the_topics_and_schemas_in_use() -> None:
    settings = BridgeSettings.model_construct()
    topics = settings.topics
    specs = design_topics(settings)
    document = _document()
    channels = {c["address"]: c for c in document["channels"].values()}
    assert set(channels) == {spec.name for spec in specs}
    messages = document["components"]["messages"]
    for subject, name in subjects_for(topics).items():
        channel = channels[subject.removesuffix("-value")]
        (reference,) = channel["messages"].values()
        message = messages[reference["$ref"].rsplit("/", 1)[1]]
        assert message["payload"]["schema"] == json.loads(load_schema(name)), subject
    for spec in specs:
        binding = channels[spec.name]["bindings"]["kafka"]
        assert binding["partitions"] == spec.partitions
        policy = binding["topicConfiguration"]["cleanup.policy"]
        assert policy == spec.cleanup_policy.split(",")


def test_the_asyncapi_parser_accepts_it() -> None:
    checked = _validate(DOCUMENT)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "valid: 6 channels" in checked.stdout


def test_the_parser_would_refuse_a_broken_document(tmp_path: Path) -> None:
    document = _document()
    first = next(iter(document["operations"].values()))
    first["action"] = "publish"  # AsyncAPI 2's word, not 3's
    broken = tmp_path / "asyncapi.yaml"
    broken.write_text(yaml.safe_dump(document, sort_keys=False))
    checked = _validate(broken)
    assert checked.returncode == 1, checked.stdout
    assert "error" in checked.stdout
