"""A registry that is down when the ingress starts: 503 at once, never a blocked event loop.

The ingress reaches the real registry through a TCP relay (`outage_fixtures.py`)
that first swallows connections without answering (a registry that hangs) and
later forwards them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from tests.conftest import sample_bytes
from tests.integration.ingress_fixtures import (
    CDR_PATH,
    AppFactory,
    running_apps,
    topic_size,
    wait_until_schemas_registered,
    with_key,
)
from tests.integration.outage_fixtures import RegistryRelay

RETRY_AFTER_S = 3


@pytest.fixture
def ingress_app(endpoints: StackEndpoints, topic_names: TopicNames) -> Iterator[AppFactory]:
    with running_apps(endpoints, topic_names) as start:
        yield start


def test_a_registry_down_at_start_gets_503_at_once_until_it_answers(
    relay: RegistryRelay,
    ingress_app: AppFactory,
    endpoints: StackEndpoints,
    topic_names: TopicNames,
) -> None:
    client = ingress_app(
        wait_for_schemas=False,
        schema_registry_url=relay.url(endpoints.schema_registry_url),
        retry_after_s=RETRY_AFTER_S,
    )
    body = sample_bytes("cdr-answered-inbound.json")

    for _ in range(3):
        started = time.monotonic()
        response = client.post(CDR_PATH, content=body, headers=with_key())
        # Registering on the loop would hang here for the registry client's whole timeout.
        assert time.monotonic() - started < 1.0
        assert response.status_code == 503
        assert response.headers["retry-after"] == str(RETRY_AFTER_S)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["schemas"] is False
    assert ready.headers["retry-after"] == str(RETRY_AFTER_S)

    relay.open()
    wait_until_schemas_registered(client, timeout_s=60)
    assert client.get("/readyz").status_code == 200
    response = client.post(CDR_PATH, content=body, headers=with_key())
    assert response.status_code == 200, response.text
    assert topic_size(endpoints.kafka_bootstrap_servers, topic_names.cdr_raw) == 1
