"""Who may write: 401 stores nothing, a too-large body stores nothing, rotated keys both work."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from schemas import SchemaName
from tests.conftest import sample_bytes
from tests.integration.ingress_fixtures import (
    CDR_PATH,
    PRIMARY_KEY,
    SECONDARY_KEY,
    SMS_PATH,
    AppFactory,
    read_topic,
    records_by_request_id,
    running_apps,
    topic_size,
    with_key,
)

MIB = 1024 * 1024


@pytest.fixture
def ingress_app(endpoints: StackEndpoints, topic_names: TopicNames) -> Iterator[AppFactory]:
    with running_apps(endpoints, topic_names) as start:
        yield start


def assert_nothing_stored(endpoints: StackEndpoints, topics: TopicNames) -> None:
    for topic in (topics.cdr_raw, topics.sms_raw, topics.deadletter):
        assert topic_size(endpoints.kafka_bootstrap_servers, topic) == 0, topic


REFUSED_HEADERS = {
    "no key": {},
    "wrong x-api-key": {"x-api-key": "not-" + PRIMARY_KEY},
    "wrong bearer": {"authorization": "Bearer not-" + PRIMARY_KEY},
    "empty x-api-key": {"x-api-key": ""},
    "bearer without token": {"authorization": "Bearer "},
    "key without Bearer": {"authorization": PRIMARY_KEY},
    "basic auth": {
        "authorization": "Basic " + base64.b64encode(b"onoff:" + PRIMARY_KEY.encode()).decode()
    },
    "basic with the bare key": {"authorization": "Basic " + PRIMARY_KEY},
    "token scheme": {"authorization": "Token " + PRIMARY_KEY},
    "key in another header": {"api-key": PRIMARY_KEY, "x-auth-token": PRIMARY_KEY},
    "key with a suffix": {"x-api-key": PRIMARY_KEY + "x"},
    "key prefix only": {"x-api-key": PRIMARY_KEY[:-1]},
}


@pytest.mark.parametrize("path", [CDR_PATH, SMS_PATH])
def test_a_request_without_a_valid_key_gets_401_and_stores_nothing(
    path: str,
    ingress_app: AppFactory,
    endpoints: StackEndpoints,
    topic_names: TopicNames,
) -> None:
    client = ingress_app()
    body = sample_bytes("sms-received.json" if path == SMS_PATH else "cdr-answered-inbound.json")
    for label, headers in REFUSED_HEADERS.items():
        response = client.post(
            path, content=body, headers={"content-type": "application/json", **headers}
        )
        assert response.status_code == 401, label
        assert response.headers["www-authenticate"].startswith("Bearer"), label
        assert PRIMARY_KEY not in response.text, label
    # Invalid bodies without a key are not quarantined either.
    for name in ("invalid-missing-id.json", "invalid-truncated.json.txt"):
        assert client.post(path, content=sample_bytes(name)).status_code == 401
    assert_nothing_stored(endpoints, topic_names)


def test_a_body_over_the_limit_gets_413_and_stores_nothing(
    ingress_app: AppFactory, endpoints: StackEndpoints, topic_names: TopicNames
) -> None:
    client = ingress_app()
    padding = "x" * MIB
    big = b'{"id": "c-big", "callNotes": "' + padding.encode() + b'"}'

    declared = client.post(CDR_PATH, content=big, headers=with_key())
    # Without Content-Length the limit must hold while streaming, too.
    streamed = client.post(
        CDR_PATH,
        content=iter([big[i : i + 65536] for i in range(0, len(big), 65536)]),
        headers=with_key(),
    )
    invalid = client.post(CDR_PATH, content=b"[" * MIB, headers=with_key())

    for response in (declared, streamed, invalid):
        assert response.status_code == 413
        assert "262144" in response.json()["error"]
    assert "content-length" not in streamed.request.headers
    assert_nothing_stored(endpoints, topic_names)


def test_the_body_limit_is_configurable_and_inclusive(
    ingress_app: AppFactory, endpoints: StackEndpoints, topic_names: TopicNames
) -> None:
    body = sample_bytes("recording.json")
    exact = ingress_app(max_body_bytes=len(body))
    assert exact.post(CDR_PATH, content=body, headers=with_key()).status_code == 200
    one_less = ingress_app(max_body_bytes=len(body) - 1)
    assert one_less.post(CDR_PATH, content=body, headers=with_key()).status_code == 413
    assert topic_size(endpoints.kafka_bootstrap_servers, topic_names.cdr_raw) == 1


def test_both_keys_work_during_a_rotation_and_each_record_names_its_key(
    ingress_app: AppFactory,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
) -> None:
    client = ingress_app()
    body = sample_bytes("cdr-missed-inbound.json")
    used = {
        "primary x-api-key": ("primary", {"x-api-key": PRIMARY_KEY}),
        "secondary x-api-key": ("secondary", {"x-api-key": SECONDARY_KEY}),
        "primary bearer": ("primary", {"authorization": f"Bearer {PRIMARY_KEY}"}),
        "secondary bearer": ("secondary", {"authorization": f"bearer  {SECONDARY_KEY} "}),
    }
    expected_names = {}
    for label, (name, headers) in used.items():
        response = client.post(CDR_PATH, content=body, headers=headers)
        assert (response.status_code, response.json()) == (200, {}), label
        expected_names[response.headers["x-request-id"]] = name

    records = records_by_request_id(
        registry,
        SchemaName.CALL_EVENT,
        topic_names.cdr_raw,
        read_topic(endpoints.kafka_bootstrap_servers, topic_names.cdr_raw),
    )
    assert {rid: r["ingest"]["apiKeyName"] for rid, r in records.items()} == expected_names


def test_an_open_ingress_accepts_anyone_and_names_no_key(
    ingress_app: AppFactory,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
) -> None:
    client = ingress_app(api_keys={}, allow_unauthenticated=True)
    response = client.post(CDR_PATH, content=sample_bytes("recording.json"))

    assert (response.status_code, response.json()) == (200, {})
    [record] = records_by_request_id(
        registry,
        SchemaName.CALL_EVENT,
        topic_names.cdr_raw,
        read_topic(endpoints.kafka_bootstrap_servers, topic_names.cdr_raw),
    ).values()
    assert record["ingest"]["apiKeyName"] is None
