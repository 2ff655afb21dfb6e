"""Shared test helpers: the sample bodies from ../shared/samples, copied here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SAMPLES = Path(__file__).parent / "samples"


def sample_bytes(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def sample(name: str) -> dict[str, Any]:
    value = json.loads(sample_bytes(name))
    assert isinstance(value, dict)
    return value


@pytest.fixture
def samples_dir() -> Path:
    return SAMPLES
