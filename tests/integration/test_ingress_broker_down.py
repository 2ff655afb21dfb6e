"""Broker outage: 503 with Retry-After while Kafka is away, and never a 200 for a record not stored.

Runs a second Kafka of its own (never the session's shared one) so it can be
stopped and started again; the registry is the shared one.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack import StackEndpoints, StackSettings
from onoff_bridge.localstack.fetch import fetch_kafka
from onoff_bridge.localstack.process import ManagedProcess
from onoff_bridge.localstack.services import KafkaService
from onoff_bridge.localstack.toolchain import find_java, find_mvn
from onoff_bridge.settings import TopicNames
from onoff_bridge.topics import ensure_topics, topic_specs
from schemas import SchemaName
from tests.integration.ingress_fixtures import (
    CDR_PATH,
    read_topic,
    records_by_request_id,
    running_apps,
    with_key,
)

DELIVERY_TIMEOUT_S = 2.0
RETRY_AFTER_S = 3


class DedicatedKafka:
    """One KRaft broker in its own directory and ports, started the way `LocalStack` does.

    `LocalStack.up` always starts the registry too (and would find the shared
    registry's port taken), so the broker's `KafkaService` and `ManagedProcess`
    are driven directly, as `LocalStack._ensure_running` drives them.
    """

    def __init__(self, home: Path, registry_port: int) -> None:
        shared = StackSettings()
        kafka_port, controller_port = _free_ports(2)
        self.settings = StackSettings(
            home=home,
            kafka_port=kafka_port,
            kafka_controller_port=controller_port,
            registry_port=registry_port,
            kafka_heap="256m",
        )
        # The jars the shared stack already fetched (fetching is a no-op once complete).
        libs = fetch_kafka(
            find_mvn(shared.mvn),
            shared.deploy_dir / "kafka" / "pom.xml",
            shared.dist_dir / "kafka",
            progress=print,
        )
        self.service = KafkaService(self.settings, find_java(shared.java), libs)
        self.process = ManagedProcess(
            "kafka", self.settings.run_dir, self.settings.log_dir / "kafka.log"
        )
        self.bootstrap_servers = self.service.endpoint()

    def start(self, timeout_s: float = 90.0) -> None:
        self.service.prepare()  # formats the storage only the first time
        self.process.start(self.service.command())
        deadline = time.monotonic() + timeout_s
        while not self.service.ready():
            assert not self.process.exited(), self._log_tail()
            assert time.monotonic() < deadline, "dedicated Kafka did not start\n" + self._log_tail()
            time.sleep(0.25)

    def stop(self) -> None:
        self.process.stop()
        assert self.process.pid() is None

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.process.log_file.read_text().splitlines()[-20:])
        except OSError:
            return ""


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture
def dedicated_kafka(
    tmp_path_factory: pytest.TempPathFactory, endpoints: StackEndpoints
) -> Iterator[DedicatedKafka]:
    registry_port = urlsplit(endpoints.schema_registry_url).port
    assert registry_port is not None
    kafka = DedicatedKafka(tmp_path_factory.mktemp("dedicated-kafka"), registry_port)
    assert kafka.bootstrap_servers != endpoints.kafka_bootstrap_servers
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


def _body(n: int) -> bytes:
    return b'{"id": "c-outage-%d", "eventName": "CDR", "callDuration": %d}' % (n, n)


def test_no_200_is_given_for_a_record_kafka_does_not_hold(
    dedicated_kafka: DedicatedKafka,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
) -> None:
    suffix = uuid.uuid4().hex[:10]
    topics = TopicNames(**{field: f"outage.{field}.{suffix}" for field in TopicNames.model_fields})
    ensure_topics(dedicated_kafka.bootstrap_servers, topic_specs(topics, partitions=3))
    own = StackEndpoints(dedicated_kafka.bootstrap_servers, endpoints.schema_registry_url)
    acknowledged: list[str] = []
    sent = 0

    def post() -> tuple[int, float, dict[str, str]]:
        nonlocal sent
        sent += 1
        started = time.monotonic()
        response = client.post(CDR_PATH, content=_body(sent), headers=with_key())
        elapsed = time.monotonic() - started
        if response.status_code == 200:
            assert response.json() == {}
            acknowledged.append(response.headers["x-request-id"])
        return response.status_code, elapsed, dict(response.headers)

    with running_apps(own, topics) as start:
        client = start(delivery_timeout_s=DELIVERY_TIMEOUT_S, retry_after_s=RETRY_AFTER_S)
        assert client.get("/readyz").status_code == 200
        assert [post()[0] for _ in range(3)] == [200, 200, 200]

        dedicated_kafka.stop()
        for _ in range(3):
            status, elapsed, headers = post()
            assert status == 503
            assert headers["retry-after"] == str(RETRY_AFTER_S)
            assert elapsed < DELIVERY_TIMEOUT_S + 1
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "not ready"
        assert ready.json()["kafka"] is False
        assert ready.headers["retry-after"] == str(RETRY_AFTER_S)

        dedicated_kafka.start()
        deadline = time.monotonic() + 60
        while True:
            status, elapsed, headers = post()
            if status == 200:
                break
            assert status == 503 and headers["retry-after"] == str(RETRY_AFTER_S)
            assert elapsed < DELIVERY_TIMEOUT_S + 1
            assert time.monotonic() < deadline, "the ingress did not recover after the restart"
        assert [post()[0] for _ in range(3)] == [200, 200, 200]
        assert client.get("/readyz").status_code == 200

    stored = records_by_request_id(
        registry,
        SchemaName.CALL_EVENT,
        topics.cdr_raw,
        read_topic(dedicated_kafka.bootstrap_servers, topics.cdr_raw),
    )
    missing = [rid for rid in acknowledged if rid not in stored]
    assert not missing, f"answered 200 but not in {topics.cdr_raw}: {missing}"
    assert len(acknowledged) >= 7
