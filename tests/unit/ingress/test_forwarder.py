"""The spool wired into the app: what goes to Kafka, what to the spool, what the sender hears.

The app is built as `ingress.bootstrap` builds it, with a real spool on a
temporary directory and a publisher that stands in for Kafka; the tests on
the real broker are in tests/integration/test_ingress_spool.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from ingress.app import CDR_PATH, IngressComponents, WebhookRoute, create_app
from ingress.auth import ApiKeyAuthenticator
from ingress.errors import PublishError
from ingress.forwarder import SpoolForwarder
from ingress.metrics import IngressMetrics
from ingress.publisher import DeliveryReceipt
from ingress.spool import SEGMENT_SUFFIX, Spool
from ingress.webhooks import CALL_FIELDS

KEY = "unit-test-key"
HEADER = b"\x00\x00\x00\x00\x07"  # magic byte and schema id 7


class FakeCodec:
    """Writes `<id>|<callDuration>` (or the dead letter's request id) behind a 5-byte header."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def encode(self, record: Mapping[str, Any]) -> bytes:
        return self.frame(self.encode_body(record))

    def encode_body(self, record: Mapping[str, Any]) -> bytes:
        if "requestId" in record:  # a RejectedDelivery
            return f"rejected|{record['requestId']}".encode()
        return f"{record['id']}|{record['callDuration']}".encode()

    def frame(self, body: bytes) -> bytes:
        return HEADER + body


class FakeKafka:
    """Stands in for `KafkaPublisher`: takes records unless told to fail them."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.down = False
        self.refuse_for_good = False
        # Values Kafka does not take until released (a record that keeps timing out).
        self.stuck: set[bytes] = set()
        self.attempts: list[bytes] = []

    async def publish(self, topic: str, key: str, value: bytes) -> DeliveryReceipt:
        self.attempts.append(value)
        if self.refuse_for_good:
            raise PublishError("message too large", transient=False)
        if self.down or value in self.stuck:
            raise PublishError("no acknowledgement from Kafka within 5s")
        self.sent.append(value)
        return DeliveryReceipt(topic, 0, len(self.sent) - 1)

    def queue_depth(self) -> int:
        return 0

    def reachable(self, topic: str, timeout_s: float = 2.0) -> bool:
        return not self.down


class Schemas:
    def __init__(self) -> None:
        self.registered = True

    def ready(self) -> bool:
        return self.registered


AppFactory = Callable[..., TestClient]


@pytest.fixture
def kafka() -> FakeKafka:
    return FakeKafka()


@pytest.fixture
def schemas() -> Schemas:
    return Schemas()


@pytest.fixture
def app(kafka: FakeKafka, schemas: Schemas, tmp_path: Path) -> Iterator[AppFactory]:
    clients: list[TestClient] = []

    def start(**spool: Any) -> TestClient:
        codecs = {name: FakeCodec(name) for name in ("call_event", "rejected_delivery")}
        metrics = IngressMetrics(kafka.queue_depth)
        forwarder = SpoolForwarder(
            tmp_path / "spool",
            kafka.publish,
            codecs,
            schemas.ready,
            metrics,
            **(
                {
                    "max_bytes": 1024**2,
                    "segment_bytes": 64 * 1024,
                    "drain_batch": 10,
                    "shutdown_drain_s": 0.0,
                }
                | spool
            ),
        )
        components = IngressComponents(
            publisher=kafka,
            authenticator=ApiKeyAuthenticator({"unit": SecretStr(KEY)}),
            routes=(WebhookRoute(CDR_PATH, "cdr", codecs["call_event"], CALL_FIELDS),),
            deadletter_topic="deadletter",
            deadletter_encoder=codecs["rejected_delivery"],
            max_body_bytes=64 * 1024,
            retry_after_s=5,
            quarantine_status=200,
            schemas_ready=schemas.ready,
            metrics=metrics,
            spool=forwarder,
        )
        client = TestClient(create_app(components))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def post(client: TestClient, seq: int, call: str = "c-1") -> int:
    body = orjson.dumps({"id": call, "eventName": "CDR", "callDuration": seq})
    return client.post(CDR_PATH, content=body, headers={"x-api-key": KEY}).status_code


def value(seq: int, call: str = "c-1") -> bytes:
    return HEADER + f"{call}|{seq}".encode()


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def spooled(client: TestClient, reason: str) -> float:
    text = client.get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("onoff_ingress_spooled_total{") and f'reason="{reason}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def segments(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "spool").glob(f"*/*{SEGMENT_SUFFIX}"))


def test_while_kafka_acknowledges_in_time_the_spool_is_not_written(
    app: AppFactory, kafka: FakeKafka, tmp_path: Path
) -> None:
    client = app()
    assert [post(client, seq) for seq in range(3)] == [200, 200, 200]
    assert kafka.sent == [value(0), value(1), value(2)]
    assert segments(tmp_path) == []
    assert client.get("/readyz").json()["status"] == "ready"


def test_a_record_kafka_does_not_take_is_spooled_and_later_ones_queue_behind_it(
    app: AppFactory, kafka: FakeKafka
) -> None:
    client = app()
    kafka.stuck = {value(0)}
    assert post(client, 0) == 200  # Kafka did not acknowledge it: spooled
    assert post(client, 1) == 200  # Kafka would take this one, but c-1|0 waits in the spool
    assert post(client, 2, call="c-2") == 200
    # Neither was offered to Kafka ahead of the record before them.
    assert value(1) not in kafka.attempts and value(2, call="c-2") not in kafka.attempts
    assert kafka.sent == []
    assert spooled(client, "kafka") == 1 and spooled(client, "backlog") == 2
    state = client.get("/readyz")
    assert state.status_code == 200
    assert state.json()["status"] == "degraded" and state.json()["spool"]["records"] == 3

    kafka.stuck = set()
    wait_for(lambda: len(kafka.sent) == 3, "the drain")
    assert kafka.sent == [value(0), value(1), value(2, call="c-2")]
    wait_for(lambda: client.get("/readyz").json()["status"] == "ready", "an empty spool")
    assert post(client, 3) == 200  # straight to Kafka again
    assert kafka.sent[-1] == value(3)
    assert spooled(client, "backlog") == 2


def test_a_record_kafka_refuses_for_good_gets_503_and_is_not_spooled(
    app: AppFactory, kafka: FakeKafka, tmp_path: Path
) -> None:
    client = app()
    kafka.refuse_for_good = True
    response = client.post(CDR_PATH, content=b'{"id": "c-1"}', headers={"x-api-key": KEY})
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert segments(tmp_path) == []


def test_a_full_spool_gets_503_and_readyz_takes_the_pod_out_until_it_drains(
    app: AppFactory, kafka: FakeKafka
) -> None:
    client = app(max_bytes=1024)
    kafka.down = True
    statuses = [post(client, seq) for seq in range(40)]
    assert statuses.count(200) > 5 and statuses[-1] == 503
    assert statuses == sorted(statuses)  # no 200 after the first 503
    state = client.get("/readyz")
    assert state.status_code == 503 and state.json()["spool"]["full"] is True

    kafka.down = False
    wait_for(lambda: client.get("/readyz").json()["status"] == "ready", "the drain")
    assert kafka.sent == [value(seq) for seq in range(statuses.count(200))]


def test_without_a_schema_id_records_wait_as_avro_bodies_and_drain_framed(
    app: AppFactory, kafka: FakeKafka, schemas: Schemas, caplog: pytest.LogCaptureFixture
) -> None:
    schemas.registered = False
    client = app()
    assert post(client, 0) == 200
    quarantined = client.post(CDR_PATH, content=b"[1]", headers={"x-api-key": KEY})
    assert quarantined.status_code == 200 and quarantined.json()["status"] == "quarantined"
    assert spooled(client, "registry") == 2
    state = client.get("/readyz").json()
    assert state["status"] == "degraded" and state["schemas"] is False
    with caplog.at_level(logging.WARNING, "ingress.spool"):
        wait_for(
            lambda: any("schema an id" in str(getattr(r, "error", "")) for r in caplog.records),
            "the drain to try",
        )
    assert kafka.attempts == []  # an unframed body is never sent

    schemas.registered = True
    wait_for(lambda: len(kafka.sent) == 2, "the drain")
    request_id = quarantined.headers["x-request-id"]
    assert kafka.sent == [value(0), HEADER + f"rejected|{request_id}".encode()]


def test_the_spool_of_a_process_that_is_gone_is_adopted_and_drained(
    app: AppFactory, kafka: FakeKafka, tmp_path: Path
) -> None:
    async def leave_behind() -> None:
        spool = Spool(tmp_path / "spool" / "worker-3")
        for seq in range(3):
            await spool.append("cdr", "c-9", value(seq, call="c-9"))
        await spool.close()  # closed, unlocked: its process died

    asyncio.run(leave_behind())
    client = app()
    wait_for(lambda: len(kafka.sent) == 3, "the adopted directory to drain")
    assert kafka.sent == [value(seq, call="c-9") for seq in range(3)]
    wait_for(lambda: not segments(tmp_path), "the drained segments to go")
    assert post(client, 0) == 200


def test_what_is_left_at_shutdown_stays_and_drains_after_the_restart(
    app: AppFactory, kafka: FakeKafka, tmp_path: Path
) -> None:
    client = app()
    kafka.down = True
    assert [post(client, seq) for seq in range(3)] == [200, 200, 200]
    started = time.monotonic()
    client.__exit__(None, None, None)  # SIGTERM's lifespan shutdown, Kafka still away
    assert time.monotonic() - started < 10
    assert len(segments(tmp_path)) == 1
    kafka.down = False
    app()  # the next process claims the same directory
    wait_for(lambda: len(kafka.sent) == 3, "the drain after the restart")
    assert kafka.sent == [value(seq) for seq in range(3)]
