"""Session-wide broker and registry; factories give each test its own topics and groups."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames

# Fixtures, found by pytest by name in this module.
from tests.integration.outage_fixtures import dedicated_kafka_fixture, relay  # noqa: F401
from tests.integration.processor_fixtures import WorkerFactory, worker_factory
from tests.integration.provision import provide_endpoints
from tests.integration.recordings_fixtures import AudioServer, audio_server

_PROVISIONED: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _PROVISIONED:
        terminalreporter.write_line(f"integration tests ran against: {line}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def endpoints() -> Iterator[StackEndpoints]:
    with provide_endpoints() as (found, how):
        _PROVISIONED.append(
            f"broker {found.kafka_bootstrap_servers}, registry {found.schema_registry_url} ({how})"
        )
        yield found


@pytest.fixture(scope="session")
def admin(endpoints: StackEndpoints) -> AdminClient:
    return AdminClient({"bootstrap.servers": endpoints.kafka_bootstrap_servers})


@pytest.fixture(scope="session")
def registry(endpoints: StackEndpoints) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": endpoints.schema_registry_url}) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


TopicFactory = Callable[..., str]


@pytest.fixture
def topic_factory(admin: AdminClient) -> Iterator[TopicFactory]:
    """Creates a topic with a unique name; deletes it after the test."""
    created: list[str] = []

    def create(
        prefix: str = "test", partitions: int = 1, config: dict[str, str] | None = None
    ) -> str:
        name = unique(prefix)
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
        )
        futures[name].result(timeout=30)
        created.append(name)
        _wait_visible(admin, name, partitions)
        return name

    yield create
    if created:
        for future in admin.delete_topics(created).values():
            future.result(timeout=30)


def _wait_visible(admin: AdminClient, topic: str, partitions: int, timeout_s: float = 30.0) -> None:
    # CreateTopics answers once the controller has the topic; a describe a moment later
    # can still miss it on a loaded machine, and workers refuse to start on a missing topic.
    deadline = time.monotonic() + timeout_s
    while True:
        found = admin.list_topics(topic, timeout=5).topics.get(topic)
        if found is not None and found.error is None and len(found.partitions) == partitions:
            return
        assert time.monotonic() < deadline, f"{topic} not visible {timeout_s}s after its creation"
        time.sleep(0.1)


@pytest.fixture
def topic_names(topic_factory: TopicFactory) -> TopicNames:
    """A full set of topics, unique to the test, created like the real ones."""
    compact = {"cleanup.policy": "compact"}
    return TopicNames(
        cdr_raw=topic_factory("onoff.cdr.raw", partitions=3),
        sms_raw=topic_factory("onoff.sms.raw", partitions=3),
        deadletter=topic_factory("onoff.deadletter"),
        calls=topic_factory("onoff.calls", partitions=3, config=compact),
        recordings=topic_factory("onoff.recordings", config=compact),
        user_call_metrics=topic_factory("onoff.user-call-metrics", config=compact),
    )


ConsumeAll = Callable[..., list[Message]]


@pytest.fixture
def consume(endpoints: StackEndpoints) -> ConsumeAll:
    """Reads a topic from the start until `count` records arrived or `timeout_s` passed."""

    def read(topic: str, count: int, timeout_s: float = 30.0, **config: Any) -> list[Message]:

        consumer = Consumer(
            {
                "bootstrap.servers": endpoints.kafka_bootstrap_servers,
                "group.id": unique("test-group"),
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                **config,
            }
        )
        consumer.subscribe([topic])
        messages: list[Message] = []
        deadline = time.monotonic() + timeout_s
        try:
            while len(messages) < count and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None:
                    continue
                assert message.error() is None, message.error()
                messages.append(message)
        finally:
            consumer.close()
        return messages

    return read


@pytest.fixture
def workers(
    endpoints: StackEndpoints, topic_names: TopicNames, tmp_path: Path
) -> Iterator[WorkerFactory]:
    """Processor workers as child processes sharing one group; all stopped at the end."""
    with worker_factory(endpoints, topic_names, tmp_path) as factory:
        yield factory


@pytest.fixture(scope="module")
def server() -> Iterator[AudioServer]:
    """A real HTTP server serving audio (and failures) to the recordings tests."""
    with audio_server() as started:
        yield started
