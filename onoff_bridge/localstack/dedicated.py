"""A Kafka broker of one's own, beside the shared stack, that can be stopped and started again.

The outage tests and the spooling benchmark stop Kafka on purpose; stopping
the shared broker would pull it from under every other test and helper. This
runs one more single-node KRaft broker, in its own directory and on its own
ports, from the jars the shared stack already fetched.

`LocalStack.up` always starts the registry too (and would find the shared
registry's port taken), so the broker's `KafkaService` and `ManagedProcess`
are driven directly, as `LocalStack._ensure_running` drives them.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

from onoff_bridge.localstack.errors import ServiceStartError
from onoff_bridge.localstack.fetch import fetch_kafka
from onoff_bridge.localstack.process import ManagedProcess
from onoff_bridge.localstack.services import KafkaService
from onoff_bridge.localstack.settings import StackSettings
from onoff_bridge.localstack.toolchain import find_java, find_mvn


class DedicatedKafka:
    def __init__(
        self,
        home: Path,
        registry_port: int,
        say: Callable[[str], None] = print,
        heap: str = "256m",
    ) -> None:
        shared = StackSettings()
        kafka_port, controller_port = free_ports(2)
        self.settings = StackSettings(
            home=home,
            kafka_port=kafka_port,
            kafka_controller_port=controller_port,
            registry_port=registry_port,
            kafka_heap=heap,
        )
        # The jars the shared stack already fetched (fetching is a no-op once complete).
        libs = fetch_kafka(
            find_mvn(shared.mvn),
            shared.deploy_dir / "kafka" / "pom.xml",
            shared.dist_dir / "kafka",
            progress=say,
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
            if self.process.exited():
                raise ServiceStartError("the dedicated Kafka exited\n" + self.log_tail())
            if time.monotonic() > deadline:
                raise ServiceStartError("the dedicated Kafka did not start\n" + self.log_tail())
            time.sleep(0.25)

    def stop(self) -> None:
        """A clean stop (SIGTERM, then SIGKILL after 30 s)."""
        self.process.stop()

    def running(self) -> bool:
        return self.process.pid() is not None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.process.log_file.read_text().splitlines()[-lines:])
        except OSError:
            return ""


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
