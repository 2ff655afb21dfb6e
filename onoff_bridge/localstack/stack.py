"""Brings the local Kafka and registry up and down, idempotently."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from onoff_bridge.localstack.errors import PortInUseError, ServiceStartError
from onoff_bridge.localstack.fetch import fetch_kafka, fetch_registry
from onoff_bridge.localstack.process import ManagedProcess
from onoff_bridge.localstack.services import (
    KafkaService,
    RegistryService,
    Service,
    port_open,
)
from onoff_bridge.localstack.settings import StackSettings
from onoff_bridge.localstack.toolchain import find_java, find_mvn

Progress = Callable[[str], None]


@dataclass(frozen=True)
class StackEndpoints:
    kafka_bootstrap_servers: str
    schema_registry_url: str

    def as_env(self) -> dict[str, str]:
        return {
            "ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "ONOFF_BRIDGE_SCHEMA_REGISTRY_URL": self.schema_registry_url,
        }


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    endpoint: str
    ready: bool


class LocalStack:
    def __init__(self, settings: StackSettings, progress: Progress = print) -> None:
        self._settings = settings
        self._progress = progress

    def endpoints(self) -> StackEndpoints:
        s = self._settings
        return StackEndpoints(
            kafka_bootstrap_servers=f"{s.host}:{s.kafka_port}",
            schema_registry_url=f"http://{s.host}:{s.registry_port}/apis/ccompat/v7",
        )

    def up(self) -> tuple[StackEndpoints, list[str]]:
        """Starts whatever is not running yet; returns the endpoints and the names it started."""
        s = self._settings
        java = find_java(s.java)
        mvn = find_mvn(s.mvn)
        libs = fetch_kafka(
            mvn, s.deploy_dir / "kafka" / "pom.xml", s.dist_dir / "kafka", self._progress
        )
        app = fetch_registry(
            mvn, s.deploy_dir / "registry" / "pom.xml", s.dist_dir / "registry", self._progress
        )
        started: list[str] = []
        for service in (KafkaService(s, java, libs), RegistryService(s, java, app)):
            if self._ensure_running(service):
                started.append(service.name)
        endpoints = self.endpoints()
        self.write_env(endpoints.as_env())
        return endpoints, started

    def down(self, names: list[str] | None = None) -> list[str]:
        """Stops the stack's processes (the registry first); returns the names it stopped."""
        stopped = []
        for name in ("registry", "kafka"):
            if (names is None or name in names) and self._process(name).stop():
                stopped.append(name)
        return stopped

    def status(self) -> list[ServiceStatus]:
        statuses = []
        endpoints = self.endpoints()
        for name, endpoint in (
            ("kafka", endpoints.kafka_bootstrap_servers),
            ("registry", endpoints.schema_registry_url),
        ):
            pid = self._process(name).pid()
            host, _, port = endpoint.removeprefix("http://").partition("/")[0].rpartition(":")
            statuses.append(ServiceStatus(name, pid, endpoint, port_open(host, int(port))))
        return statuses

    def write_env(self, values: Mapping[str, str]) -> None:
        """Merges values into var/stack.env, a file that `source` understands."""
        env_file = self._settings.env_file
        current: dict[str, str] = {}
        if env_file.exists():
            for line in env_file.read_text().splitlines():
                key, sep, value = line.removeprefix("export ").partition("=")
                if sep:
                    current[key] = value
        current.update(values)
        env_file.parent.mkdir(parents=True, exist_ok=True)
        env_file.write_text("".join(f"export {k}={v}\n" for k, v in current.items()))

    def _process(self, name: str) -> ManagedProcess:
        return ManagedProcess(name, self._settings.run_dir, self._settings.log_dir / f"{name}.log")

    def _ensure_running(self, service: Service) -> bool:
        process = self._process(service.name)
        if process.pid() is not None:
            self._wait_ready(service, process)
            self._progress(f"{service.name}: already running at {service.endpoint()}")
            return False
        for port in service.ports:
            if port_open(self._settings.host, port):
                raise PortInUseError(
                    f"port {port} on {self._settings.host} is taken by another process; "
                    f"free it or choose another port (ONOFF_BRIDGE_STACK_* settings)"
                )
        service.prepare()
        pid = process.start(service.command())
        self._progress(f"{service.name}: starting (pid {pid}, log {process.log_file})")
        self._wait_ready(service, process)
        self._progress(f"{service.name}: ready at {service.endpoint()}")
        return True

    def _wait_ready(self, service: Service, process: ManagedProcess) -> None:
        started = time.monotonic()
        deadline = started + self._settings.start_timeout_s
        next_note = started + 10
        while not service.ready():
            now = time.monotonic()
            if process.exited():
                raise ServiceStartError(
                    f"{service.name} exited during start-up; see {process.log_file}:\n"
                    + _tail(process)
                )
            if now > deadline:
                process.stop()
                raise ServiceStartError(
                    f"{service.name} did not answer within {self._settings.start_timeout_s:.0f}s; "
                    f"see {process.log_file}"
                )
            if now > next_note:
                self._progress(f"{service.name}: still starting ({now - started:.0f}s)")
                next_note = now + 10
            time.sleep(0.25)


def _tail(process: ManagedProcess, lines: int = 15) -> str:
    try:
        return "\n".join(process.log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
