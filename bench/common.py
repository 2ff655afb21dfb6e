"""Shared pieces of the benchmarks: the local stack, child processes, results files."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from onoff_bridge.localstack import LocalStack, StackEndpoints, StackSettings
from onoff_bridge.settings import TopicNames
from onoff_bridge.topics import ensure_topics, topic_specs

RESULTS = Path(__file__).parent / "results"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def stack() -> StackEndpoints:
    """The broker and registry from the environment, else the local stack (started if needed)."""
    bootstrap = os.environ.get("ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS")
    registry = os.environ.get("ONOFF_BRIDGE_SCHEMA_REGISTRY_URL")
    if bootstrap and registry:
        return StackEndpoints(bootstrap, registry)
    endpoints, _ = LocalStack(StackSettings(), say).up()
    return endpoints


def bench_topics(endpoints: StackEndpoints, partitions: int = 6) -> TopicNames:
    suffix = uuid.uuid4().hex[:8]
    topics = TopicNames(**{f: f"bench.{f}.{suffix}" for f in TopicNames.model_fields})
    ensure_topics(endpoints.kafka_bootstrap_servers, topic_specs(topics, partitions))
    return topics


def topics_env(topics: TopicNames) -> dict[str, str]:
    return {f"ONOFF_BRIDGE_TOPICS__{k.upper()}": v for k, v in topics.model_dump().items()}


def worker_env(
    endpoints: StackEndpoints, topics: TopicNames, web_port: int, name: str, **extra: str
) -> dict[str, str]:
    """The environment of a benchmarked worker: its own group, port and state directory.

    Also creates the topics Faust keeps of its own for that group: workers never do.
    """
    from processors.settings import ProcessorSettings
    from processors.topology import processor_topics
    from schemas.topics import topic_partitions

    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    config = {"bootstrap.servers": endpoints.kafka_bootstrap_servers}
    settings = ProcessorSettings(
        kafka_bootstrap_servers=endpoints.kafka_bootstrap_servers,
        topics=topics,
        app_id_prefix=prefix,
        topic_partitions=topic_partitions(config, topics.calls),
    )
    ensure_topics(config, processor_topics(settings, [name]))
    return {
        **os.environ,
        "ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap_servers,
        "ONOFF_BRIDGE_SCHEMA_REGISTRY_URL": endpoints.schema_registry_url,
        "ONOFF_BRIDGE_APP_ID_PREFIX": prefix,
        "ONOFF_BRIDGE_WEB_PORT": str(web_port),
        "ONOFF_BRIDGE_LOG_LEVEL": "WARNING",
        "ONOFF_BRIDGE_DATA_DIR": tempfile.mkdtemp(prefix=f"bench-{name}-"),
        **topics_env(topics),
        **extra,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def child(
    command: list[str], env: dict[str, str], health_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command, env={**os.environ, **env})
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command} exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(health_url, timeout=1).status_code < 500:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command} did not answer {health_url}")
            time.sleep(0.2)
        yield process
    finally:
        stop(process, 30)


def stop(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM, then SIGKILL if the process has not ended within `timeout_s`."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def peak_rss_mb(pid: int) -> float:
    """The process's peak RSS in MB (VmHWM: since its exec, unlike getrusage's ru_maxrss)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "note": "Kafka, the registry, the load generator and the service share these cores",
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def save(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def require(program: str, hint: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise SystemExit(f"error: {program} not found; {hint}")
    return found
