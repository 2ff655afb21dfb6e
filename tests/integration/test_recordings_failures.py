"""A long run of failing call versions: the worker's ack queues and memory stay flat.

Every version fails the same way a broken volume would make it fail: the
store's directory lies under a regular file, so the spool cannot be made and
`handle` raises. A failed version is never acked, so before issue 9 every
version read after it waited in the in-order ack queues for ever.
"""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from schemas import AvroCodec, SchemaName
from tests.integration.processor_fixtures import Worker, WorkerFactory
from tests.integration.recordings_fixtures import call_record, produce_calls

FAILURE = "cannot finish a call version"
BATCH = 2000


def gauge(worker: Worker, name: str) -> float:
    for line in worker.metrics().splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def rss_bytes(worker: Worker) -> int:
    for line in Path(f"/proc/{worker.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def wait_for_failures(worker: Worker, count: int, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (seen := worker.log.read_text(errors="replace").count(FAILURE)) < count:
        assert time.monotonic() < deadline, f"{seen} of {count} failures after {timeout_s}s"
        time.sleep(1.0)


def test_failing_versions_leave_the_ack_queues_and_memory_flat(
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
    workers: WorkerFactory,
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    calls = AvroCodec(registry, SchemaName.CALL, topic_names.calls)
    worker = workers.start(
        "recordings",
        ONOFF_BRIDGE_RECORDINGS__DIRECTORY=str(blocker / "store"),
        ONOFF_BRIDGE_RECORDINGS__ALLOW_LOOPBACK="true",
    )

    def produce(first: int) -> None:
        batch = [
            call_record(f"f-{n}", recordings=[f"http://127.0.0.1:9/f-{n}.mp3"])
            for n in range(first, first + BATCH)
        ]
        produce_calls(endpoints.kafka_bootstrap_servers, calls, batch)

    produce(0)
    wait_for_failures(worker, BATCH)
    warm = rss_bytes(worker)
    produce(BATCH)
    wait_for_failures(worker, 2 * BATCH)
    grown = rss_bytes(worker) - warm

    # Three partitions: each queue keeps its failed head and nothing behind it.
    assert gauge(worker, "onoff_recordings_queued_acks") <= 3
    assert gauge(worker, "onoff_recordings_pending_calls") == 0
    # Loose: allocator noise and log buffers, not 2000 more events kept alive.
    assert grown < 16 * 1024 * 1024, f"RSS grew {grown / 2**20:.1f} MiB over {BATCH} failures"
