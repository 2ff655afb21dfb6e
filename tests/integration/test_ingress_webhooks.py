"""Webhooks end to end: every sample body through the real app into real topics, and back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from ingress.webhooks import content_sha256
from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from schemas import SchemaName
from tests.conftest import sample, sample_bytes
from tests.integration.ingress_fixtures import (
    CDR_PATH,
    PRIMARY_KEY,
    SECONDARY_KEY,
    SMS_PATH,
    AppFactory,
    decode_values,
    read_topic,
    records_by_request_id,
    running_apps,
    topic_size,
    with_key,
)

CALL_SAMPLES = [
    "cdr-answered-inbound.json",
    "cdr-answered-inbound-update.json",
    "cdr-missed-inbound.json",
    "recording.json",
    "voicemail.json",
    "test-payload-guess.json",
]
CALL_FIELDS = [
    "eventName",
    "onoffUserName",
    "onoffUserEmail",
    "onoffUserNumber",
    "externalNumber",
    "externalName",
    "externalEmail",
    "callStarted",
    "callEnded",
    "callDuration",
    "callDirection",
    "callStatus",
    "callNotes",
    "voicemailUrl",
    "voicemailDuration",
    "callRecordingUrl",
    "tags",
]
SMS_FIELDS = [
    "eventName",
    "onoffUserName",
    "onoffUserEmail",
    "onoffUserNumber",
    "externalNumber",
    "externalName",
    "externalEmail",
    "date",
    "smsDirection",
    "body",
]
TIMESTAMPS = {"callStarted", "callEnded", "date"}
INVALID_DELIVERIES = [
    (CDR_PATH, "invalid-missing-id.json", ["id: required"]),
    (CDR_PATH, "invalid-wrong-types.json", ["callStarted:", "callDuration:", "tags:"]),
    (CDR_PATH, "invalid-truncated.json.txt", ["not valid JSON"]),
    (SMS_PATH, "invalid-missing-id.json", ["id: required"]),
    (SMS_PATH, "invalid-truncated.json.txt", ["not valid JSON"]),
]


@pytest.fixture
def ingress_app(endpoints: StackEndpoints, topic_names: TopicNames) -> Iterator[AppFactory]:
    with running_apps(endpoints, topic_names) as start:
        yield start


def expected_record(
    body: dict[str, Any], fields: list[str], ingest: dict[str, Any]
) -> dict[str, Any]:
    """What the topic must hold for `body`, derived from the sender's contract."""
    record: dict[str, Any] = {"id": str(body["id"])}
    for field in fields:
        value = body.get(field)
        if value is not None and field in TIMESTAMPS:
            value = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if value is not None and field == "tags":
            value = [{k: tag.get(k) for k in ("tagId", "tagName", "tagColor")} for tag in value]
        record[field] = value
    extra = {k: v for k, v in body.items() if k != "id" and k not in fields and v is not None}
    record["extraJson"] = (
        json.dumps(extra, sort_keys=True, separators=(",", ":")) if extra else None
    )
    record["ingest"] = ingest
    return record


def _assert_received_at(record: dict[str, Any], before: datetime, after: datetime) -> None:
    received = record["ingest"].pop("receivedAt")
    assert received.tzinfo is not None and received.utcoffset() == timedelta(0)
    # timestamp-millis truncates: allow the millisecond the clock was in before the request.
    assert before - timedelta(milliseconds=1) <= received <= after


@pytest.mark.parametrize("name", CALL_SAMPLES)
def test_a_call_sample_is_stored_as_sent(
    name: str,
    ingress_app: AppFactory,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
) -> None:
    client = ingress_app()
    body = sample_bytes(name)
    before = datetime.now(UTC)
    response = client.post(CDR_PATH, content=body, headers=with_key())
    after = datetime.now(UTC)

    assert response.status_code == 200
    assert response.json() == {}
    request_id = response.headers["x-request-id"]
    [message] = read_topic(endpoints.kafka_bootstrap_servers, topic_names.cdr_raw)
    [record] = decode_values(registry, SchemaName.CALL_EVENT, topic_names.cdr_raw, [message])
    sent = sample(name)
    assert message.key() == str(sent["id"]).encode()
    _assert_received_at(record, before, after)
    assert record == expected_record(
        sent,
        CALL_FIELDS,
        {
            "requestId": request_id,
            "contentSha256": content_sha256(json.loads(body)),
            "apiKeyName": "primary",
            "path": CDR_PATH,
        },
    )
    assert topic_size(endpoints.kafka_bootstrap_servers, topic_names.deadletter) == 0
    assert topic_size(endpoints.kafka_bootstrap_servers, topic_names.sms_raw) == 0


def test_sample_values_arrive_with_their_types(
    ingress_app: AppFactory,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
) -> None:
    """Spot checks written out by hand, independent of `expected_record`."""
    client = ingress_app()
    for name in ("cdr-answered-inbound.json", "test-payload-guess.json", "voicemail.json"):
        assert client.post(CDR_PATH, content=sample_bytes(name), headers=with_key()).json() == {}
    records = {
        r["id"]: r
        for r in decode_values(
            registry,
            SchemaName.CALL_EVENT,
            topic_names.cdr_raw,
            read_topic(endpoints.kafka_bootstrap_servers, topic_names.cdr_raw),
        )
    }
    answered = records["c-7f3a2b10-0001"]
    assert answered["callStarted"] == datetime(2026, 3, 2, 9, 15, 4, tzinfo=UTC)
    assert answered["callStarted"].utcoffset() == timedelta(0)
    assert answered["callEnded"] == datetime(2026, 3, 2, 9, 21, 40, tzinfo=UTC)
    assert answered["callDuration"] == 396
    assert answered["tags"] == [{"tagId": "t-0001", "tagName": "Billing", "tagColor": "#32A8FF"}]
    assert answered["extraJson"] is None
    guess = records["12345"]
    assert guess["extraJson"] == '{"extraFieldFromTheFuture":{"nested":true}}'
    assert guess["callDuration"] == 300
    voicemail = records["c-7f3a2b10-0004"]
    assert voicemail["tags"] is None and voicemail["callNotes"] is None
    assert voicemail["voicemailDuration"] == 31


def test_an_sms_sample_goes_to_the_sms_topic(
    ingress_app: AppFactory,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
) -> None:
    client = ingress_app()
    body = sample_bytes("sms-received.json")
    before = datetime.now(UTC)
    response = client.post(
        SMS_PATH, content=body, headers={"authorization": f"Bearer {SECONDARY_KEY}"}
    )
    after = datetime.now(UTC)

    assert (response.status_code, response.json()) == (200, {})
    [message] = read_topic(endpoints.kafka_bootstrap_servers, topic_names.sms_raw)
    [record] = decode_values(registry, SchemaName.SMS_EVENT, topic_names.sms_raw, [message])
    assert message.key() == b"s-5d1e9c44-0001"
    _assert_received_at(record, before, after)
    assert record == expected_record(
        sample("sms-received.json"),
        SMS_FIELDS,
        {
            "requestId": response.headers["x-request-id"],
            "contentSha256": content_sha256(json.loads(body)),
            "apiKeyName": "secondary",
            "path": SMS_PATH,
        },
    )
    assert record["date"] == datetime(2026, 3, 2, 9, 25, 12, tzinfo=UTC)
    assert topic_size(endpoints.kafka_bootstrap_servers, topic_names.cdr_raw) == 0


@pytest.mark.parametrize(("path", "name", "reason_parts"), INVALID_DELIVERIES)
def test_an_invalid_body_is_quarantined_with_its_exact_bytes(
    path: str,
    name: str,
    reason_parts: list[str],
    ingress_app: AppFactory,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
) -> None:
    client = ingress_app()
    body = sample_bytes(name)
    headers = with_key(
        **{"user-agent": "onoff-webhooks/1.0", "authorization": f"Bearer {SECONDARY_KEY}"}
    )
    response = client.post(path, content=body, headers=headers)

    assert response.status_code == 200
    answer = response.json()
    assert answer["status"] == "quarantined"
    for part in reason_parts:
        assert part in answer["reason"]
    request_id = response.headers["x-request-id"]
    [message] = read_topic(endpoints.kafka_bootstrap_servers, topic_names.deadletter)
    [rejected] = decode_values(
        registry, SchemaName.REJECTED_DELIVERY, topic_names.deadletter, [message]
    )
    assert message.key() == request_id.encode()
    assert rejected["body"] == body
    assert rejected["reason"] == answer["reason"]
    assert rejected["path"] == path
    assert rejected["requestId"] == request_id
    assert rejected["source"] == "ingress"
    assert rejected["apiKeyName"] == "primary"
    assert rejected["contentType"] == "application/json"
    assert rejected["headers"]["user-agent"] == "onoff-webhooks/1.0"
    assert rejected["headers"]["content-length"] == str(len(body))
    stored = {k.lower() for k in rejected["headers"]}
    assert not stored & {"x-api-key", "authorization", "cookie"}
    assert not any(PRIMARY_KEY in v or SECONDARY_KEY in v for v in rejected["headers"].values())
    for topic in (topic_names.cdr_raw, topic_names.sms_raw):
        assert topic_size(endpoints.kafka_bootstrap_servers, topic) == 0


def test_call_fields_posted_as_an_sms_are_kept_as_extras(
    ingress_app: AppFactory,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
) -> None:
    """An SMS checks only SMS fields: the wrong call fields are unknown data, not errors."""
    client = ingress_app()
    body = sample_bytes("invalid-wrong-types.json")
    response = client.post(SMS_PATH, content=body, headers=with_key())

    assert (response.status_code, response.json()) == (200, {})
    [record] = decode_values(
        registry,
        SchemaName.SMS_EVENT,
        topic_names.sms_raw,
        read_topic(endpoints.kafka_bootstrap_servers, topic_names.sms_raw),
    )
    assert record["id"] == "42"
    assert json.loads(record["extraJson"]) == {
        k: v for k, v in json.loads(body).items() if k not in ("id", "eventName", "onoffUserNumber")
    }


def test_every_problem_of_a_body_is_named_in_the_reason(
    ingress_app: AppFactory,
) -> None:
    client = ingress_app()
    response = client.post(
        CDR_PATH, content=sample_bytes("invalid-wrong-types.json"), headers=with_key()
    )
    reason = response.json()["reason"]
    assert [part.split(":")[0] for part in reason.split("; ")] == [
        "callStarted",
        "callDuration",
        "tags",
    ]


def test_quarantine_can_answer_422(
    ingress_app: AppFactory,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
) -> None:
    client = ingress_app(quarantine_status=422)
    body = sample_bytes("invalid-missing-id.json")
    response = client.post(CDR_PATH, content=body, headers=with_key())

    assert response.status_code == 422
    assert response.json() == {"status": "quarantined", "reason": "id: required"}
    [rejected] = decode_values(
        registry,
        SchemaName.REJECTED_DELIVERY,
        topic_names.deadletter,
        read_topic(endpoints.kafka_bootstrap_servers, topic_names.deadletter),
    )
    assert rejected["body"] == body
    # A valid body is still a plain 200.
    valid = client.post(CDR_PATH, content=sample_bytes("recording.json"), headers=with_key())
    assert (valid.status_code, valid.json()) == (200, {})


def test_a_repeated_body_is_stored_every_time(
    ingress_app: AppFactory,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
) -> None:
    client = ingress_app()
    body = sample_bytes("cdr-answered-inbound.json")
    responses = [client.post(CDR_PATH, content=body, headers=with_key()) for _ in range(5)]

    assert [(r.status_code, r.json()) for r in responses] == [(200, {})] * 5
    records = records_by_request_id(
        registry,
        SchemaName.CALL_EVENT,
        topic_names.cdr_raw,
        read_topic(endpoints.kafka_bootstrap_servers, topic_names.cdr_raw),
    )
    assert set(records) == {r.headers["x-request-id"] for r in responses}
    assert {r["ingest"]["contentSha256"] for r in records.values()} == {
        content_sha256(json.loads(body))
    }
    assert {r["id"] for r in records.values()} == {"c-7f3a2b10-0001"}


def test_a_given_request_id_is_kept_and_a_bad_one_replaced(
    ingress_app: AppFactory,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
) -> None:
    client = ingress_app()
    body = sample_bytes("recording.json")
    given = client.post(CDR_PATH, content=body, headers=with_key(**{"x-request-id": "onoff-1.a"}))
    bad = client.post(CDR_PATH, content=body, headers=with_key(**{"x-request-id": "a b\tc"}))

    assert given.headers["x-request-id"] == "onoff-1.a"
    assert bad.headers["x-request-id"] not in ("", "a b\tc")
    records = records_by_request_id(
        registry,
        SchemaName.CALL_EVENT,
        topic_names.cdr_raw,
        read_topic(endpoints.kafka_bootstrap_servers, topic_names.cdr_raw),
    )
    assert set(records) == {"onoff-1.a", bad.headers["x-request-id"]}


def test_a_numeric_id_is_stored_as_a_string_key(
    ingress_app: AppFactory,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
) -> None:
    client = ingress_app()
    response = client.post(
        CDR_PATH, content=b'{"id": 987654321, "eventName": "CDR"}', headers=with_key()
    )

    assert (response.status_code, response.json()) == (200, {})
    [message] = read_topic(endpoints.kafka_bootstrap_servers, topic_names.cdr_raw)
    [record] = decode_values(registry, SchemaName.CALL_EVENT, topic_names.cdr_raw, [message])
    assert message.key() == b"987654321"
    assert record["id"] == "987654321"


def _nested_text(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


BODIES_THE_ENCODER_CANNOT_TAKE = [
    (b'{"id": "deep-300", "extra": ' + _nested_text(300) + b"}", "cannot be stored as JSON"),
    (b'{"id": "deep-1000", "extra": ' + _nested_text(1000) + b"}", "cannot be stored as JSON"),
    (b'{"id": "deep-2000", "extra": ' + _nested_text(2000) + b"}", "not valid JSON"),
    (b'{"id": "long", "callDuration": 9223372036854775808}', "callDuration: integer out of"),
    (b'{"id": "float", "voicemailDuration": 1e300}', "voicemailDuration: integer out of"),
]


@pytest.mark.parametrize(("body", "reason_part"), BODIES_THE_ENCODER_CANNOT_TAKE)
def test_a_body_the_encoder_cannot_take_is_quarantined_not_answered_503(
    body: bytes,
    reason_part: str,
    ingress_app: AppFactory,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
) -> None:
    client = ingress_app()
    response = client.post(CDR_PATH, content=body, headers=with_key())

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "quarantined"
    assert reason_part in response.json()["reason"]
    [rejected] = decode_values(
        registry,
        SchemaName.REJECTED_DELIVERY,
        topic_names.deadletter,
        read_topic(endpoints.kafka_bootstrap_servers, topic_names.deadletter),
    )
    assert rejected["body"] == body
    assert reason_part in rejected["reason"]
    assert topic_size(endpoints.kafka_bootstrap_servers, topic_names.cdr_raw) == 0
