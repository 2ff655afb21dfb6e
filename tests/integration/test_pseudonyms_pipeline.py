"""Pseudonyms end to end: the real ingress, dedupe and metrics workers with a key set.

Three calls (two share the user and the other party's number, written in
different formats) go through the real ingress; dedupe runs with
ONOFF_BRIDGE_PSEUDONYMIZE_KEY. No clear number, e-mail or name may appear in
onoff.calls or onoff.user-call-metrics, the same number must give the same
pseudonym in both calls (so joins work), equal to the HMAC a data team
computes from the clear value, and onoff.cdr.raw still holds what was sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from processors.pseudonyms import normalize_email, normalize_number, pseudonym
from schemas import SchemaName
from tests.integration.ingress_fixtures import (
    CDR_PATH,
    AppFactory,
    decode_values,
    read_topic,
    running_apps,
    with_key,
)
from tests.integration.processor_fixtures import WorkerFactory
from tests.integration.test_metrics_pipeline import WORKER_ENV

KEY = "pseudonym-test-key-6c1d0e9a77f24b0d"
USER = {
    "onoffUserName": "Zebulon Pseudoman",
    "onoffUserEmail": "Zebulon.Pseudoman@Example.test",
    "onoffUserNumber": "+15557720042",
}
OTHER = {
    "externalName": "Ottilie Pseudowoman",
    "externalEmail": "ottilie.pseudowoman@example.test",
}
CLEAR = ["Zebulon", "Pseudoman", "Ottilie", "Pseudowoman", "example.test", "5557720"]


def _ago(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def body(call_id: str, external_number: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": call_id,
        "eventName": "CDR",
        **USER,
        **OTHER,
        "externalNumber": external_number,
        # Recent, so inside the metrics retention.
        "callStarted": _ago(timedelta(minutes=20)),
        "callEnded": _ago(timedelta(minutes=18)),
        "callDuration": 120,
        "callDirection": "INBOUND",
        "callStatus": "ANSWERED",
        **fields,
    }


@pytest.fixture
def ingress_app(endpoints: StackEndpoints, topic_names: TopicNames) -> Iterator[AppFactory]:
    with running_apps(endpoints, topic_names) as start:
        yield start


def wait_for(read: Any, done: Any, timeout_s: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def test_calls_and_metrics_hold_pseudonyms_only_and_the_same_number_joins(
    endpoints: StackEndpoints,
    topic_names: TopicNames,
    registry: SchemaRegistryClient,
    ingress_app: AppFactory,
    workers: WorkerFactory,
) -> None:
    workers.start("dedupe", True, ONOFF_BRIDGE_PSEUDONYMIZE_KEY=KEY, **WORKER_ENV)
    workers.start("metrics", True, **WORKER_ENV)
    client = ingress_app()
    bodies = [
        body("ps-1", "+33 6 12 34 56 78"),
        body("ps-2", "0033612345678", callDirection="OUTBOUND"),
        body("ps-3", "+44 20 7946 0018", onoffUserEmail="  zebulon.pseudoman@example.TEST "),
    ]
    for each in bodies:
        answer = client.post(CDR_PATH, json=each, headers=with_key())
        assert answer.status_code == 200 and answer.json() == {}, answer.text

    servers = endpoints.kafka_bootstrap_servers

    def calls() -> dict[str, dict[str, Any]]:
        messages = read_topic(servers, topic_names.calls)
        values = decode_values(registry, SchemaName.CALL, topic_names.calls, messages)
        return {value["id"]: value for value in values}

    def metrics() -> list[Any]:
        return read_topic(servers, topic_names.user_call_metrics)

    found = wait_for(calls, lambda got: len(got) == 3)
    assert sorted(found) == ["ps-1", "ps-2", "ps-3"]
    # The metrics count all three calls in the user's hour (and day) window.
    metric_messages = wait_for(
        metrics,
        lambda got: any(
            v["callsTotal"] == 3
            for v in decode_values(
                registry, SchemaName.USER_CALL_METRICS, topic_names.user_call_metrics, got
            )
        ),
    )
    metric_values = decode_values(
        registry, SchemaName.USER_CALL_METRICS, topic_names.user_call_metrics, metric_messages
    )
    assert max(v["callsTotal"] for v in metric_values) == 3

    key = KEY.encode()
    user_email = pseudonym(key, normalize_email(USER["onoffUserEmail"]))
    assert user_email == pseudonym(key, "zebulon.pseudoman@example.test")
    french = pseudonym(key, normalize_number("+33 6 12 34 56 78"))
    # The same number, written two ways in two calls, is one pseudonym: joins work.
    assert found["ps-1"]["externalNumber"] == found["ps-2"]["externalNumber"] == french
    assert found["ps-3"]["externalNumber"] != french
    for call in found.values():
        assert call["onoffUserEmail"] == user_email
        assert call["onoffUserNumber"] == pseudonym(key, "+15557720042")
        assert call["externalEmail"] == pseudonym(key, "ottilie.pseudowoman@example.test")
        assert call["onoffUserName"] is None and call["externalName"] is None
    # The metrics' user key is the pseudonym, in the record and in its key.
    assert {v["userKey"] for v in metric_values} == {user_email}
    assert {(m.key() or b"").decode().split("/")[0] for m in metric_messages} == {user_email}

    # Not a single clear value in either topic's bytes, keys included.
    for topic in (topic_names.calls, topic_names.user_call_metrics):
        for message in read_topic(servers, topic):
            data = (message.key() or b"") + (message.value() or b"")
            for clear in [*CLEAR, "33612345678", "+15557720042", "2079460018"]:
                assert clear.lower().encode() not in data.lower(), (topic, clear)

    # onoff.cdr.raw keeps what the sender sent.
    raw = decode_values(
        registry,
        SchemaName.CALL_EVENT,
        topic_names.cdr_raw,
        read_topic(servers, topic_names.cdr_raw),
    )
    assert {r["externalNumber"] for r in raw} == {
        "+33 6 12 34 56 78",
        "0033612345678",
        "+44 20 7946 0018",
    }
    assert {r["onoffUserName"] for r in raw} == {USER["onoffUserName"]}
