"""What the outage tests stop and start: a Kafka of the test's own, and a registry relay.

Neither touches the session's shared broker or registry: `dedicated_kafka` is
one more broker (`onoff_bridge.localstack.dedicated`) that a test may stop,
and `RegistryRelay` stands between an ingress and the shared registry,
holding connections unanswered (a registry that hangs) until it is opened.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.localstack.dedicated import DedicatedKafka, dedicated_kafka


@pytest.fixture(name="dedicated_kafka")
def dedicated_kafka_fixture(
    tmp_path_factory: pytest.TempPathFactory, endpoints: StackEndpoints
) -> Iterator[DedicatedKafka]:
    with dedicated_kafka(tmp_path_factory.mktemp("dedicated-kafka")) as kafka:
        assert kafka.bootstrap_servers != endpoints.kafka_bootstrap_servers
        yield kafka
    assert not kafka.running


class RegistryRelay:
    """Listens on a local port; holds connections unanswered until `open()`, then relays."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._forwarding = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, registry_url: str) -> str:
        """`registry_url` (the shared registry's) with this relay's address."""
        return f"http://127.0.0.1:{self.port}{urlsplit(registry_url).path}"

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
