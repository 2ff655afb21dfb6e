"""Schemathesis against the app's own /openapi.json: no 5xx, every answer documented, and
every 200 backed by a record (stored or quarantined) in a real topic."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from confluent_kafka.schema_registry import SchemaRegistryClient
from hypothesis import HealthCheck, assume, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation.case import Case
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema
from starlette.testclient import TestClient

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from schemas import SchemaName
from tests.integration.ingress_fixtures import (
    CDR_PATH,
    PRIMARY_KEY,
    SECONDARY_KEY,
    SMS_PATH,
    read_topic,
    records_by_request_id,
    running_apps,
    topic_size,
)

MAX_EXAMPLES = 50
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
WEBHOOKS = {CDR_PATH: SchemaName.CALL_EVENT, SMS_PATH: SchemaName.SMS_EVENT}
# Set by the HTTP client itself; a generated copy would be sent twice.
_TRANSPORT_HEADERS = {"content-length", "host", "transfer-encoding"}


@pytest.fixture
def client(endpoints: StackEndpoints, topic_names: TopicNames) -> Iterator[TestClient]:
    with running_apps(endpoints, topic_names) as start:
        yield start()


@pytest.fixture
def schema(client: TestClient) -> OpenApiSchema:
    document = client.get("/openapi.json")
    assert document.status_code == 200
    loaded = schemathesis.openapi.from_dict(document.json())
    assert isinstance(loaded, OpenApiSchema)
    return loaded


def send(client: TestClient, case: Case[Any], headers: dict[str, str] | None) -> Any:
    """Sends a case through the app's own TestClient (so its lifespan is the one that runs).

    Returns the TestClient's response (httpx's or httpx2's, whichever Starlette picked).
    """
    kwargs: dict[str, Any] = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    content: bytes | None = None
    if "json" in kwargs:
        content = json.dumps(kwargs["json"]).encode()  # as `requests` would: ASCII-escaped
    elif isinstance(kwargs.get("data"), str):
        content = kwargs["data"].encode()
    elif kwargs.get("data") is not None:
        content = bytes(kwargs["data"])
    try:
        wire_headers = [
            (name.encode("latin-1"), str(value).encode("latin-1"))
            for name, value in kwargs["headers"].items()
            if name.lower() not in _TRANSPORT_HEADERS
        ]
    except UnicodeEncodeError:
        assume(False)  # no HTTP client can send it
        raise
    return client.request(
        kwargs["method"],
        kwargs["url"],
        params=kwargs["params"],
        headers=wire_headers,
        content=content,
    )


def operations(schema: OpenApiSchema) -> list[APIOperation[Any, Any, Any, Any]]:
    found = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        found.append(result.ok())
    return found


def webhook_operations(schema: OpenApiSchema) -> list[APIOperation[Any, Any, Any, Any]]:
    return [op for op in operations(schema) if op.path in WEBHOOKS]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_webhooks_with_a_key_get_documented_answers_and_are_all_kept(
    mode: GenerationMode,
    client: TestClient,
    schema: OpenApiSchema,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
) -> None:
    stored: dict[str, set[str]] = {path: set() for path in WEBHOOKS}
    quarantined: dict[str, str] = {}
    statuses: Counter[tuple[str, int]] = Counter()
    for operation in webhook_operations(schema):

        @settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: Case[Any]) -> None:
            response = send(client, case, {"x-api-key": PRIMARY_KEY})
            statuses[(case.operation.path, response.status_code)] += 1
            case.validate_response(response, checks=CHECKS)
            assert response.status_code == 200
            request_id = response.headers["x-request-id"]
            if response.json() == {}:
                stored[case.operation.path].add(request_id)
            else:
                assert response.json()["status"] == "quarantined"
                quarantined[request_id] = case.operation.path

        check()

    assert {path for path, _ in statuses} == set(WEBHOOKS)
    for path, name in WEBHOOKS.items():
        topic = topic_names.cdr_raw if path == CDR_PATH else topic_names.sms_raw
        records = records_by_request_id(
            registry, name, topic, read_topic(endpoints.kafka_bootstrap_servers, topic)
        )
        assert stored[path] <= set(records), f"200 {{}} without a record in {topic}"
        assert {r["ingest"]["path"] for r in records.values()} <= {path}
    rejected = records_by_request_id(
        registry,
        SchemaName.REJECTED_DELIVERY,
        topic_names.deadletter,
        read_topic(endpoints.kafka_bootstrap_servers, topic_names.deadletter),
        id_of=lambda record: str(record["requestId"]),
    )
    assert set(quarantined) <= set(rejected), "quarantined without a dead-letter record"
    for request_id, path in quarantined.items():
        assert rejected[request_id]["path"] == path
    if mode is GenerationMode.POSITIVE:
        assert sum(len(ids) for ids in stored.values()) > 0
    else:
        assert quarantined, "negative bodies never reached the dead-letter topic"


def test_fuzzed_probes_get_documented_answers(client: TestClient, schema: OpenApiSchema) -> None:
    probes = [op for op in operations(schema) if op.path not in WEBHOOKS]
    assert {op.path for op in probes} == {"/healthz", "/readyz", "/metrics"}
    for operation in probes:

        @settings(max_examples=5, derandomize=True, database=None, deadline=None)
        @given(case=operation.as_strategy())
        def check(case: Case[Any]) -> None:
            response = send(client, case, None)
            case.validate_response(response, checks=CHECKS)
            assert response.status_code == 200

        check()


def test_fuzzed_webhooks_without_a_key_only_get_401(
    client: TestClient,
    schema: OpenApiSchema,
    endpoints: StackEndpoints,
    topic_names: TopicNames,
) -> None:
    for operation in webhook_operations(schema):

        @settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(case=operation.as_strategy())
        def check(case: Case[Any]) -> None:
            # Whatever credentials schemathesis made up are sent; none is a configured key.
            sent = case.as_transport_kwargs(base_url="http://testserver")["headers"]
            assert not any(k in str(v) for v in sent.values() for k in (PRIMARY_KEY, SECONDARY_KEY))
            response = send(client, case, None)
            case.validate_response(response, checks=CHECKS)
            assert response.status_code == 401

        check()

    for topic in (topic_names.cdr_raw, topic_names.sms_raw, topic_names.deadletter):
        assert topic_size(endpoints.kafka_bootstrap_servers, topic) == 0
