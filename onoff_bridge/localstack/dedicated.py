"""A Kafka broker and a registry of one's own, beside the shared stack, to stop, kill and start.

The outage and fault tests and the spooling benchmark take Kafka or the
registry away on purpose; doing that to the shared stack would pull it from
under every other test and helper. These run one more single-node KRaft broker
and one more Apicurio registry, each in its own directory on free ports,
started the way `LocalStack` starts the shared ones (the same `KafkaService`,
`RegistryService` and `ManagedProcess`) from the jars the shared stack already
fetched. `LocalStack.up` itself is not used: it starts both services on the
configured ports and would find the shared stack's ports taken.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from onoff_bridge.localstack.errors import ServiceStartError
from onoff_bridge.localstack.fetch import fetch_kafka, fetch_registry
from onoff_bridge.localstack.process import ManagedProcess
from onoff_bridge.localstack.services import KafkaService, RegistryService, Service
from onoff_bridge.localstack.settings import StackSettings
from onoff_bridge.localstack.stack import StackEndpoints
from onoff_bridge.localstack.toolchain import find_java, find_mvn


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def dedicated_settings(home: Path, kafka_heap: str = "256m") -> StackSettings:
    """The shared stack's tools and jars, with a home and ports of its own."""
    kafka_port, controller_port, registry_port = free_ports(3)
    return StackSettings(
        home=home,
        kafka_port=kafka_port,
        kafka_controller_port=controller_port,
        registry_port=registry_port,
        kafka_heap=kafka_heap,
    )


class DedicatedService:
    """One service of the stack as a process the test owns: start, stop (SIGTERM), kill."""

    def __init__(self, service: Service, settings: StackSettings, start_timeout_s: float) -> None:
        self.service = service
        self.process = ManagedProcess(
            service.name, settings.run_dir, settings.log_dir / f"{service.name}.log"
        )
        self._start_timeout_s = start_timeout_s

    @property
    def running(self) -> bool:
        return self.process.pid() is not None

    def launch(self) -> None:
        """Starts the process without waiting for it to answer (see `wait_ready`)."""
        self.service.prepare()  # Kafka: formats the storage only the first time
        self.process.start(self.service.command())

    def wait_ready(self) -> float:
        """Waits until the service answers; returns how long that took."""
        started = time.monotonic()
        deadline = started + self._start_timeout_s
        while not self.service.ready():
            if self.process.exited():
                raise ServiceStartError(f"{self.service.name} exited\n" + self.log_tail())
            if time.monotonic() > deadline:
                raise ServiceStartError(
                    f"dedicated {self.service.name} did not start\n" + self.log_tail()
                )
            time.sleep(0.25)
        return time.monotonic() - started

    def start(self) -> float:
        self.launch()
        return self.wait_ready()

    def stop(self) -> None:
        """SIGTERM, as an operator stops it (SIGKILL after 30 s)."""
        self.process.stop()

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        self.process.kill()

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.process.log_file.read_text().splitlines()[-lines:])
        return ""


class DedicatedKafka(DedicatedService):
    """One KRaft broker (broker and controller) in its own directory and ports."""

    def __init__(self, settings: StackSettings) -> None:
        shared = StackSettings()
        libs = fetch_kafka(
            find_mvn(shared.mvn),
            shared.deploy_dir / "kafka" / "pom.xml",
            shared.dist_dir / "kafka",
            progress=print,
        )
        service = KafkaService(settings, find_java(shared.java), libs)
        super().__init__(service, settings, start_timeout_s=120.0)
        self.bootstrap_servers = service.endpoint()


class DedicatedRegistry(DedicatedService):
    """Apicurio on an H2 file of its own: a restart keeps the schemas and their ids."""

    def __init__(self, settings: StackSettings) -> None:
        shared = StackSettings()
        app = fetch_registry(
            find_mvn(shared.mvn),
            shared.deploy_dir / "registry" / "pom.xml",
            shared.dist_dir / "registry",
            progress=print,
        )
        service = RegistryService(settings, find_java(shared.java), app)
        super().__init__(service, settings, start_timeout_s=180.0)
        self.url = service.ccompat_url()


class DedicatedStack:
    """A broker and a registry of their own; `endpoints` for every client of the test."""

    def __init__(self, home: Path) -> None:
        settings = dedicated_settings(home)
        self.kafka = DedicatedKafka(settings)
        self.registry = DedicatedRegistry(settings)
        self.endpoints = StackEndpoints(self.kafka.bootstrap_servers, self.registry.url)

    def up(self) -> None:
        """Starts whichever is not running, both at once (the registry takes the longer)."""
        waiting = [s for s in (self.kafka, self.registry) if not s.running]
        for service in waiting:
            service.launch()
        for service in waiting:
            service.wait_ready()

    def down(self) -> None:
        for service in (self.registry, self.kafka):
            if service.running:
                service.stop()


@contextlib.contextmanager
def dedicated_kafka(home: Path, kafka_heap: str = "256m") -> Iterator[DedicatedKafka]:
    kafka = DedicatedKafka(dedicated_settings(home, kafka_heap))
    kafka.start()
    try:
        yield kafka
    finally:
        if kafka.running:
            kafka.stop()


@contextlib.contextmanager
def dedicated_stack(home: Path) -> Iterator[DedicatedStack]:
    stack = DedicatedStack(home)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
