"""Clients and child processes against the secured cluster: SASL_SSL Kafka, a registry with auth."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack.secure import SecureEndpoints
from processors.settings import ProcessorSettings
from processors.topology import all_topics
from schemas import AvroCodec, SchemaName, registry_client
from schemas.connection import RegistryConnection
from schemas.settings import TopicNames

API_KEY = "cluster-test-" + uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Layout:
    """Topic names and a Faust app id prefix unique to one test."""

    topics: TopicNames
    app_id_prefix: str

    def env(self) -> dict[str, str]:
        env = {f"ONOFF_BRIDGE_TOPICS__{k.upper()}": v for k, v in self.topics.model_dump().items()}
        return env | {"ONOFF_BRIDGE_APP_ID_PREFIX": self.app_id_prefix}


def new_layout() -> Layout:
    suffix = uuid.uuid4().hex[:8]
    topics = TopicNames(**{field: f"sec.{field}.{suffix}" for field in TopicNames.model_fields})
    return Layout(topics, f"sec-{suffix}")


class Reachable(Protocol):
    """How to reach Kafka and the registry: `SecureEndpoints`, or a plain `StackEndpoints`."""

    def as_env(self) -> dict[str, str]: ...


def client_env(cluster: Reachable, layout: Layout, home: Path, **extra: str) -> dict[str, str]:
    """What a child process gets: nothing ONOFF_BRIDGE_* from the test run, the cluster's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONOFF_BRIDGE_", "PYTEST"))}
    env |= cluster.as_env() | layout.env()
    env |= {
        "ONOFF_BRIDGE_DATA_DIR": str(home / "processors"),
        "ONOFF_BRIDGE_API_KEY": API_KEY,
        # The samples are from March 2026; keep them inside every retention.
        "ONOFF_BRIDGE_DEDUPE_RETENTION_DAYS": "36500",
        "ONOFF_BRIDGE_METRICS__RETENTION_DAYS": "36500",
        "ONOFF_BRIDGE_RECORDINGS__RETENTION_DAYS": "36500",
        "ONOFF_BRIDGE_COMMIT_INTERVAL_S": "0.5",
        "ONOFF_BRIDGE_LOG_LEVEL": "WARNING",
        "ONOFF_BRIDGE_LOG_JSON": "false",
        "ONOFF_BRIDGE_CONNECT_TIMEOUT_S": "8",
        "ONOFF_BRIDGE_TOPIC_PARTITIONS": "3",
        "ONOFF_BRIDGE_METRICS__PARTITIONS": "3",
    }
    return env | extra


def topic_names_of(layout: Layout) -> list[str]:
    """Every topic `topics apply` makes for this layout (names depend on nothing else)."""
    settings = ProcessorSettings(topics=layout.topics, app_id_prefix=layout.app_id_prefix)
    return [spec.name for spec in all_topics(settings)]


def cli(
    *args: str, env: Mapping[str, str], timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onoff_bridge", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@dataclass
class Child:
    process: subprocess.Popen[bytes]
    log: Path
    health_url: str

    def wait_healthy(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"exited with {self.process.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.health_url, timeout=1).status_code == 200:
                    return
            time.sleep(0.3)
        raise AssertionError(f"not healthy after {timeout_s}s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in reversed(started):
            child.stop()


def spawn(args: list[str], env: Mapping[str, str], log: Path, health_url: str) -> Child:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "onoff_bridge", *args],
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Child(process, log, health_url)


def registry_of(cluster: SecureEndpoints) -> SchemaRegistryClient:
    return registry_client(
        RegistryConnection(
            url=cluster.schema_registry_url,
            basic_auth_user=cluster.registry_user,
            basic_auth_password=cluster.registry_password,
            ca_location=cluster.ca_location,
        )
    )


def read_all(config: Mapping[str, str], topic: str, timeout_s: float = 30.0) -> list[Message]:
    """Every record of `topic`, from the start of each partition to its current end."""
    consumer = Consumer(
        {
            **config,
            "group.id": f"cluster-test-{uuid.uuid4().hex[:10]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        ends: dict[int, int] = {}
        for partition in sorted(metadata.topics[topic].partitions):
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


def decode(
    registry: SchemaRegistryClient, name: SchemaName, topic: str, messages: list[Message]
) -> list[dict[str, Any]]:
    codec = AvroCodec(registry, name, topic)
    out = []
    for message in messages:
        value = message.value()
        if value is not None:
            out.append(codec.decode(value))
    return out


def wait_until(check: Any, timeout_s: float = 60.0, every_s: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(every_s)


def delete_topics(config: Mapping[str, str], names: list[str]) -> None:
    admin = AdminClient(dict(config))
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [n for n in names if n in existing]
    if doomed:
        for future in admin.delete_topics(doomed, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result(timeout=60)
