"""Processor workers as real child processes (`python -m onoff_bridge worker ...`).

A worker runs exactly as in production, so a test can SIGTERM or SIGKILL it
and start another; each worker gets its own web port and data directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from onoff_bridge.topics import ensure_topics
from processors.settings import ProcessorSettings
from processors.topology import NAMES, processor_topics
from schemas.topics import topic_partitions


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def provision_worker_topics(
    endpoints: StackEndpoints, topics: TopicNames, app_id_prefix: str, processor: str
) -> list[str]:
    """Creates the topics Faust keeps of its own for this app id (workers never do),
    with the partitions of the test's onoff.calls; returns the names it created."""
    config = {"bootstrap.servers": endpoints.kafka_bootstrap_servers}
    settings = ProcessorSettings(
        kafka_bootstrap_servers=endpoints.kafka_bootstrap_servers,
        topics=topics,
        app_id_prefix=app_id_prefix,
        topic_partitions=topic_partitions(config, topics.calls),
    )
    names = list(NAMES) if processor == "all" else [processor]
    specs = [spec for name in names for spec in processor_topics(settings, [name])]
    return ensure_topics(config, specs)


def worker_env(
    endpoints: StackEndpoints, topics: TopicNames, app_id_prefix: str, data_dir: Path, **extra: str
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ONOFF_BRIDGE_") and not k.startswith("PYTEST")
    }
    # Kept, so a fault test can be run with a Faust fix switched off (docs/faust.md).
    if "ONOFF_BRIDGE_FAUST_FIXES_OFF" in os.environ:
        env["ONOFF_BRIDGE_FAUST_FIXES_OFF"] = os.environ["ONOFF_BRIDGE_FAUST_FIXES_OFF"]
    env |= {
        "ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap_servers,
        "ONOFF_BRIDGE_SCHEMA_REGISTRY_URL": endpoints.schema_registry_url,
        "ONOFF_BRIDGE_APP_ID_PREFIX": app_id_prefix,
        "ONOFF_BRIDGE_DATA_DIR": str(data_dir),
        # The samples are from March 2026; keep them inside the retention.
        "ONOFF_BRIDGE_DEDUPE_RETENTION_DAYS": "36500",
        "ONOFF_BRIDGE_COMMIT_INTERVAL_S": "0.5",
        "ONOFF_BRIDGE_LOG_LEVEL": "WARNING",
    }
    for field, name in topics.model_dump().items():
        env[f"ONOFF_BRIDGE_TOPICS__{field.upper()}"] = name
    return env | extra


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    web_port: int
    log: Path

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/healthz"

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"worker exited with {self.process.returncode}:\n{self.tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.health_url, timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"worker not healthy after {timeout_s}s:\n{self.tail()}")

    def health(self) -> dict[str, Any]:
        response = httpx.get(self.health_url, timeout=2)
        report: dict[str, Any] = response.json()
        return report

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.web_port}/metrics", timeout=2).text

    def processed(self) -> float:
        """How many source records the worker has finished, whatever their outcome."""
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in self.metrics().splitlines()
            if line.startswith("onoff_processor_records_total{")
        )

    def wait_processed(self, count: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while (done := self.processed()) < count:
            assert time.monotonic() < deadline, f"{done} of {count} records processed"
            time.sleep(0.2)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class WorkerFactory:
    """Starts workers sharing one consumer group; stops them all at the end."""

    def __init__(self, endpoints: StackEndpoints, topics: TopicNames, home: Path) -> None:
        self.endpoints = endpoints
        self.topics = topics
        self.home = home
        self.app_id_prefix = f"test-{uuid.uuid4().hex[:8]}"
        self.workers: list[Worker] = []

    def start(self, processor: str = "dedupe", wait: bool = True, **env: str) -> Worker:
        index = len(self.workers)
        provision_worker_topics(
            self.endpoints,
            self.topics,
            env.get("ONOFF_BRIDGE_APP_ID_PREFIX", self.app_id_prefix),
            processor,
        )
        port = free_port()
        log = self.home / f"worker-{index}.log"
        environment = worker_env(
            self.endpoints,
            self.topics,
            self.app_id_prefix,
            self.home / f"data-{index}",
            ONOFF_BRIDGE_WEB_PORT=str(port),
            **env,
        )
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "onoff_bridge", "worker", processor],
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(processor, process, port, log)
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop(signal.SIGKILL if worker.process.poll() is None else signal.SIGTERM, 10)


@contextlib.contextmanager
def worker_factory(
    endpoints: StackEndpoints, topics: TopicNames, home: Path
) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(endpoints, topics, home)
    try:
        yield factory
    finally:
        factory.stop_all()
