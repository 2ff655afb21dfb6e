"""The secured 3-broker cluster (`onoff-bridge stack up --secure`), started once per session.

A cluster that already runs (started by hand, or by an earlier session) is
reused and left running; one this session started is stopped at its end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack.secure import SecureEndpoints, SecureStack, SecureStackSettings
from tests.cluster.helpers import Layout, delete_topics, new_layout, registry_of, topic_names_of
from tests.integration.recordings_fixtures import AudioServer, audio_server

_STARTED: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.path):
            item.add_marker(pytest.mark.cluster)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _STARTED:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def stack() -> SecureStack:
    return SecureStack(SecureStackSettings(), progress=print)


@pytest.fixture(scope="session")
def cluster(stack: SecureStack) -> Iterator[SecureEndpoints]:
    began = time.monotonic()
    endpoints, started = stack.up()
    how = f"started in {time.monotonic() - began:.0f}s" if started else "already running"
    _STARTED.append(f"cluster tests ran against the secured cluster ({how})")
    yield endpoints
    if started:
        stack.down(started)


@pytest.fixture
def layout(cluster: SecureEndpoints) -> Iterator[Layout]:
    """Topic names and an app id unique to the test; its topics are deleted afterwards."""
    made = new_layout()
    yield made
    delete_topics(cluster.kafka_config(), topic_names_of(made))


@pytest.fixture(scope="module")
def server() -> Iterator[AudioServer]:
    """A real HTTP server serving audio to the recordings worker."""
    with audio_server() as started:
        yield started


@pytest.fixture(scope="session")
def stack_registry(cluster: SecureEndpoints) -> Iterator[SchemaRegistryClient]:
    """A registry client with the cluster's basic auth and CA."""
    with registry_of(cluster) as client:
        yield client
