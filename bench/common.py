"""Shared pieces of the benchmarks: the local stack, child processes, results files."""

from __future__ import annotations

import atexit
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
    """The broker and registry from the environment, else the local stack (started if needed).

    The topics the benchmark makes there are deleted when it exits (see `_clean_up_topics`).
    """
    bootstrap = os.environ.get("ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS")
    registry = os.environ.get("ONOFF_BRIDGE_SCHEMA_REGISTRY_URL")
    if bootstrap and registry:
        endpoints = StackEndpoints(bootstrap, registry)
    else:
        endpoints, _ = LocalStack(StackSettings(), say).up()
    _clean_up_topics(endpoints.kafka_bootstrap_servers)
    return endpoints


# Unique parts of the names of the topics this run makes (see `own_topics`).
_OWN_TOKENS: set[str] = set()
_cleaning: set[str] = set()


def own_topics(token: str) -> str:
    """Marks `token`, a unique part of topic names this run makes, as this run's: every
    topic whose name holds it is deleted when the run exits. Returns it."""
    _OWN_TOKENS.add(token)
    return token


def _clean_up_topics(bootstrap: str) -> None:
    """At exit, deletes the topics this run made (their names hold an `own_topics` token).

    Every run makes topics of its own (unique names, the workers' internal topics, the
    quix-streams peer's changelogs), and a day of runs had left about a thousand on the
    local stack, which slowed its restarts and its latency tail. Only this run's are
    deleted, so runs sharing a stack leave each other's alone. BENCH_KEEP_TOPICS=1
    keeps them, to look at a run's output.
    """
    if os.environ.get("BENCH_KEEP_TOPICS") == "1" or bootstrap in _cleaning:
        return
    _cleaning.add(bootstrap)

    def delete() -> None:
        from confluent_kafka.admin import AdminClient

        try:
            admin = AdminClient({"bootstrap.servers": bootstrap})
            made = sorted(
                name
                for name in admin.list_topics(timeout=15).topics
                if any(token in name for token in _OWN_TOKENS)
            )
            if made:
                for future in admin.delete_topics(made, operation_timeout=30).values():
                    future.result()
                say(
                    f"deleted the {len(made)} topics this run made (BENCH_KEEP_TOPICS=1 keeps them)"
                )
        except Exception as exc:  # the results are saved already; the stack may be down
            say(f"could not delete this run's topics: {exc}")

    atexit.register(delete)


def bench_topics(endpoints: StackEndpoints, partitions: int = 6) -> TopicNames:
    suffix = own_topics(uuid.uuid4().hex[:8])
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

    prefix = own_topics(f"bench-{uuid.uuid4().hex[:6]}")
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
