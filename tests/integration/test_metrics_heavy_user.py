"""One user with tens of thousands of calls in one day, through the real metrics worker.

Before tallies, a window's record held every call's entry: with these 20,000
calls the day's record would be 1,126,358 bytes, past the producer's 1 MB limit
(issue 17 saw MessageSizeTooLargeError and a crash). Run against that code,
this test failed: each update also recomputed the window from all its entries,
and after 1,100 s the worker had not counted the day yet. Here 20,000 calls, a
few moved to another hour by a second version, are produced into the calls
topic; the day's record in the windows changelog must stay small (its size is
printed) and the figures must equal a recomputation.

The 100,000-call case of issue 17 runs in the pure core with the real
serialized sizes (tests/unit/processors/test_metrics_tally.py), and through
`make run` in `make soak`; here it would take minutes of a shared 2-core machine.
"""

from __future__ import annotations

import random
import time
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from processors.merge import new_call
from schemas import AvroCodec, SchemaName
from tests.integration.ingress_fixtures import read_topic
from tests.integration.processor_fixtures import WorkerFactory
from tests.integration.test_metrics_pipeline import DAY, WORKER_ENV, millis, produce
from tests.unit.processors.test_metrics_aggregation import recompute

CALLS = 20_000
USER = "heavy.user@example.com"


def versions(rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for n in range(CALLS):
        started = millis(DAY + timedelta(seconds=rng.randrange(23 * 3600)))
        status = rng.choice(["ANSWERED", "ANSWERED", "MISSED", "VOICEMAIL"])
        first = new_call(f"h-{n:06d}") | {
            "onoffUserEmail": USER,
            "callStarted": started,
            "callDirection": rng.choice(["INBOUND", "OUTBOUND"]),
            "callStatus": status,
            "callDuration": rng.randrange(3600),
            "voicemailUrls": ["https://v.example/1.mp3"] if status == "VOICEMAIL" else [],
            "version": 1,
            "deliveryCount": 1,
            "firstSeenAt": started,
            "lastUpdatedAt": started + timedelta(minutes=1),
        }
        out.append(first)
        if n % 100 == 0:  # moved an hour on, and shorter
            out.append(
                first
                | {
                    "version": 2,
                    "callStarted": started + timedelta(hours=1),
                    "callDuration": 3,
                    "lastUpdatedAt": started + timedelta(minutes=2),
                }
            )
    return out


@pytest.mark.timeout(1200)
def test_a_day_with_20000_calls_of_one_user_keeps_a_small_record_and_right_figures(
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
    workers: WorkerFactory,
) -> None:
    calls = AvroCodec(registry, SchemaName.CALL, topic_names.calls)
    metrics = AvroCodec(registry, SchemaName.USER_CALL_METRICS, topic_names.user_call_metrics)
    history = versions(random.Random(25))
    produce(endpoints, calls, history)
    expected = {k: v for k, v in recompute(history).items() if v["userKey"] == USER}
    day_key = f"{USER}/day/{DAY.isoformat()}"
    assert expected[day_key]["callsTotal"] == CALLS

    started = time.monotonic()
    worker = workers.start("metrics", wait=True, **WORKER_ENV)
    deadline = started + 1100
    latest: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        partitions = worker.health()["partitions"]
        calls_partitions = [p for p in partitions if p["topic"] == topic_names.calls]
        if len(calls_partitions) == 3 and all(p["lag"] == 0 for p in partitions):
            latest = {}
            for message in read_topic(endpoints.kafka_bootstrap_servers, metrics.topic, 30):
                latest[(message.key() or b"").decode()] = metrics.decode(message.value() or b"")
            if latest.get(day_key, {}).get("callsTotal") == CALLS:
                break
        assert worker.process.poll() is None, worker.tail()
        time.sleep(3)
    elapsed = time.monotonic() - started

    changelog = f"{workers.app_id_prefix}-metrics-metrics-windows-changelog"
    sizes = [
        len(message.value() or b"")
        for message in read_topic(endpoints.kafka_bootstrap_servers, changelog, 60)
        if (message.key() or b"").decode() == day_key
    ]
    print(
        f"\n{len(history):,} versions of {CALLS:,} calls counted in {elapsed:.0f} s; "
        f"the day's window record: {len(sizes):,} writes, at most {max(sizes)} bytes"
    )
    assert {k: v for k, v in latest.items() if v["callsTotal"]} == expected
    assert max(sizes) < 1024
    assert worker.process.poll() is None
