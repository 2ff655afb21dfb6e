"""`make bench-recovery`: how fast a restarted metrics worker restores its tables.

Fills the metrics worker's two changelogs (`metrics-calls`, `metrics-windows`)
with a realistic history written straight to Kafka, starts the worker, and
times it from start until `/healthz` says "ok" (recovery done). Saves
bench/results/recovery-<time>.json with processor, records, records_per_s,
seconds_to_ready.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from confluent_kafka import Consumer, Producer, TopicPartition

from bench.common import bench_topics, free_port, machine, save, say, stack, worker_env


def fill_metrics_changelogs(bootstrap: str, prefix: str, records: int, partitions: int) -> None:
    """Half per-call records, half window records, spread over the partitions."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 50, "compression.type": "lz4"}
    )
    calls = f"{prefix}-metrics-metrics-calls-changelog"
    windows = f"{prefix}-metrics-metrics-windows-changelog"
    for i in range(records):
        if i % 2 == 0:
            key = f"call-{i:08d}"
            value: dict[str, Any] = {
                "user": f"user-{i % 997}",
                "window": "2026-03-01T00:00:00+00:00",
                "version": 1 + i % 5,
                "durationSeconds": i % 600,
                "outcome": "answered",
            }
            topic = calls
        else:
            key = f"user-{i % 997}|day|2026-03-{1 + i % 28:02d}"
            value = {"count": i % 50, "totalSeconds": i * 3 % 10_000, "maxSeconds": i % 600}
            topic = windows
        producer.produce(
            topic, key=key.encode(), value=json.dumps(value).encode(), partition=i % partitions
        )
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(60)


def fill_processed_source(
    bootstrap: str, topic: str, group: str, records: int, commit: bool = True
) -> None:
    """A source topic with history the group has already processed (committed at its end):
    as after any restart, its partitions are assigned, paused, and read only after recovery."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50})
    for i in range(records):
        producer.produce(topic, key=f"call-{i:08d}".encode(), value=b"processed-before")
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(60)
    if not commit:  # a backlog waiting for the worker, as after an outage
        return
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    ends = []
    for partition in metadata.partitions:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        ends.append(TopicPartition(topic, partition, high))
    consumer.commit(offsets=ends, asynchronous=False)
    consumer.close()


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}")
        try:
            report = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
        except (httpx.HTTPError, ValueError):
            report = {}
        if report.get("status") == "ok":
            return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"worker not ready after {timeout_s}s")


def bench_metrics(records: int, timeout_s: float, backlog: int = 0) -> dict[str, Any]:
    endpoints = stack()
    topics = bench_topics(endpoints)
    port = free_port()
    env = worker_env(endpoints, topics, port, "metrics")
    prefix = env["ONOFF_BRIDGE_APP_ID_PREFIX"]
    say(f"writing {records} changelog records")
    fill_metrics_changelogs(endpoints.kafka_bootstrap_servers, prefix, records, 6)
    fill_processed_source(
        endpoints.kafka_bootstrap_servers,
        topics.calls,
        f"{prefix}-metrics",
        records // 4,
        commit=backlog == 0,
    )
    say("starting the metrics worker")
    process = subprocess.Popen([sys.executable, "-m", "onoff_bridge", "worker", "metrics"], env=env)
    try:
        seconds = wait_ready(port, process, timeout_s)
    finally:
        process.terminate()
        process.wait(30)
    return {
        "processor": "metrics",
        "records": records,
        "records_per_s": round(records / seconds),
        "seconds_to_ready": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    results = [bench_metrics(args.records, args.timeout)]
    for r in results:  # one line per processor
        say(
            f"{r['processor']}: {r['records']} records in {r['seconds_to_ready']} s, "
            f"{r['records_per_s']} rec/s"
        )
        path = save(
            "recovery",
            {
                "benchmark": "recovery",
                **r,
                "date": datetime.now(UTC).isoformat(),
                "machine": machine(),
            },
        )
        say(f"saved {path}")


if __name__ == "__main__":
    main()
