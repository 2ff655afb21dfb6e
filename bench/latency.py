"""End-to-end latency: from the ingress's 200 to the call in `onoff.calls` and in the metrics.

Posts CDRs at a steady rate (BENCH_RATE per second for BENCH_DURATION_S) to a
real ingress, with one dedupe and one metrics worker running, and a consumer
reading the raw topic and both output topics. Every call has a user of its
own, so the first metrics record of that user is the update the call caused.

The times are the broker's: the benchmark's topics keep LogAppendTime, so each
record carries the moment Kafka appended it. The latency of a call is the
append time of its version in `onoff.calls` (or of its metrics record) minus
the append time of its delivery in `onoff.cdr.raw`. The ingress answers 200
once that append is acknowledged, a millisecond or two later, so this is at
most that much longer than "from the 200". Timing on the client instead
measured the load generator: one Python process posting 500 requests a second
on the machine's two shared cores answered its own requests hundreds of
milliseconds late (2026-12-03: a p50 of -304 ms).

Saves bench/results/latency-<time>.json: percentiles, and the distribution at
every 0.5 % for the report's chart.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

# Defined in private modules that the package does not re-export for type checkers.
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType

from bench.common import (
    bench_topics,
    child,
    free_port,
    machine,
    save,
    say,
    stack,
    topics_env,
    worker_env,
)
from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames

RATE = float(os.environ.get("BENCH_RATE", "500"))
DURATION_S = float(os.environ.get("BENCH_DURATION_S", "30"))
WAIT_S = 120.0
KEY = "bench-latency-key-0123456789"


def body(n: int, run: str) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return {
        "id": f"lat-{run}-{n}",
        "eventName": "CDR",
        "onoffUserEmail": f"user-{run}-{n}@bench.invalid",
        "callStarted": now,
        "callEnded": now,
        "callDuration": n % 600,
        "callDirection": "INBOUND" if n % 2 else "OUTBOUND",
        "callStatus": "ANSWERED" if n % 3 else "MISSED",
    }


def keep_append_times(endpoints: StackEndpoints, topics: list[str]) -> None:
    """Makes the broker stamp each record of these topics with the time it appended it."""
    admin = AdminClient({"bootstrap.servers": endpoints.kafka_bootstrap_servers})
    entry = ConfigEntry(
        "message.timestamp.type",
        "LogAppendTime",
        incremental_operation=AlterConfigOpType.SET,
    )
    resources = [ConfigResource(ResourceType.TOPIC, t, incremental_configs=[entry]) for t in topics]
    for future in admin.incremental_alter_configs(resources).values():
        future.result(30)


class Reader(threading.Thread):
    """Reads the three topics from the start: the first append time of each call id in the raw
    topic and in the calls, and of each user in the metrics."""

    def __init__(self, endpoints: StackEndpoints, topics: TopicNames) -> None:
        super().__init__(daemon=True)
        self.raw: dict[str, float] = {}
        self.calls: dict[str, float] = {}
        self.users: dict[str, float] = {}
        self.other_times = 0  # records without an append time: the set-up did not take
        self._topics = topics
        self._running = True
        self._consumer = Consumer(
            {
                "bootstrap.servers": endpoints.kafka_bootstrap_servers,
                "group.id": f"bench-latency-{uuid.uuid4().hex[:6]}",
                "enable.auto.commit": False,
            }
        )
        assignment = []
        for topic in (topics.cdr_raw, topics.calls, topics.user_call_metrics):
            metadata = self._consumer.list_topics(topic, timeout=10).topics[topic]
            assignment += [TopicPartition(topic, p, 0) for p in metadata.partitions]
        self._consumer.assign(assignment)

    def run(self) -> None:
        seen_by_topic = {
            self._topics.cdr_raw: self.raw,
            self._topics.calls: self.calls,
            self._topics.user_call_metrics: self.users,
        }
        while self._running:
            for message in self._consumer.consume(1000, 0.2):
                raw = message.key()
                if message.error() or raw is None:
                    continue
                kind, stamp = message.timestamp()
                if kind != TIMESTAMP_LOG_APPEND_TIME:
                    self.other_times += 1
                    continue
                topic = message.topic() or ""
                key = raw.decode()
                if topic == self._topics.user_call_metrics:
                    key = key.split("/", 1)[0]
                seen_by_topic[topic].setdefault(key, stamp / 1000)
        self._consumer.close()

    def stop(self) -> None:
        self._running = False


async def post_all(url: str, run: str) -> dict[str, float]:
    """Posts RATE calls per second for DURATION_S; the time each 200 came back, by call id."""
    answered: dict[str, float] = {}
    failures = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one(n: int) -> None:
            nonlocal failures
            payload = body(n, run)
            response = await client.post(url, json=payload, headers={"x-api-key": KEY})
            if response.status_code == 200:
                answered[payload["id"]] = time.time()
            else:
                failures += 1

        total = int(RATE * DURATION_S)
        started = time.monotonic()
        tasks = []
        for n in range(total):
            delay = started + n / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    if failures:
        say(f"  {failures} requests were not answered 200")
    return answered


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1], 1)}


def distribution(samples: list[float]) -> list[float]:
    ordered = sorted(samples)
    return [
        round(ordered[min(len(ordered) - 1, int(i / 200 * len(ordered)))], 1) for i in range(201)
    ]


def main() -> None:
    endpoints = stack()
    topics = bench_topics(endpoints)
    run = uuid.uuid4().hex[:6]
    keep_append_times(endpoints, [topics.cdr_raw, topics.calls, topics.user_call_metrics])
    ingress_port = free_port()
    ingress_env = {
        **os.environ,
        "ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap_servers,
        "ONOFF_BRIDGE_SCHEMA_REGISTRY_URL": endpoints.schema_registry_url,
        "ONOFF_BRIDGE_API_KEY": KEY,
        "ONOFF_BRIDGE_LOG_LEVEL": "WARNING",
        **topics_env(topics),
    }
    python = sys.executable
    dedupe_port, metrics_port = free_port(), free_port()
    say(f"ingress, dedupe and metrics workers; {RATE:g} calls/s for {DURATION_S:g} s")
    with (
        child(
            [python, "-m", "onoff_bridge", "ingress", "--port", str(ingress_port)],
            ingress_env,
            f"http://127.0.0.1:{ingress_port}/readyz",
        ),
        child(
            [python, "-m", "onoff_bridge", "worker", "dedupe"],
            worker_env(endpoints, topics, dedupe_port, "dedupe"),
            f"http://127.0.0.1:{dedupe_port}/healthz",
        ),
        child(
            [python, "-m", "onoff_bridge", "worker", "metrics"],
            worker_env(endpoints, topics, metrics_port, "metrics"),
            f"http://127.0.0.1:{metrics_port}/healthz",
        ),
    ):
        reader = Reader(endpoints, topics)
        reader.start()
        url = f"http://127.0.0.1:{ingress_port}/v1/onoff/cdr"
        answered = asyncio.run(post_all(url, run))
        say(f"  {len(answered)} answered 200; waiting for both topics")
        users = {f"user-{run}-{call.split('-')[-1]}@bench.invalid": call for call in answered}
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and (
            len(reader.calls.keys() & answered.keys()) < len(answered)
            or len(reader.users.keys() & users.keys()) < len(users)
        ):
            time.sleep(0.5)
        reader.stop()
        reader.join(10)
    if reader.other_times:
        say(f"  {reader.other_times} records had no append time: left out")
    stored = {c: reader.raw[c] for c in answered if c in reader.raw}
    to_calls = [(reader.calls[c] - t) * 1000 for c, t in stored.items() if c in reader.calls]
    to_metrics = [
        (reader.users[u] - stored[c]) * 1000
        for u, c in users.items()
        if u in reader.users and c in stored
    ]
    result = {
        "benchmark": "latency",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "rate_per_s": RATE,
        "duration_s": DURATION_S,
        "answered": len(answered),
        "clock": "the broker's append times: onoff.cdr.raw to onoff.calls and to the metrics",
        "seen_in_calls": len(to_calls),
        "seen_in_metrics": len(to_metrics),
        "to_calls_ms": percentiles(to_calls) if to_calls else None,
        "to_metrics_ms": percentiles(to_metrics) if to_metrics else None,
        "to_calls_distribution_ms": distribution(to_calls) if to_calls else [],
        "to_metrics_distribution_ms": distribution(to_metrics) if to_metrics else [],
    }
    path = save("latency", result)
    summary = {k: v for k, v in result.items() if not k.endswith("distribution_ms")}
    print(json.dumps(summary, indent=2))
    say(f"saved {path}")


if __name__ == "__main__":
    main()
