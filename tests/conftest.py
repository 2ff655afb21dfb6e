"""Shared test helpers: the sample bodies from ../shared/samples, copied here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

SAMPLES = Path(__file__).parent / "samples"

# Hypothesis judges speed by the wall clock; on a CI machine whose cores a broker and
# other processes share, a draw or an example can take a second without being wrong.
# What a property test checks is its assertions, not how fast the examples came.
settings.register_profile(
    "onoff", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("onoff")


def sample_bytes(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def sample(name: str) -> dict[str, Any]:
    value = json.loads(sample_bytes(name))
    assert isinstance(value, dict)
    return value


@pytest.fixture
def samples_dir() -> Path:
    return SAMPLES
