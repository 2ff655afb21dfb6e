"""Finds or starts a real Kafka broker and Schema Registry for the test session.

In this order: the addresses in ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS and
ONOFF_BRIDGE_SCHEMA_REGISTRY_URL; containers when a Docker daemon answers; else
the project's own local stack (Kafka and Apicurio fetched with Maven).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from onoff_bridge.localstack import LocalStack, StackEndpoints, StackSettings

KAFKA_IMAGE = "apache/kafka:4.1.1"
REGISTRY_IMAGE = "apicurio/apicurio-registry:3.0.9"


@contextlib.contextmanager
def provide_endpoints() -> Iterator[tuple[StackEndpoints, str]]:
    bootstrap = os.environ.get("ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS")
    registry = os.environ.get("ONOFF_BRIDGE_SCHEMA_REGISTRY_URL")
    if bootstrap and registry:
        yield StackEndpoints(bootstrap, registry), "given by environment"
    elif _docker_answers():
        with _containers() as endpoints:
            yield endpoints, "testcontainers"
    else:
        with local_stack() as endpoints:
            yield endpoints, "local stack"


@contextlib.contextmanager
def local_stack(settings: StackSettings | None = None) -> Iterator[StackEndpoints]:
    """Reuses a running local stack, else starts one and stops what it started."""
    stack = LocalStack(settings or StackSettings(), progress=print)
    endpoints, started = stack.up()
    try:
        yield endpoints
    finally:
        if started:
            stack.down(started)


def _docker_answers() -> bool:
    if not (Path("/var/run/docker.sock").exists() or os.environ.get("DOCKER_HOST")):
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def _containers() -> Iterator[StackEndpoints]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.kafka import KafkaContainer

    with (
        KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka,
        DockerContainer(REGISTRY_IMAGE).with_exposed_ports(8080) as registry,
    ):
        wait_for_logs(registry, "Installed features", timeout=120)
        url = (
            f"http://{registry.get_container_host_ip()}:"
            f"{registry.get_exposed_port(8080)}/apis/ccompat/v7"
        )
        yield StackEndpoints(kafka.get_bootstrap_server(), url)
