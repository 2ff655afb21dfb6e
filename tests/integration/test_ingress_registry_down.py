"""A registry that is down when the ingress starts: 503 at once, never a blocked event loop.

The ingress reaches the real registry through a TCP relay that first swallows
connections without answering (a registry that hangs) and later forwards them.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

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

RETRY_AFTER_S = 3


class RegistryRelay:
    """Listens on a local port; holds connections unanswered until `open()`, then relays."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._forwarding = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def open(self) -> None:
        """The registry is back: what it held is dropped (as by a restart), the rest relayed."""
        self._forwarding.set()
        for held in self._held:
            held.close()

    def close(self) -> None:
        self._server.close()
        for held in self._held:
            held.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self._forwarding.is_set():
                self._held.append(client)  # a hung registry: the request is never answered
                continue
            upstream = socket.create_connection(self._upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def relay(endpoints: StackEndpoints) -> Iterator[RegistryRelay]:
    url = urlsplit(endpoints.schema_registry_url)
    relay = RegistryRelay((url.hostname or "127.0.0.1", url.port or 80))
    try:
        yield relay
    finally:
        relay.close()


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
    path = urlsplit(endpoints.schema_registry_url).path
    client = ingress_app(
        wait_for_schemas=False,
        schema_registry_url=f"http://127.0.0.1:{relay.port}{path}",
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
