"""Fixtures for the ingress integration tests: the real app over a real broker and registry.

`running_apps` builds the app exactly as production does (`ingress.bootstrap.build_app`)
against the session's broker and registry, with topics unique to the test;
`read_topic` reads a topic to its end, and `decode_*` turn the values back
into records through the registry.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from pydantic import SecretStr
from starlette.testclient import TestClient

from ingress.bootstrap import build_app
from ingress.settings import IngressSettings
from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from schemas import AvroCodec, SchemaName

PRIMARY_KEY = "primary-" + uuid.uuid4().hex
SECONDARY_KEY = "secondary-" + uuid.uuid4().hex
API_KEYS = {"primary": PRIMARY_KEY, "secondary": SECONDARY_KEY}
CDR_PATH = "/v1/onoff/cdr"
SMS_PATH = "/v1/onoff/sms"


def ingress_settings(
    endpoints: StackEndpoints, topics: TopicNames, **overrides: Any
) -> IngressSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": endpoints.kafka_bootstrap_servers,
        "schema_registry_url": endpoints.schema_registry_url,
        "topics": topics,
        "api_keys": {name: SecretStr(key) for name, key in API_KEYS.items()},
        # Explicit, so an ONOFF_BRIDGE_API_KEY in the environment cannot add a third key.
        "api_key": None,
        "allow_unauthenticated": False,
        "log_json": False,
    }
    return IngressSettings(**(values | overrides))


AppFactory = Callable[..., TestClient]


@contextlib.contextmanager
def running_apps(endpoints: StackEndpoints, topics: TopicNames) -> Iterator[AppFactory]:
    """Starts apps (lifespan included) with the given topics; stops them all on exit.

    The factory's keyword arguments override `IngressSettings` fields, e.g.
    `quarantine_status=422`. Test modules wrap this in a fixture of their own.
    """
    open_clients: list[TestClient] = []

    def start(*, wait_for_schemas: bool = True, **overrides: Any) -> TestClient:
        app = build_app(ingress_settings(endpoints, topics, **overrides))
        client = TestClient(app)
        client.__enter__()
        open_clients.append(client)
        if wait_for_schemas:
            wait_until_schemas_registered(client)
        return client

    try:
        yield start
    finally:
        for client in reversed(open_clients):
            client.__exit__(None, None, None)


def wait_until_schemas_registered(client: TestClient, timeout_s: float = 30.0) -> None:
    """Registration runs in the background from start-up; /readyz says when it is done."""
    deadline = time.monotonic() + timeout_s
    while client.get("/readyz").json()["schemas"] is not True:
        assert time.monotonic() < deadline, "the ingress did not register its schemas"
        time.sleep(0.05)


def with_key(key: str = PRIMARY_KEY, **headers: str) -> dict[str, str]:
    return {"x-api-key": key, "content-type": "application/json", **headers}


def read_topic(bootstrap_servers: str, topic: str, timeout_s: float = 20.0) -> list[Message]:
    """Every committed record of `topic`, read from the start of each partition to its end."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"ingress-test-{uuid.uuid4().hex[:10]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        ends: dict[int, int] = {}
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10, cached=False
            )
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        messages: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                continue
            messages.append(message)
            partition, offset = message.partition(), message.offset()
            assert partition is not None and offset is not None
            if partition in ends and offset + 1 >= ends[partition]:
                del ends[partition]
        assert not ends, f"did not reach the end of {topic}: partitions {ends} left"
        return messages
    finally:
        consumer.close()


def topic_size(bootstrap_servers: str, topic: str) -> int:
    """How many records the topic holds (sum of high watermarks; nothing is ever deleted here)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap_servers, "group.id": f"size-{uuid.uuid4().hex[:10]}"}
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        total = 0
        for partition in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10, cached=False
            )
            total += high - low
        return total
    finally:
        consumer.close()


def decode_values(
    registry: SchemaRegistryClient, name: SchemaName, topic: str, messages: list[Message]
) -> list[dict[str, Any]]:
    codec = AvroCodec(registry, name, topic)
    values = []
    for message in messages:
        value = message.value()
        assert isinstance(value, bytes)
        values.append(codec.decode(value))
    return values


def records_by_request_id(
    registry: SchemaRegistryClient,
    name: SchemaName,
    topic: str,
    messages: list[Message],
    id_of: Callable[[dict[str, Any]], str] = lambda record: str(record["ingest"]["requestId"]),
) -> dict[str, dict[str, Any]]:
    """Decoded records keyed by the request id that brought each (ingest.requestId by default)."""
    records = decode_values(registry, name, topic, messages)
    by_id = {id_of(record): record for record in records}
    assert len(by_id) == len(records), "two records carry the same request id"
    return by_id


def start_ingress(
    endpoints: StackEndpoints,
    topics: TopicNames,
    port: int,
    log: Path,
    api_key: str,
    *options: str,
    extra_env: Mapping[str, str] | None = None,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """`onoff-bridge ingress` as a child process, once /readyz answers 200.

    `new_session`: the process leads its own group, so `os.killpg` reaches its
    uvicorn workers too (a SIGKILL to the parent alone leaves them running).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONOFF_BRIDGE_")}
    env |= {
        "ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap_servers,
        "ONOFF_BRIDGE_SCHEMA_REGISTRY_URL": endpoints.schema_registry_url,
        "ONOFF_BRIDGE_API_KEY": api_key,
        "ONOFF_BRIDGE_LOG_LEVEL": "WARNING",
    }
    env |= {f"ONOFF_BRIDGE_TOPICS__{k.upper()}": v for k, v in topics.model_dump().items()}
    env |= extra_env or {}
    command = [sys.executable, "-m", "onoff_bridge", "ingress", "--port", str(port), *options]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                return process
        time.sleep(0.2)
    process.kill()  # not left running behind a failed test
    process.wait(timeout=30)
    raise AssertionError("the ingress did not become ready:\n" + log.read_text())
