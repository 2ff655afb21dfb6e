"""The two services of the local stack: how each is prepared, started and probed."""

from __future__ import annotations

import base64
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Protocol

import httpx

from onoff_bridge.localstack.errors import FetchError, ServiceStartError
from onoff_bridge.localstack.settings import StackSettings


def new_cluster_id() -> str:
    """A random KRaft cluster id: a UUID in URL-safe base64 without padding, as Kafka writes it."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def cluster_id_argument(cluster_id: str) -> str:
    # One id in 64 starts with '-', which kafka-storage's parser takes for an option
    # when it stands alone ("argument --cluster-id/-t: expected one argument").
    return f"--cluster-id={cluster_id}"


class Service(Protocol):
    name: str
    ports: tuple[int, ...]

    def endpoint(self) -> str: ...

    def command(self) -> list[str]: ...

    def prepare(self) -> None: ...

    def ready(self) -> bool: ...


class KafkaService:
    """Apache Kafka in KRaft mode: one JVM that is both broker and controller."""

    name = "kafka"

    def __init__(self, settings: StackSettings, java: str, libs: Path) -> None:
        self._settings = settings
        self._java = java
        self._libs = libs
        self._data = settings.data_dir / "kafka"
        self._config = settings.run_dir / "kafka.properties"
        self.ports: tuple[int, ...] = (settings.kafka_port, settings.kafka_controller_port)

    def endpoint(self) -> str:
        return f"{self._settings.host}:{self._settings.kafka_port}"

    def prepare(self) -> None:
        s = self._settings
        self._config.parent.mkdir(parents=True, exist_ok=True)
        self._config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{s.host}:{s.kafka_controller_port}",
                    f"listeners=PLAINTEXT://{s.host}:{s.kafka_port},"
                    f"CONTROLLER://{s.host}:{s.kafka_controller_port}",
                    f"advertised.listeners=PLAINTEXT://{s.host}:{s.kafka_port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self._data.resolve()}",
                    "num.partitions=1",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=4",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.cleaner.dedupe.buffer.size=16777216",
                    "",
                ]
            )
        )
        if not (self._data / "meta.properties").exists():
            self._data.mkdir(parents=True, exist_ok=True)
            result = subprocess.run(
                [
                    *self._java_prefix(),
                    "kafka.tools.StorageTool",
                    "format",
                    cluster_id_argument(new_cluster_id()),
                    "--config",
                    str(self._config),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                said = (result.stderr.strip() or result.stdout.strip())[-800:]
                raise ServiceStartError(
                    f"formatting Kafka storage failed (exit {result.returncode}): {said}"
                )

    def command(self) -> list[str]:
        return [*self._java_prefix(), "kafka.Kafka", str(self._config)]

    def ready(self) -> bool:
        from confluent_kafka.admin import AdminClient

        if not port_open(self._settings.host, self._settings.kafka_port):
            return False
        admin = AdminClient({"bootstrap.servers": self.endpoint(), "log_level": 0})
        try:
            metadata = admin.list_topics(timeout=2)
        except Exception:
            return False
        return bool(metadata.brokers)

    def _java_prefix(self) -> list[str]:
        heap = self._settings.kafka_heap
        log_config = self._settings.deploy_dir / "kafka" / "log4j2.yaml"
        return [
            self._java,
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log_config.resolve()}",
            "-cp",
            f"{self._libs.resolve()}/*",
        ]


class RegistryService:
    """Apicurio Registry on an H2 file under var/data/registry, serving the Confluent API.

    The schemas must outlive a restart as the Kafka data does: records carry
    only a schema id, and an in-memory registry restarted hands out the same
    ids again for other schemas, so old records would decode wrongly or not at all.
    WRITE_DELAY=0: H2 otherwise writes a commit up to half a second later, and a
    registry killed in that window forgets a schema whose id is already in a record.
    """

    name = "registry"

    def __init__(self, settings: StackSettings, java: str, app: Path) -> None:
        self._settings = settings
        self._java = java
        self._app = app
        self.ports: tuple[int, ...] = (settings.registry_port,)

    def endpoint(self) -> str:
        return f"http://{self._settings.host}:{self._settings.registry_port}"

    def ccompat_url(self) -> str:
        return f"{self.endpoint()}/apis/ccompat/v7"

    def database(self) -> Path:
        return self._settings.data_dir / "registry" / "registry"

    def prepare(self) -> None:
        self._jar()
        self.database().parent.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        s = self._settings
        return [
            self._java,
            f"-Xmx{s.registry_heap}",
            f"-Dquarkus.http.host={s.host}",
            f"-Dquarkus.http.port={s.registry_port}",
            "-Dapicurio.storage.kind=sql",
            "-Dapicurio.storage.sql.kind=h2",
            f"-Dapicurio.datasource.url=jdbc:h2:file:{self.database().resolve()};DB_CLOSE_ON_EXIT=FALSE;WRITE_DELAY=0",
            "-Dquarkus.log.console.color=false",
            "-jar",
            str(self._jar().resolve()),
        ]

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.ccompat_url()}/subjects", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _jar(self) -> Path:
        # 3.0.x ships one runner jar; later lines use Quarkus's fast-jar layout.
        for candidate in [self._app / "quarkus-run.jar", *sorted(self._app.glob("*-runner.jar"))]:
            if candidate.exists():
                return candidate
        raise FetchError(f"no runnable jar in {self._app}; remove var/dist to fetch again")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
