"""The spool on the real broker: Kafka or the registry away, the ingress killed, nothing lost.

Each test runs a Kafka of its own (`dedicated_kafka`) that it stops and starts,
or reaches the shared registry through a relay it opens later; the ingress
runs as `onoff-bridge ingress` (so it can be killed with SIGKILL) or in
process, always built by `ingress.bootstrap` as in production.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import Message
from confluent_kafka.schema_registry import SchemaRegistryClient

from ingress.spool import SEGMENT_SUFFIX, SpooledRecord, encode_record, read_frames
from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.localstack.dedicated import DedicatedKafka
from onoff_bridge.settings import TopicNames
from onoff_bridge.topics import ensure_topics, topic_specs
from schemas import AvroCodec, SchemaName
from tests.conftest import sample
from tests.integration.ingress_fixtures import (
    CDR_PATH,
    SMS_PATH,
    decode_values,
    read_topic,
    running_apps,
    start_ingress,
    topic_size,
    with_key,
)
from tests.integration.outage_fixtures import RegistryRelay
from tests.integration.processor_fixtures import free_port

API_KEY = "spool-test-key"
DELIVERY_TIMEOUT_S = 2.0
DRAIN_BATCH = 100
EVENTS = 1000
CALLS = 50  # EVENTS deliveries over this many call ids, each call's posted in order
CALL = sample("cdr-answered-inbound.json")


def spool_env(spool: Path, **extra: str) -> dict[str, str]:
    return {
        "ONOFF_BRIDGE_SPOOL_ENABLED": "true",
        "ONOFF_BRIDGE_SPOOL_DIRECTORY": str(spool),
        "ONOFF_BRIDGE_SPOOL_DRAIN_BATCH": str(DRAIN_BATCH),
        "ONOFF_BRIDGE_DELIVERY_TIMEOUT_S": str(DELIVERY_TIMEOUT_S),
        # With Kafka stopped, a restart waits this long on the start-up check, then starts.
        "ONOFF_BRIDGE_CONNECT_TIMEOUT_S": "2",
        "ONOFF_BRIDGE_LOG_LEVEL": "INFO",
        **extra,
    }


def own_topics(kafka: DedicatedKafka) -> TopicNames:
    suffix = uuid.uuid4().hex[:10]
    topics = TopicNames(**{field: f"spool.{field}.{suffix}" for field in TopicNames.model_fields})
    ensure_topics(kafka.bootstrap_servers, topic_specs(topics, partitions=3))
    return topics


def body(call: int, seq: int) -> bytes:
    return orjson.dumps(CALL | {"id": f"spool-call-{call}", "callDuration": seq})


def request_id(call: int, seq: int) -> str:
    return f"spool-{call}-{seq}"


def post_calls(base: str, calls: range, deliveries: int, fresh_connections: bool = False) -> None:
    """Posts `deliveries` per call, each call's in order, calls side by side; all must be 200."""

    def post_call(call: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            for seq in range(deliveries):
                headers = {"x-api-key": API_KEY, "x-request-id": request_id(call, seq)}
                if fresh_connections:
                    headers["connection"] = "close"
                response = client.post(CDR_PATH, content=body(call, seq), headers=headers)
                assert response.status_code == 200, (request_id(call, seq), response.text)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(post_call, calls))


def ready(base: str) -> dict[str, Any]:
    response = httpx.get(base + "/readyz", timeout=10)
    assert response.status_code == 200, response.text
    value: dict[str, Any] = response.json()
    return value


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def metric(base: str, name: str) -> float:
    text = httpx.get(base + "/metrics", timeout=10).text
    values = [float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)]
    assert values, f"{name} not in /metrics"
    return sum(values)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the ingress and its workers at once, as a power cut would."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def decoded(
    registry: SchemaRegistryClient, topic: str, messages: list[Message]
) -> list[tuple[Message, dict[str, Any]]]:
    records = decode_values(registry, SchemaName.CALL_EVENT, topic, messages)
    return list(zip(messages, records, strict=True))


def by_request_id(
    pairs: list[tuple[Message, dict[str, Any]]],
) -> dict[str, list[tuple[Message, dict[str, Any]]]]:
    """Every copy of each record, keyed by the request id that brought it."""
    copies: dict[str, list[tuple[Message, dict[str, Any]]]] = defaultdict(list)
    for message, record in pairs:
        copies[record["ingest"]["requestId"]].append((message, record))
    return copies


def opened_directories(log: Path) -> set[str]:
    """The spool directories the ingress's processes said they opened (JSON log lines)."""
    lines = [orjson.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return {line["directory"] for line in lines if line.get("msg") == "spool open"}


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SEGMENT_SUFFIX}"))


def spooled_records(directory: Path) -> int:
    return sum(len(list(read_frames(path.read_bytes()))) for path in segments(directory))


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Ingress processes a test starts (each leading its own group); none outlives it."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            kill_group(process)


def test_a_thousand_deliveries_outlive_kafka_and_a_kill_9_and_reach_kafka_in_order(
    dedicated_kafka: DedicatedKafka,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    topics = own_topics(dedicated_kafka)
    own = StackEndpoints(dedicated_kafka.bootstrap_servers, endpoints.schema_registry_url)
    port, log = free_port(), tmp_path / "ingress.log"
    env = spool_env(tmp_path / "spool")
    base = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen[bytes]:
        process = start_ingress(own, topics, port, log, API_KEY, extra_env=env, new_session=True)
        processes.append(process)
        return process

    first = start()
    # start_ingress waits for a 200, which "degraded" is too (a first metadata request
    # slower than /readyz's 2 s on a loaded machine): wait for Kafka to answer.
    wait_for(lambda: ready(base)["status"] == "ready", "Kafka to answer /readyz", 60)
    dedicated_kafka.stop()
    post_calls(base, range(CALLS), EVENTS // CALLS)
    state = ready(base)
    assert state["status"] == "degraded" and state["kafka"] is False
    assert state["spool"]["records"] == EVENTS
    assert metric(base, "onoff_ingress_spool_records") == EVENTS
    assert metric(base, "onoff_ingress_spooled_total") == EVENTS
    assert metric(base, "onoff_ingress_spool_oldest_age_seconds") > 0

    kill_group(first)
    start()  # Kafka still down: the spool on disk is all there is
    assert ready(base)["spool"]["records"] == EVENTS
    dedicated_kafka.start()
    wait_for(lambda: ready(base)["status"] == "ready", "the spool to drain")
    assert metric(base, "onoff_ingress_spool_drained_total") >= EVENTS
    assert metric(base, "onoff_ingress_spool_records") == 0
    assert not segments(tmp_path / "spool" / "worker-0"), "a drained segment was kept"

    messages = read_topic(dedicated_kafka.bootstrap_servers, topics.cdr_raw)
    pairs = decoded(registry, topics.cdr_raw, messages)
    copies = by_request_id(pairs)
    posted = {request_id(call, seq) for call in range(CALLS) for seq in range(EVENTS // CALLS)}
    assert set(copies) == posted, f"missing: {sorted(posted - set(copies))[:10]}"
    # At least once: a record sent again was in a drain attempt that failed (or was in
    # flight at the kill); at most one batch of them, each copy the same bytes, so
    # dedupe (same content hash) drops every repeat.
    repeats = len(messages) - len(copies)
    print(f"{len(messages)} records in {topics.cdr_raw}, {repeats} of them repeats")
    assert repeats <= DRAIN_BATCH, f"{repeats} repeated records"
    for rid, same in copies.items():
        assert len({m.value() for m, _ in same}) == 1, f"copies of {rid} differ"
        assert len({r["ingest"]["contentSha256"] for _, r in same}) == 1
        assert len({m.key() for m, _ in same}) == 1
    # One call's deliveries, posted in order, are in its partition in that order.
    order: dict[str, list[int]] = defaultdict(list)
    for _, record in pairs:  # read_topic keeps each partition's offset order
        order[record["id"]].append(record["callDuration"])
    assert len(order) == CALLS
    for call, durations in order.items():
        assert last_copies(durations) == list(range(EVENTS // CALLS)), call


def last_copies(values: list[int]) -> list[int]:
    """`values` with each repeated value kept at its last position only."""
    last = {value: index for index, value in enumerate(values)}
    return [value for index, value in enumerate(values) if last[value] == index]


def test_a_torn_last_record_is_cut_off_with_a_log_line_and_the_rest_drains(
    dedicated_kafka: DedicatedKafka,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    topics = own_topics(dedicated_kafka)
    own = StackEndpoints(dedicated_kafka.bootstrap_servers, endpoints.schema_registry_url)
    port, log = free_port(), tmp_path / "ingress.log"
    env = spool_env(tmp_path / "spool")
    base = f"http://127.0.0.1:{port}"
    processes.append(
        start_ingress(own, topics, port, log, API_KEY, extra_env=env, new_session=True)
    )
    dedicated_kafka.stop()
    post_calls(base, range(4), 5)
    kill_group(processes[-1])

    # Power lost in the middle of writing one more record: its fsync never returned, so
    # it was never answered 200. Half a real frame sits at the end of the segment.
    [segment] = segments(tmp_path / "spool" / "worker-0")
    frame = encode_record(SpooledRecord(topics.cdr_raw, "torn", "avro", b"x" * 200, 0))
    with segment.open("ab") as out:
        out.write(frame[: len(frame) // 2])
    assert spooled_records(segment.parent) == 20

    processes.append(
        start_ingress(own, topics, port, log, API_KEY, extra_env=env, new_session=True)
    )
    assert ready(base)["spool"]["records"] == 20
    assert "cut a torn record off the end of a segment" in log.read_text()
    dedicated_kafka.start()
    wait_for(lambda: ready(base)["status"] == "ready", "the spool to drain")
    copies = by_request_id(
        decoded(
            registry, topics.cdr_raw, read_topic(dedicated_kafka.bootstrap_servers, topics.cdr_raw)
        )
    )
    assert set(copies) == {request_id(call, seq) for call in range(4) for seq in range(5)}


def test_a_full_spool_answers_503_and_loses_nothing(
    dedicated_kafka: DedicatedKafka,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    tmp_path: Path,
) -> None:
    topics = own_topics(dedicated_kafka)
    own = StackEndpoints(dedicated_kafka.bootstrap_servers, endpoints.schema_registry_url)
    with running_apps(own, topics) as start:
        client = start(
            spool_enabled=True,
            spool_directory=tmp_path / "spool",
            spool_max_bytes=32 * 1024,  # some 50 records
            delivery_timeout_s=DELIVERY_TIMEOUT_S,
            retry_after_s=7,
        )
        dedicated_kafka.stop()
        answers: dict[str, int] = {}
        for seq in range(120):
            headers = with_key(**{"x-request-id": request_id(0, seq)})
            response = client.post(CDR_PATH, content=body(0, seq), headers=headers)
            answers[request_id(0, seq)] = response.status_code
            if response.status_code == 503:
                assert response.headers["retry-after"] == "7"
        statuses = list(answers.values())
        assert 20 < statuses.count(200) < 100 and set(statuses) == {200, 503}
        # Once full, full until something drains: no 200 after the first 503.
        assert statuses == sorted(statuses)
        state = client.get("/readyz")
        assert state.status_code == 503
        assert state.json()["status"] == "not ready" and state.json()["spool"]["full"] is True
        assert state.json()["spool"]["bytes"] <= 32 * 1024

        dedicated_kafka.start()
        wait_for(lambda: client.get("/readyz").json()["status"] == "ready", "the spool to drain")
        # The sender retries what got a 503, as Onoff does.
        for rid, status in answers.items():
            if status == 503:
                seq = int(rid.rsplit("-", 1)[1])
                headers = with_key(**{"x-request-id": rid})
                retry = client.post(CDR_PATH, content=body(0, seq), headers=headers)
                assert retry.status_code == 200, retry.text

    copies = by_request_id(
        decoded(
            registry, topics.cdr_raw, read_topic(dedicated_kafka.bootstrap_servers, topics.cdr_raw)
        )
    )
    assert set(copies) == set(answers)


def test_a_registry_down_at_start_gets_200s_and_the_records_drain_framed_once_it_answers(
    relay: RegistryRelay,
    endpoints: StackEndpoints,
    topic_names: TopicNames,
    registry: SchemaRegistryClient,
    tmp_path: Path,
) -> None:
    with running_apps(endpoints, topic_names) as start:
        client = start(
            wait_for_schemas=False,
            schema_registry_url=relay.url(endpoints.schema_registry_url),
            spool_enabled=True,
            spool_directory=tmp_path / "spool",
        )
        for seq in range(10):
            started = time.monotonic()
            headers = with_key(**{"x-request-id": request_id(0, seq)})
            response = client.post(CDR_PATH, content=body(0, seq), headers=headers)
            assert response.status_code == 200, response.text
            assert time.monotonic() - started < 3.0  # no wait on the registry (10 s a try)
        sms = client.post(SMS_PATH, json=sample("sms-received.json"), headers=with_key())
        assert sms.status_code == 200
        bad = client.post(CDR_PATH, content=b'{"callDuration": 3}', headers=with_key())
        assert bad.status_code == 200 and bad.json()["status"] == "quarantined"
        state = client.get("/readyz")
        assert state.status_code == 200
        assert state.json()["status"] == "degraded" and state.json()["schemas"] is False
        assert state.json()["spool"]["records"] == 12
        assert topic_size(endpoints.kafka_bootstrap_servers, topic_names.cdr_raw) == 0

        relay.open()
        wait_for(lambda: client.get("/readyz").json()["status"] == "ready", "the spool to drain")

    bootstrap = endpoints.kafka_bootstrap_servers
    calls = read_topic(bootstrap, topic_names.cdr_raw)
    schema_id = AvroCodec(registry, SchemaName.CALL_EVENT, topic_names.cdr_raw).schema_id()
    values = [m.value() for m in calls]
    assert {int.from_bytes(v[1:5], "big") for v in values if isinstance(v, bytes)} == {schema_id}
    records = by_request_id(decoded(registry, topic_names.cdr_raw, calls))
    assert set(records) == {request_id(0, seq) for seq in range(10)}
    assert [records[request_id(0, seq)][-1][1]["callDuration"] for seq in range(10)] == list(
        range(10)
    )
    assert topic_size(bootstrap, topic_names.sms_raw) == 1
    assert topic_size(bootstrap, topic_names.deadletter) == 1


def test_a_restart_with_fewer_workers_drains_the_spool_of_the_worker_that_is_gone(
    dedicated_kafka: DedicatedKafka,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    topics = own_topics(dedicated_kafka)
    own = StackEndpoints(dedicated_kafka.bootstrap_servers, endpoints.schema_registry_url)
    port, log = free_port(), tmp_path / "ingress.log"
    root = tmp_path / "spool"
    env = spool_env(root)
    base = f"http://127.0.0.1:{port}"
    processes.append(
        start_ingress(
            own, topics, port, log, API_KEY, "--workers", "2", extra_env=env, new_session=True
        )
    )
    # Each worker process holds a directory of its own.
    wait_for(
        lambda: opened_directories(log) == {str(root / "worker-0"), str(root / "worker-1")},
        "both workers to claim a spool directory",
        timeout_s=60,
    )
    dedicated_kafka.stop()
    post_calls(base, range(20), 3, fresh_connections=True)
    kill_group(processes[-1])
    held = {n: spooled_records(root / f"worker-{n}") for n in (0, 1)}
    assert sum(held.values()) == 60
    assert held[1] > 0, f"the kernel gave every connection to one worker: {held}"

    processes.append(
        start_ingress(own, topics, port, log, API_KEY, extra_env=env, new_session=True)
    )
    dedicated_kafka.start()
    wait_for(
        lambda: not segments(root / "worker-0") and not segments(root / "worker-1"),
        "both directories to drain",
    )
    assert "draining the directory of a process that is gone" in log.read_text()
    copies = by_request_id(
        decoded(
            registry, topics.cdr_raw, read_topic(dedicated_kafka.bootstrap_servers, topics.cdr_raw)
        )
    )
    assert set(copies) == {request_id(call, seq) for call in range(20) for seq in range(3)}
