"""Calls dated at the ends of the calendar go through the real pipeline without stopping it.

The ingress accepts any valid ISO-8601 date-time, so a sender can post a call
started in the year 9999 or the year 1. Before the fix, a call started on
9999-12-31 crashed the metrics worker (its day window ends past
`datetime.max`), and it crashed again on the same record at every restart.
Here the ingress, dedupe, recordings and metrics run as real workers; calls of
year 9999 and year 1 are posted, and more are produced straight into the calls
topic (as a replay or another producer could), then a normal call is posted:

- the normal call is counted, and every worker is still up;
- each call the metrics cannot place is in the dead-letter topic, with the
  partition and offset of its record on the calls topic, and counted as
  `unplaceable` on /metrics;
- dedupe emitted the year-9999 calls; it dead-letters the year-1 call as past
  its retention (its rule for any call that old);
- recordings stored the links of the extreme calls.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from processors.merge import new_call
from schemas import AvroCodec, SchemaName
from tests.integration.ingress_fixtures import read_topic, start_ingress
from tests.integration.processor_fixtures import Worker, WorkerFactory, free_port
from tests.integration.recordings_fixtures import AudioServer
from tests.integration.test_metrics_pipeline import WORKER_ENV, produce
from tests.integration.test_recordings_pipeline import recordings_env

KEY = "poison-dates-key"
USER = "poison.dates@example.test"
LAST_DAY = "9999-12-31T23:59:59Z"  # its hour and day windows end past datetime.max
LAST_DAY_MIDNIGHT = "9999-12-31T00:00:00+00:00"  # its day window does
FIRST_DAY = "0001-01-01T00:00:00Z"


def body(call_id: str, started: str, ended: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": call_id,
        "eventName": "CDR",
        "onoffUserEmail": USER,
        "onoffUserNumber": "+15550107777",
        "externalNumber": "+15550108888",
        "callStarted": started,
        "callEnded": ended,
        "callDuration": 42,
        "callDirection": "INBOUND",
        "callStatus": "ANSWERED",
        **fields,
    }


def call_record(call_id: str, started: datetime, link: str) -> dict[str, Any]:
    """A Call as dedupe writes it, produced straight into the calls topic."""
    now = datetime.now(UTC).replace(microsecond=0)
    return new_call(call_id) | {
        "version": 1,
        "onoffUserEmail": USER,
        "callStarted": started,
        "callEnded": started,
        "callDirection": "OUTBOUND",
        "callStatus": "ANSWERED",
        "callDuration": 7,
        "callRecordingUrls": [link],
        "eventKinds": ["RECORDING"],
        "deliveryCount": 1,
        "firstSeenAt": now,
        "lastUpdatedAt": now,
    }


def outcome_count(worker: Worker, processor: str, outcome: str) -> float:
    for line in worker.metrics().splitlines():
        if (
            line.startswith("onoff_processor_records_total{")
            and f'processor="{processor}"' in line
            and f'outcome="{outcome}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_until(condition: Any, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.5)


def test_calls_of_year_1_and_9999_are_dead_lettered_and_the_next_call_is_counted(
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
    workers: WorkerFactory,
    server: AudioServer,
    tmp_path: Path,
) -> None:
    bootstrap = endpoints.kafka_bootstrap_servers
    calls = AvroCodec(registry, SchemaName.CALL, topic_names.calls)
    metrics = AvroCodec(registry, SchemaName.USER_CALL_METRICS, topic_names.user_call_metrics)
    deadletters = AvroCodec(registry, SchemaName.REJECTED_DELIVERY, topic_names.deadletter)
    port = free_port()
    ingress = start_ingress(endpoints, topic_names, port, tmp_path / "ingress.log", KEY)
    try:
        dedupe = workers.start("dedupe", True)
        recordings = workers.start("recordings", True, **recordings_env(tmp_path / "store"))
        worker = workers.start("metrics", True, **WORKER_ENV)
        now = datetime.now(UTC)
        # Both normal calls start at one moment, so they share an hour and a day window.
        recent = (now - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
        posted = [
            body(
                "poison-9999",
                LAST_DAY,
                LAST_DAY,
                eventName="RECORDING",
                callRecordingUrl=server.url("/audio/poison-9999.mp3"),
            ),
            body("poison-9999-midnight", LAST_DAY_MIDNIGHT, LAST_DAY),
            # Dedupe refuses a call this old (past its retention): dead-lettered there.
            body("poison-0001", FIRST_DAY, FIRST_DAY),
            # A normal start with an extreme end: a normal call.
            body("ends-in-9999", recent, LAST_DAY),
        ]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for payload in posted:
                answer = client.post("/v1/onoff/cdr", json=payload, headers={"x-api-key": KEY})
                assert answer.status_code == 200, answer.text
            # Produced straight into the calls topic, bypassing dedupe.
            produce(
                endpoints,
                calls,
                [
                    call_record(
                        "direct-9999",
                        datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
                        server.url("/audio/direct-9999.mp3"),
                    ),
                    call_record(
                        "direct-0001",
                        datetime(1, 1, 1, tzinfo=UTC),
                        server.url("/audio/direct-0001.mp3"),
                    ),
                ],
            )
            # Then a normal call, after all of them on every partition's timeline.
            normal = body("normal-after", recent, recent)
            answer = client.post("/v1/onoff/cdr", json=normal, headers={"x-api-key": KEY})
            assert answer.status_code == 200, answer.text

        def counted() -> list[dict[str, Any]]:
            records = [
                metrics.decode(m.value() or b"")
                for m in read_topic(bootstrap, topic_names.user_call_metrics, timeout_s=5)
            ]
            return [r for r in records if r["userKey"] == USER and r["callsTotal"] == 2]

        # The normal call and the one that ends in 9999 share their windows.
        wait_until(lambda: counted(), "the normal calls are counted")

        # Each year-9999 call on the calls topic is dead-lettered with its partition and offset.
        def on_calls_topic(call_id: str) -> tuple[int, int]:
            for message in read_topic(bootstrap, topic_names.calls, timeout_s=5):
                if (message.key() or b"").decode() == call_id:
                    return int(message.partition() or 0), int(message.offset() or 0)
            raise AssertionError(f"{call_id} is not on the calls topic")

        def rejected(source: str) -> dict[tuple[str, int, int], dict[str, Any]]:
            found = {}
            for message in read_topic(bootstrap, topic_names.deadletter, timeout_s=5):
                record = deadletters.decode(message.value() or b"")
                if record["source"] == source:
                    key = (record["path"], record["sourcePartition"], record["sourceOffset"])
                    found[key] = record
            return found

        poisoned = ["poison-9999", "poison-9999-midnight", "direct-9999"]
        wait_until(lambda: len(rejected("metrics")) == 3, "three calls are dead-lettered")
        by_metrics = rejected("metrics")
        for call_id in poisoned:
            partition, offset = on_calls_topic(call_id)
            record = by_metrics.get((topic_names.calls, partition, offset))
            assert record is not None, f"{call_id} not dead-lettered at {partition}/{offset}"
            assert "cannot place" in record["reason"], record["reason"]
            assert calls.decode(record["body"])["id"] == call_id
        assert outcome_count(worker, "metrics", "unplaceable") == 3
        # The year-1 call straight on the calls topic is placed, and past the retention.
        assert outcome_count(worker, "metrics", "late") == 1

        # Dedupe emitted the year-9999 calls, and refused the year-1 one as past its retention.
        emitted = {
            (m.key() or b"").decode(): calls.decode(m.value() or b"")
            for m in read_topic(bootstrap, topic_names.calls, timeout_s=5)
        }
        assert emitted["poison-9999"]["callStarted"] == datetime(
            9999, 12, 31, 23, 59, 59, tzinfo=UTC
        )
        assert emitted["ends-in-9999"]["callEnded"] == datetime(
            9999, 12, 31, 23, 59, 59, tzinfo=UTC
        )
        assert "poison-0001" not in emitted
        by_dedupe = rejected("dedupe")
        assert [r["reason"] for r in by_dedupe.values()] == [
            "the call is past the dedupe retention"
        ]
        assert outcome_count(dedupe, "dedupe", "deadlettered") == 1

        # Recordings fetched the links of the extreme calls.
        for path in ("/audio/poison-9999.mp3", "/audio/direct-9999.mp3", "/audio/direct-0001.mp3"):
            server.wait_for(path, timeout_s=60)
        wait_until(
            lambda: len(read_topic(bootstrap, topic_names.recordings, timeout_s=5)) >= 3,
            "the recordings are reported",
        )
        for running in (dedupe, recordings, worker):
            assert running.process.poll() is None, f"{running.name} exited:\n{running.tail()}"
            assert running.health()["status"] == "ok"
    finally:
        ingress.terminate()
        ingress.wait(timeout=30)
