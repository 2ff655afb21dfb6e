"""Broker outage: 503 with Retry-After while Kafka is away, and never a 200 for a record not stored.

Runs a second Kafka of its own (never the session's shared one, see
`outage_fixtures.py`) so it can be stopped and started again; the registry is
the shared one.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.localstack.dedicated import DedicatedKafka
from onoff_bridge.settings import TopicNames
from onoff_bridge.topics import ensure_topics, topic_specs
from schemas import SchemaName
from tests.integration.ingress_fixtures import (
    CDR_PATH,
    read_topic,
    records_by_request_id,
    running_apps,
    with_key,
)

DELIVERY_TIMEOUT_S = 2.0
RETRY_AFTER_S = 3


def _body(n: int) -> bytes:
    return b'{"id": "c-outage-%d", "eventName": "CDR", "callDuration": %d}' % (n, n)


def test_no_200_is_given_for_a_record_kafka_does_not_hold(
    dedicated_kafka: DedicatedKafka,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
) -> None:
    kafka = dedicated_kafka
    suffix = uuid.uuid4().hex[:10]
    topics = TopicNames(**{field: f"outage.{field}.{suffix}" for field in TopicNames.model_fields})
    ensure_topics(kafka.bootstrap_servers, topic_specs(topics, partitions=3))
    own = StackEndpoints(kafka.bootstrap_servers, endpoints.schema_registry_url)
    acknowledged: list[str] = []
    sent = 0

    def post() -> tuple[int, float, dict[str, str]]:
        nonlocal sent
        sent += 1
        started = time.monotonic()
        response = client.post(CDR_PATH, content=_body(sent), headers=with_key())
        elapsed = time.monotonic() - started
        if response.status_code == 200:
            assert response.json() == {}
            acknowledged.append(response.headers["x-request-id"])
        return response.status_code, elapsed, dict(response.headers)

    with running_apps(own, topics) as start:
        client = start(delivery_timeout_s=DELIVERY_TIMEOUT_S, retry_after_s=RETRY_AFTER_S)
        assert client.get("/readyz").status_code == 200
        assert [post()[0] for _ in range(3)] == [200, 200, 200]

        kafka.stop()
        for _ in range(3):
            status, elapsed, headers = post()
            assert status == 503
            assert headers["retry-after"] == str(RETRY_AFTER_S)
            assert elapsed < DELIVERY_TIMEOUT_S + 1
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "not ready"
        assert ready.json()["kafka"] is False
        assert ready.headers["retry-after"] == str(RETRY_AFTER_S)

        kafka.start()
        deadline = time.monotonic() + 60
        while True:
            status, elapsed, headers = post()
            if status == 200:
                break
            assert status == 503 and headers["retry-after"] == str(RETRY_AFTER_S)
            assert elapsed < DELIVERY_TIMEOUT_S + 1
            assert time.monotonic() < deadline, "the ingress did not recover after the restart"
        assert [post()[0] for _ in range(3)] == [200, 200, 200]
        assert client.get("/readyz").status_code == 200

    stored = records_by_request_id(
        registry,
        SchemaName.CALL_EVENT,
        topics.cdr_raw,
        read_topic(kafka.bootstrap_servers, topics.cdr_raw),
    )
    missing = [rid for rid in acknowledged if rid not in stored]
    assert not missing, f"answered 200 but not in {topics.cdr_raw}: {missing}"
    assert len(acknowledged) >= 7
