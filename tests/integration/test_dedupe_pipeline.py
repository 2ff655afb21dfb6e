"""Dedupe through the real pipeline: ingress -> onoff.cdr.raw -> worker -> onoff.calls."""

from __future__ import annotations

import json
import time
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from schemas import AvroCodec, SchemaName
from tests.conftest import sample_bytes
from tests.integration.ingress_fixtures import CDR_PATH, read_topic, running_apps, with_key
from tests.integration.processor_fixtures import WorkerFactory


def read_calls(
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic: str,
    count: int,
    timeout_s: float = 60,
) -> list[dict[str, Any]]:
    codec = AvroCodec(registry, SchemaName.CALL, topic)
    deadline = time.monotonic() + timeout_s
    messages = read_topic(endpoints.kafka_bootstrap_servers, topic, timeout_s=5)
    while len(messages) < count and time.monotonic() < deadline:
        time.sleep(0.5)
        messages = read_topic(endpoints.kafka_bootstrap_servers, topic, timeout_s=5)
    return [codec.decode(m.value() or b"") for m in messages]


def test_retries_updates_and_a_recording_make_exactly_three_versions(
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
    workers: WorkerFactory,
) -> None:
    first = sample_bytes("cdr-answered-inbound.json")
    update = sample_bytes("cdr-answered-inbound-update.json")
    recording_body = json.loads(update) | {
        "eventName": "RECORDING",
        "callRecordingUrl": "https://recordings.example.com/calls/c-7f3a2b10-0001.mp3",
    }
    recording = json.dumps(recording_body).encode()
    worker = workers.start()
    with running_apps(endpoints, topic_names) as start:
        client = start()
        for body in (first, first, update, first, recording):
            assert client.post(CDR_PATH, content=body, headers=with_key()).status_code == 200

    # Every delivery finished (a version is handed to Kafka before its delivery is done),
    # so a wrong fourth version would be in the topic now: ask for one more than right.
    worker.wait_processed(5)
    calls = read_calls(endpoints, registry, topic_names.calls, count=4, timeout_s=5)

    assert [c["version"] for c in calls] == [1, 2, 3]
    assert {c["id"] for c in calls} == {"c-7f3a2b10-0001"}
    v1, v2, v3 = calls
    assert v1["callNotes"] == "Asked for the March invoice."
    assert [t["tagId"] for t in v1["tags"]] == ["t-0001"]
    assert v2["callNotes"] == "Asked for the March invoice. Sent it by email after the call."
    assert [t["tagName"] for t in v2["tags"]] == ["Billing", "Follow-up"]
    assert v2["eventKinds"] == ["CDR"] and v2["callRecordingUrls"] == []
    assert v3["eventKinds"] == ["CDR", "RECORDING"]
    assert v3["callRecordingUrls"] == [recording_body["callRecordingUrl"]]
    assert v3["callNotes"] == v2["callNotes"] and v3["tags"] == v2["tags"]
    assert (v1["deliveryCount"], v2["deliveryCount"], v3["deliveryCount"]) == (1, 2, 3)
    assert len(v3["deliveryHashes"]) == 3
    assert v3["onoffUserEmail"] == "ada.moreau@example.com"
    assert v3["callDuration"] == 396 and v3["callStatus"] == "ANSWERED"
    assert v1["firstSeenAt"] == v3["firstSeenAt"] <= v3["lastUpdatedAt"]
    assert (
        'onoff_processor_records_total{outcome="duplicate",processor="dedupe"} 2.0'
        in worker.metrics()
    )
