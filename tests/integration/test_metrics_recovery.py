"""A metrics worker restarted with 200,000 changelog records behind it is back in seconds.

Before the fix a metrics worker restored about 46 changelog records/s (issue 16):
20,000 records kept it from processing anything for minutes. With the fix 20,000
take a fraction of a second, too short to see "recovering" on /healthz reliably,
so the history here is ten times that. The worker
must restore them, say "recovering" with the records remaining on /healthz
while it does, and then count a new call within BOUND_S of its start.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from typing import Any

import httpx
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from schemas import AvroCodec, SchemaName
from tests.integration.processor_fixtures import WorkerFactory
from tests.integration.test_metrics_pipeline import (
    WORKER_ENV,
    generate_day,
    latest_metrics,
    produce,
)
from tests.unit.processors.test_metrics_aggregation import recompute

HISTORY = 200_000
# 200,000 records at the 46 records/s measured before the fix: over an hour.
BOUND_S = 60.0


def fill_changelogs(endpoints: StackEndpoints, app_id: str) -> None:
    """History entries without a partition field ("p"), so the expiry timer leaves them."""
    producer = Producer({"bootstrap.servers": endpoints.kafka_bootstrap_servers, "linger.ms": 20})
    tables = [(f"{app_id}-metrics-calls-changelog", 3), (f"{app_id}-metrics-windows-changelog", 4)]
    for n in range(HISTORY):
        topic, partitions = tables[n % 2]
        value = {"history": n, "figures": [n % 7, n % 11, n % 13]}
        while True:
            try:
                producer.produce(
                    topic,
                    key=f"history-{n}".encode(),
                    value=json.dumps(value).encode(),
                    partition=n % partitions,
                )
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.1)
        if n % 5000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def test_a_worker_with_200000_changelog_records_counts_a_new_call_within_the_bound(
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
    workers: WorkerFactory,
) -> None:
    calls = AvroCodec(registry, SchemaName.CALL, topic_names.calls)
    metrics = AvroCodec(registry, SchemaName.USER_CALL_METRICS, topic_names.user_call_metrics)
    first = workers.start("metrics", wait=True, **WORKER_ENV)
    first.stop()
    fill_changelogs(endpoints, f"{workers.app_id_prefix}-metrics")

    started = time.monotonic()
    second = workers.start("metrics", wait=False, **WORKER_ENV)
    deliveries = generate_day(random.Random(16), calls=1)
    produce(endpoints, calls, deliveries)
    expected = recompute(deliveries)
    seen_remaining: list[int] = []
    latest: dict[str, dict[str, Any]] = {}
    while time.monotonic() - started < BOUND_S:
        assert second.process.poll() is None, second.tail()
        with contextlib.suppress(httpx.HTTPError, ValueError):
            report = second.health()
            if report["status"] == "recovering":
                seen_remaining.append(report["recovery"]["changelog_records_remaining"])
            assert report["status"] != "stalled", report
            if report["status"] == "ok":
                latest = latest_metrics(endpoints, metrics)[1]
                if latest == expected:
                    break
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    assert latest == expected, f"no metrics for the new call {elapsed:.0f}s after the restart"
    assert any(remaining > 0 for remaining in seen_remaining), (
        f"/healthz never said 'recovering' with records remaining: {seen_remaining[:5]}"
    )
    print(f"restored {HISTORY} changelog records and counted a new call in {elapsed:.1f}s")
