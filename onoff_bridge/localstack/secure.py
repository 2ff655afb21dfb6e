"""`onoff-bridge stack up --secure`: three SASL_SSL KRaft brokers, a registry with basic auth.

The production path on loopback, for the `cluster` tests: each broker is also a
controller (three JVMs, 512 MiB heaps), clients connect over SASL_SSL with
SCRAM-SHA-512 (the user is created by `kafka-storage format --add-scram`, so it
exists before the first broker starts), topics default to replication factor 3
with `min.insync.replicas=2`. Brokers replicate over a plaintext listener of
their own on loopback, which no client is told about. Apicurio runs behind an
HTTPS proxy that asks for basic auth (`registry_proxy`). The CA, the broker
certificate and the passwords are made at the first start, under `var/secure/`;
`var/secure/stack.env` holds every client variable (mode 0600: it has secrets).

Everything has its own folder and ports, so it runs beside the single-broker stack.
"""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from onoff_bridge.localstack.errors import PortInUseError, ServiceStartError
from onoff_bridge.localstack.fetch import fetch_kafka, fetch_registry
from onoff_bridge.localstack.process import ManagedProcess
from onoff_bridge.localstack.services import (
    RegistryService,
    cluster_id_argument,
    new_cluster_id,
    port_open,
)
from onoff_bridge.localstack.settings import _DEFAULT_DEPLOY_DIR, StackSettings
from onoff_bridge.localstack.tls import TlsFiles, make_certificates
from onoff_bridge.localstack.toolchain import find_java, find_mvn

Progress = Callable[[str], None]
BROKERS = 3
MECHANISM = "SCRAM-SHA-512"


class SecureStackSettings(BaseSettings):
    """Read from ONOFF_BRIDGE_SECURE_STACK_* variables."""

    model_config = SettingsConfigDict(
        env_prefix="ONOFF_BRIDGE_SECURE_STACK_", frozen=True, extra="ignore"
    )

    home: Path = Path("var/secure")
    # The Maven downloads the single-broker stack uses: fetched once for both.
    dist_dir: Path = Path("var/dist")
    deploy_dir: Path = _DEFAULT_DEPLOY_DIR
    host: str = "127.0.0.1"
    # Broker n (1..3) listens on first_client_port + n - 1 for clients, and on the
    # same offsets from first_internal_port (replication) and first_controller_port.
    first_client_port: int = 19092
    first_internal_port: int = 19192
    first_controller_port: int = 19292
    registry_port: int = 18082
    registry_proxy_port: int = 18081
    kafka_heap: str = "512m"
    registry_heap: str = "384m"
    user: str = "onoff-bridge"
    registry_user: str = "onoff-bridge"
    java: str = "java"
    mvn: str = "mvn"
    start_timeout_s: float = 180.0


@dataclass(frozen=True)
class SecureEndpoints:
    kafka_bootstrap_servers: str
    schema_registry_url: str
    ca_location: Path
    user: str
    password: SecretStr
    registry_user: str
    registry_password: SecretStr

    def as_env(self) -> dict[str, str]:
        """Every variable a client needs to use this cluster (secrets included)."""
        return {
            "ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "ONOFF_BRIDGE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "ONOFF_BRIDGE_KAFKA__SASL_MECHANISM": MECHANISM,
            "ONOFF_BRIDGE_KAFKA__SASL_USERNAME": self.user,
            "ONOFF_BRIDGE_KAFKA__SASL_PASSWORD": self.password.get_secret_value(),
            "ONOFF_BRIDGE_KAFKA__SSL_CA_LOCATION": str(self.ca_location),
            "ONOFF_BRIDGE_SCHEMA_REGISTRY_URL": self.schema_registry_url,
            "ONOFF_BRIDGE_SCHEMA_REGISTRY_BASIC_AUTH_USER": self.registry_user,
            "ONOFF_BRIDGE_SCHEMA_REGISTRY_BASIC_AUTH_PASSWORD": (
                self.registry_password.get_secret_value()
            ),
            "ONOFF_BRIDGE_SCHEMA_REGISTRY_CA_LOCATION": str(self.ca_location),
            "ONOFF_BRIDGE_TOPIC_REPLICATION_FACTOR": "3",
            "ONOFF_BRIDGE_TOPIC_MIN_INSYNC_REPLICAS": "2",
        }

    def kafka_config(self) -> dict[str, str]:
        return {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": MECHANISM,
            "sasl.username": self.user,
            "sasl.password": self.password.get_secret_value(),
            "ssl.ca.location": str(self.ca_location),
        }


class SecureStack:
    def __init__(self, settings: SecureStackSettings, progress: Progress = print) -> None:
        self._s = settings
        self._progress = progress
        self._run = settings.home / "run"
        self._log = settings.home / "log"
        self._data = settings.home / "data"

    # -- what it is --------------------------------------------------------------------
    def endpoints(self) -> SecureEndpoints:
        s = self._s
        secrets_ = self._secrets()
        servers = ",".join(f"{s.host}:{s.first_client_port + i}" for i in range(BROKERS))
        return SecureEndpoints(
            kafka_bootstrap_servers=servers,
            schema_registry_url=f"https://{s.host}:{s.registry_proxy_port}/apis/ccompat/v7",
            ca_location=(s.home / "tls" / "ca.pem").resolve(),
            user=s.user,
            password=SecretStr(secrets_["kafka"]),
            registry_user=s.registry_user,
            registry_password=SecretStr(secrets_["registry"]),
        )

    def process(self, name: str) -> ManagedProcess:
        return ManagedProcess(name, self._run, self._log / f"{name}.log")

    def broker_names(self) -> list[str]:
        return [f"kafka-{n}" for n in range(1, BROKERS + 1)]

    # -- up and down -------------------------------------------------------------------
    def up(self) -> tuple[SecureEndpoints, list[str]]:
        """Starts whatever is not running yet; returns the endpoints and the names it started."""
        s = self._s
        java = find_java(s.java)
        mvn = find_mvn(s.mvn)
        libs = fetch_kafka(
            mvn, s.deploy_dir / "kafka" / "pom.xml", s.dist_dir / "kafka", self._progress
        )
        app = fetch_registry(
            mvn, s.deploy_dir / "registry" / "pom.xml", s.dist_dir / "registry", self._progress
        )
        secrets_ = self._secrets()
        tls = make_certificates(s.home / "tls", s.host, secrets_["keystore"])
        started: list[str] = []
        brokers = [n for n in range(1, BROKERS + 1) if self.process(f"kafka-{n}").pid() is None]
        if brokers:
            self._check_ports_free(brokers)
            cluster_id = self._cluster_id()
            for n in brokers:
                self._prepare_broker(n, java, libs, tls, secrets_, cluster_id)
            for n in brokers:
                self.start_broker(n, java, libs)
                started.append(f"kafka-{n}")
        endpoints = self.endpoints()
        self._wait("kafka", lambda: self._kafka_ready(endpoints), self.broker_names())
        self._progress(f"kafka: {BROKERS} brokers ready at {endpoints.kafka_bootstrap_servers}")
        started += self._start_registry(java, app, tls, secrets_)
        self._wait(
            "registry", lambda: self._registry_ready(endpoints), ["registry", "registry-proxy"]
        )
        self._progress(f"registry: ready at {endpoints.schema_registry_url} (basic auth)")
        env_file = s.home / "stack.env"
        env_file.touch(mode=0o600)
        env_file.write_text("".join(f"export {k}={v}\n" for k, v in endpoints.as_env().items()))
        return endpoints, started

    def down(self, names: list[str] | None = None) -> list[str]:
        stopped = []
        for name in ("registry-proxy", "registry", *reversed(self.broker_names())):
            if (names is None or name in names) and self.process(name).stop():
                stopped.append(name)
        return stopped

    def status(self) -> list[tuple[str, int | None]]:
        names = [*self.broker_names(), "registry", "registry-proxy"]
        return [(name, self.process(name).pid()) for name in names]

    def start_broker(self, n: int, java: str | None = None, libs: Path | None = None) -> int:
        """Starts broker n (already formatted by `up`); the tests use it after a kill."""
        java = java or find_java(self._s.java)
        libs = libs or self._s.dist_dir / "kafka" / "libs"
        pid = self.process(f"kafka-{n}").start(self.broker_command(n, java, libs))
        self._progress(f"kafka-{n}: starting (pid {pid})")
        return pid

    def wait_brokers(self) -> None:
        """Until every broker is back in the cluster's metadata."""
        endpoints = self.endpoints()
        self._wait("kafka", lambda: self._kafka_ready(endpoints), self.broker_names())

    def broker_command(self, n: int, java: str, libs: Path) -> list[str]:
        heap = self._s.kafka_heap
        log_config = (self._s.deploy_dir / "kafka" / "log4j2.yaml").resolve()
        return [
            java,
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log_config}",
            "-cp",
            f"{libs.resolve()}/*",
            "kafka.Kafka",
            str(self._config_file(n).resolve()),
        ]

    # -- the pieces --------------------------------------------------------------------
    def _secrets(self) -> dict[str, str]:
        """Passwords made at the first start and kept (0600), so a restart finds the same."""
        path = self._s.home / "secrets.json"
        if path.exists():
            values: dict[str, str] = json.loads(path.read_text())
            return values
        values = {key: secrets.token_urlsafe(18) for key in ("kafka", "registry", "keystore")}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(values))
        return values

    def _cluster_id(self) -> str:
        path = self._data / "cluster-id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new_cluster_id())
        return path.read_text().strip()

    def _config_file(self, n: int) -> Path:
        return self._run / f"kafka-{n}.properties"

    def _check_ports_free(self, brokers: list[int]) -> None:
        s = self._s
        for n in brokers:
            for first in (s.first_client_port, s.first_internal_port, s.first_controller_port):
                if port_open(s.host, first + n - 1):
                    raise PortInUseError(
                        f"port {first + n - 1} on {s.host} is taken by another process; "
                        "free it or choose other ports (ONOFF_BRIDGE_SECURE_STACK_*)"
                    )

    def _prepare_broker(
        self,
        n: int,
        java: str,
        libs: Path,
        tls: TlsFiles,
        secrets_: dict[str, str],
        cluster_id: str,
    ) -> None:
        s = self._s
        data = self._data / f"kafka-{n}"
        voters = ",".join(
            f"{i}@{s.host}:{s.first_controller_port + i - 1}" for i in range(1, BROKERS + 1)
        )
        client, internal = s.first_client_port + n - 1, s.first_internal_port + n - 1
        controller = s.first_controller_port + n - 1
        lines = [
            "process.roles=broker,controller",
            f"node.id={n}",
            f"controller.quorum.voters={voters}",
            f"listeners=SASL_SSL://{s.host}:{client},INTERNAL://{s.host}:{internal},"
            f"CONTROLLER://{s.host}:{controller}",
            f"advertised.listeners=SASL_SSL://{s.host}:{client},INTERNAL://{s.host}:{internal}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=INTERNAL",
            # Replication and the KRaft quorum run over TLS too, as on a production cluster;
            # brokers authenticate each other's certificate against the stack's CA.
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL",
            f"sasl.enabled.mechanisms={MECHANISM}",
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.location={tls.keystore.resolve()}",
            f"ssl.keystore.password={secrets_['keystore']}",
            f"ssl.key.password={secrets_['keystore']}",
            "ssl.client.auth=none",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={tls.ca.resolve()}",
            f"log.dirs={data.resolve()}",
            "num.partitions=1",
            "default.replication.factor=3",
            "min.insync.replicas=2",
            "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=3",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=3",
            "transaction.state.log.min.isr=2",
            "transaction.state.log.num.partitions=4",
            "share.coordinator.state.topic.replication.factor=3",
            "share.coordinator.state.topic.min.isr=2",
            "group.initial.rebalance.delay.ms=0",
            "log.cleaner.dedupe.buffer.size=16777216",
            # A broker killed and restarted is back in the ISR within seconds on loopback.
            "replica.lag.time.max.ms=10000",
            "",
        ]
        config = self._config_file(n)
        config.parent.mkdir(parents=True, exist_ok=True)
        config.touch(mode=0o600)  # holds the keystore password
        config.write_text("\n".join(lines))
        if (data / "meta.properties").exists():
            return
        data.mkdir(parents=True, exist_ok=True)
        scram = f"{MECHANISM}=[name={s.user},password={secrets_['kafka']}]"
        result = subprocess.run(
            [
                java,
                "-cp",
                f"{libs.resolve()}/*",
                "kafka.tools.StorageTool",
                "format",
                cluster_id_argument(cluster_id),
                "--config",
                str(config),
                "--add-scram",
                scram,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).replace(secrets_["kafka"], "***")
            raise ServiceStartError(f"formatting kafka-{n} failed: {output[-600:]}")

    def _start_registry(
        self, java: str, app: Path, tls: TlsFiles, secrets_: dict[str, str]
    ) -> list[str]:
        s = self._s
        started = []
        registry = RegistryService(
            StackSettings(
                home=s.home,
                host=s.host,
                registry_port=s.registry_port,
                registry_heap=s.registry_heap,
            ),
            java,
            app,
        )
        if self.process("registry").pid() is None:
            for port in (s.registry_port, s.registry_proxy_port):
                if port_open(s.host, port):
                    raise PortInUseError(f"port {port} on {s.host} is taken by another process")
            pid = self.process("registry").start(registry.command())
            self._progress(f"registry: starting Apicurio (pid {pid})")
            started.append("registry")
        if self.process("registry-proxy").pid() is None:
            config = s.home / "run" / "registry-proxy.json"
            config.parent.mkdir(parents=True, exist_ok=True)
            config.touch(mode=0o600)
            config.write_text(
                json.dumps(
                    {
                        "upstream": registry.endpoint(),
                        "user": s.registry_user,
                        "password": secrets_["registry"],
                        "host": s.host,
                        "port": s.registry_proxy_port,
                        "certificate": str(tls.certificate.resolve()),
                        "key": str(tls.key.resolve()),
                    }
                )
            )
            command = [sys.executable, "-m", "onoff_bridge.localstack.registry_proxy", str(config)]
            pid = self.process("registry-proxy").start(command)
            self._progress(f"registry-proxy: starting (pid {pid})")
            started.append("registry-proxy")
        return started

    def _kafka_ready(self, endpoints: SecureEndpoints) -> bool:
        from confluent_kafka.admin import AdminClient

        s = self._s
        if not all(port_open(s.host, s.first_client_port + i) for i in range(BROKERS)):
            return False
        admin = AdminClient({**endpoints.kafka_config(), "log_level": 0})
        try:
            return len(admin.list_topics(timeout=3).brokers) == BROKERS
        except Exception:
            return False

    def _registry_ready(self, endpoints: SecureEndpoints) -> bool:
        import httpx

        try:
            response = httpx.get(
                f"{endpoints.schema_registry_url}/subjects",
                auth=(endpoints.registry_user, endpoints.registry_password.get_secret_value()),
                verify=ssl.create_default_context(cafile=str(endpoints.ca_location)),
                timeout=3,
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _wait(self, what: str, ready: Callable[[], bool], names: list[str]) -> None:
        started = time.monotonic()
        deadline = started + self._s.start_timeout_s
        next_note = started + 15
        while not ready():
            now = time.monotonic()
            for name in names:
                process = self.process(name)
                if process.exited():
                    raise ServiceStartError(
                        f"{name} exited during start-up; see {process.log_file}:\n"
                        + _tail(process.log_file)
                    )
            if now > deadline:
                raise ServiceStartError(
                    f"{what} did not answer within {self._s.start_timeout_s:.0f}s; see {self._log}"
                )
            if now > next_note:
                self._progress(f"{what}: still starting ({now - started:.0f}s)")
                next_note = now + 15
            time.sleep(0.5)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
