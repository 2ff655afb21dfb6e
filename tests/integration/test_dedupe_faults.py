"""Dedupe under faults: SIGKILLed workers, two workers sharing partitions, undecodable records.

Real broker and registry; workers run as real processes (`python -m onoff_bridge
worker dedupe`). Deliveries are produced straight to the test's own
`onoff.cdr.raw` with the ingress's producer settings, and `onoff.calls` is read
back with read_committed. What must hold, whatever happens to the workers:
every call's versions are 1..n with none missing, a re-emitted version is
identical to its first copy, and the last version is the call that the real
fold computes from the call's deliveries in production order.
"""

from __future__ import annotations

import random
import signal
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from processors.merge import content
from schemas import AvroCodec, SchemaName
from tests.integration.conftest import TopicFactory
from tests.integration.dedupe_load import (
    CallLog,
    PacedProducer,
    call_problems,
    expected_calls,
    generate_deliveries,
    produce_all,
    produce_raw,
    read_calls,
    roundtrip,
    source_progress,
    wait_caught_up,
    wait_until_processing,
)
from tests.integration.ingress_fixtures import decode_values, read_topic
from tests.integration.processor_fixtures import Worker, WorkerFactory, worker_factory

PARTITIONS = 3
# Faust's defaults keep a SIGKILLed member in the group for 60 s, and a new worker's
# first rebalance waits that long. Production keeps them; the test shortens them.
FAST_GROUP = {
    "BROKER_SESSION_TIMEOUT": "6",
    "BROKER_HEARTBEAT_INTERVAL": "1",
    "BROKER_REBALANCE_TIMEOUT": "10",
}


@pytest.fixture
def workers(
    endpoints: StackEndpoints, topic_names: TopicNames, tmp_path: Path
) -> Iterator[WorkerFactory]:
    with worker_factory(endpoints, topic_names, home(tmp_path, "a")) as factory:
        yield factory


def home(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir(exist_ok=True)
    return path


def more_topics(topic_factory: TopicFactory) -> TopicNames:
    """A second full set of topics, created like `topic_names`."""
    compact = {"cleanup.policy": "compact"}
    return TopicNames(
        cdr_raw=topic_factory("onoff.cdr.raw", partitions=PARTITIONS),
        sms_raw=topic_factory("onoff.sms.raw", partitions=PARTITIONS),
        deadletter=topic_factory("onoff.deadletter"),
        calls=topic_factory("onoff.calls", partitions=PARTITIONS, config=compact),
        recordings=topic_factory("onoff.recordings", config=compact),
        user_call_metrics=topic_factory("onoff.user-call-metrics", config=compact),
    )


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n[dedupe faults] {line}")


def test_sigkilled_workers_lose_no_version_and_re_emit_only_identical_ones(
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
    workers: WorkerFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    codec = AvroCodec(registry, SchemaName.CALL_EVENT, topic_names.cdr_raw)
    records = generate_deliveries(calls=700, seed=20260302)
    expected = expected_calls(roundtrip(codec, records))
    bootstrap = endpoints.kafka_bootstrap_servers

    worker = workers.start(**FAST_GROUP)
    producer = PacedProducer(bootstrap, codec, records, per_second=110)
    producer.start()
    kills: list[tuple[int, int]] = []
    for share in (0.2, 0.45, 0.7):
        producer.wait_for(int(len(records) * share))
        wait_until_processing(worker, topic_names.cdr_raw)
        progress = source_progress([worker], topic_names.cdr_raw)
        assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
        kills.append((producer.produced, sum(p["last_offset"] + 1 for p in progress.values())))
        worker = workers.start(**FAST_GROUP)
    producer.finish()
    wait_caught_up(
        [worker], bootstrap, topic_names.cdr_raw, topic_names.calls, PARTITIONS, timeout_s=60
    )

    log = CallLog.of(read_calls(bootstrap, registry, topic_names.calls))
    problems = call_problems(log, expected)
    versions = sum(call["version"] for call in expected.values())
    summary = (
        f"{len(records)} deliveries of {len(expected)} calls, {len(kills)} SIGKILLs "
        f"(produced, offsets processed by the killed worker: {kills}); onoff.calls holds "
        f"{log.records} records for {versions} versions: {log.repeats} re-emitted; "
        f"{time.monotonic() - started:.1f}s"
    )
    report(capsys, summary)
    assert not problems, f"{len(problems)} problems ({summary}):\n" + "\n".join(problems[:20])
    assert log.records == versions + log.repeats


def test_two_workers_sharing_the_partitions_make_the_same_calls_as_one(
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
    topic_factory: TopicFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bootstrap = endpoints.kafka_bootstrap_servers
    topics_b = more_topics(topic_factory)
    records = generate_deliveries(calls=300, seed=4242)
    codec_a = AvroCodec(registry, SchemaName.CALL_EVENT, topic_names.cdr_raw)
    codec_b = AvroCodec(registry, SchemaName.CALL_EVENT, topics_b.cdr_raw)
    expected = expected_calls(roundtrip(codec_a, records))
    half = len(records) // 2

    with (
        worker_factory(endpoints, topic_names, home(tmp_path, "a")) as one,
        worker_factory(endpoints, topics_b, home(tmp_path, "b")) as two,
    ):
        # Half the stream waits in the topics; the two workers of B start together and
        # divide the partitions while the rest arrives.
        produce_all(bootstrap, codec_a, records[:half])
        produce_all(bootstrap, codec_b, records[:half])
        single = one.start(**FAST_GROUP)
        pair = [two.start(wait=False, **FAST_GROUP) for _ in range(2)]
        for worker in pair:
            worker.wait_ready()
        rest_a = PacedProducer(bootstrap, codec_a, records[half:], per_second=400)
        rest_b = PacedProducer(bootstrap, codec_b, records[half:], per_second=400)
        rest_a.start()
        rest_b.start()
        rest_a.finish()
        rest_b.finish()
        wait_caught_up([single], bootstrap, topic_names.cdr_raw, topic_names.calls, PARTITIONS)
        progress_b = wait_caught_up(pair, bootstrap, topics_b.cdr_raw, topics_b.calls, PARTITIONS)
        owners = {p["worker"] for p in progress_b.values()}

    log_a = CallLog.of(read_calls(bootstrap, registry, topic_names.calls))
    log_b = CallLog.of(read_calls(bootstrap, registry, topics_b.calls))
    report(
        capsys,
        f"{len(records)} deliveries of {len(expected)} calls; one worker: {log_a.records} "
        f"records ({log_a.repeats} re-emitted); two workers: {log_b.records} records "
        f"({log_b.repeats} re-emitted), partitions by worker port "
        f"{ {p: r['worker'] for p, r in sorted(progress_b.items())} }",
    )
    assert len(owners) == 2, f"the two workers did not share the partitions: {progress_b}"
    assert call_problems(log_a, expected) == []
    assert call_problems(log_b, expected) == []

    def final(log: CallLog) -> dict[str, tuple[Any, ...]]:
        return {
            call_id: (*content(call), call["version"], call["deliveryCount"])
            for call_id, call in log.finals().items()
        }

    finals_a, finals_b = final(log_a), final(log_b)
    differing = sorted(
        c for c in finals_a.keys() | finals_b.keys() if finals_a.get(c) != finals_b.get(c)
    )
    assert not differing, (
        f"{len(differing)} calls differ between one and two workers: {differing[:10]}"
    )


def _unknown_schema_frame(registry: SchemaRegistryClient, topic: str) -> bytes:
    """A well-formed Confluent frame of a real CallEvent, under a schema id nobody registered."""
    valid = AvroCodec(registry, SchemaName.CALL_EVENT, topic).encode(
        generate_deliveries(calls=1, seed=99)[0]
    )
    return (
        b"\x00" + struct.pack(">I", 2_000_000_000 + random.Random(7).randint(0, 10**6)) + valid[5:]
    )


UNDECODABLE = {
    "random-bytes": lambda registry, topic: bytes([0x7B]) + random.Random(11).randbytes(63),
    "truncated-frame": lambda registry, topic: b"\x00\x00\x00",
    "unknown-schema-id": _unknown_schema_frame,
}


@pytest.mark.parametrize("kind", sorted(UNDECODABLE))
def test_an_undecodable_record_is_dead_lettered_and_the_worker_keeps_going(
    kind: str,
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
    workers: WorkerFactory,
) -> None:
    bootstrap = endpoints.kafka_bootstrap_servers
    codec = AvroCodec(registry, SchemaName.CALL_EVENT, topic_names.cdr_raw)
    good = generate_deliveries(calls=1, seed=5)[0]
    bad = UNDECODABLE[kind](registry, topic_names.cdr_raw)
    worker = workers.start()
    # Same key: the bad record and the good one after it share a partition.
    (partition, offset), placed_good = produce_raw(
        bootstrap, topic_names.cdr_raw, good["id"].encode(), [bad, codec.encode(good)]
    )

    calls = _wait_for_calls(worker, bootstrap, registry, topic_names, timeout_s=20)
    deadletters = decode_values(
        registry,
        SchemaName.REJECTED_DELIVERY,
        topic_names.deadletter,
        read_topic(bootstrap, topic_names.deadletter),
    )

    assert len(deadletters) == 1, deadletters
    rejected = deadletters[0]
    assert rejected["source"] == "dedupe"
    assert rejected["body"] == bad
    assert (rejected["sourcePartition"], rejected["sourceOffset"]) == (partition, offset)
    assert rejected["path"] == topic_names.cdr_raw
    assert rejected["requestId"] == f"{topic_names.cdr_raw}/{partition}/{offset}"
    assert rejected["reason"].startswith(f"cannot decode a record of {topic_names.cdr_raw}")
    assert placed_good[0] == partition
    assert [(c["id"], c["version"]) for c in calls] == [(good["id"], 1)]
    assert calls[0]["deliveryHashes"] == [good["ingest"]["contentSha256"]]


def _wait_for_calls(
    worker: Worker,
    bootstrap: str,
    registry: SchemaRegistryClient,
    topics: TopicNames,
    timeout_s: float,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        calls = read_calls(bootstrap, registry, topics.calls)
        if calls:
            return calls
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the valid delivery after the bad record never made a call in {timeout_s}s; "
                f"/healthz: {source_progress([worker], topics.cdr_raw)}\n{worker.tail(10)}"
            )
        time.sleep(0.5)
