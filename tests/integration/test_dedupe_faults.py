"""Dedupe under faults: SIGKILLed workers, two workers sharing partitions, bad records, restarts.

Real broker and registry; workers run as real processes (`python -m onoff_bridge
worker dedupe`). Deliveries are produced straight to the test's own
`onoff.cdr.raw` with the ingress's producer settings, and `onoff.calls` is read
back with read_committed. What must hold, whatever happens to the workers:
every call's versions are 1..n with none missing, a re-emitted version is
identical to its first copy, and the last version is the call that the real
fold computes from the call's deliveries in production order. A record that
cannot be decoded goes to the dead-letter topic and the worker goes on; a
restarted worker with nothing to do says so on /healthz.
"""

from __future__ import annotations

import random
import signal
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
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
    beyond,
    call_problems,
    committed_offsets,
    expected_calls,
    generate_deliveries,
    processed_offsets,
    produce_all,
    produce_raw,
    read_calls,
    roundtrip,
    source_progress,
    wait_caught_up,
    wait_until_lag_at_most,
    wait_until_processed,
)
from tests.integration.ingress_fixtures import decode_values, read_topic, topic_size
from tests.integration.processor_fixtures import Worker, WorkerFactory, worker_factory

PARTITIONS = 3


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


# Where each SIGKILL lands, in order:
# - "steady": the producer is that far along and the worker keeps up (lag <= STEADY_LAG);
#   it commits every 0.5 s, so its latest records are processed but not committed.
# - "backlog": a restarted worker is working through what piled up while the group
#   waited out its dead member; it has done BACKLOG_STEP records.
# - "recovery": a restarted worker answers /healthz but may still be joining the group
#   or reading its table back from onoff.calls.
KILLS = (
    ("steady", 0.15),
    ("backlog", 0.0),
    ("recovery", 0.0),
    ("steady", 0.6),
    ("backlog", 0.0),
)
STEADY_LAG = 30
BACKLOG_STEP = 150


@dataclass
class Kill:
    mode: str
    produced: int
    processed: int  # by the killed worker itself, past the offsets it started from
    replayed: int  # processed but not committed: the next worker reads them again
    at_s: float

    def __str__(self) -> str:
        return (
            f"{self.mode}@{self.at_s:.0f}s: produced {self.produced}, "
            f"processed {self.processed}, replayed {self.replayed}"
        )


def start_worker(factory: WorkerFactory, wait: bool = True, **env: str) -> Worker:
    # Faust's defaults keep a SIGKILLed member in the group for 60 s, and a new worker's
    # first rebalance waits that long. Production keeps them; the tests shorten them.
    return factory.start(
        wait=wait,
        BROKER_SESSION_TIMEOUT="6",
        BROKER_HEARTBEAT_INTERVAL="1",
        BROKER_REBALANCE_TIMEOUT="10",
        **env,
    )


def test_sigkilled_workers_lose_no_version_and_re_emit_only_identical_ones(
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
    workers: WorkerFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    bootstrap, source = endpoints.kafka_bootstrap_servers, topic_names.cdr_raw
    group = f"{workers.app_id_prefix}-dedupe"
    codec = AvroCodec(registry, SchemaName.CALL_EVENT, source)
    records = generate_deliveries(calls=700, seed=20260302)
    expected = expected_calls(roundtrip(codec, records))

    worker = start_worker(workers)
    # The last tenth waits for the last worker, so it has records to read on every partition.
    producer = PacedProducer(
        bootstrap, codec, records, per_second=80, hold_at=int(len(records) * 0.9)
    )
    producer.start()
    kills: list[Kill] = []
    committed: dict[int, int] = {}
    try:
        for mode, share in KILLS:
            producer.wait_for(int(len(records) * share))
            if mode == "steady":
                wait_until_processed(worker, source, committed, 1)
                wait_until_lag_at_most(worker, source, STEADY_LAG)
            elif mode == "backlog":
                wait_until_processed(worker, source, committed, BACKLOG_STEP)
            reached = processed_offsets(worker, source)
            assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
            start_from = committed
            committed = committed_offsets(bootstrap, group, source, PARTITIONS)
            kills.append(
                Kill(
                    mode,
                    producer.produced,
                    beyond(reached, start_from),
                    beyond(reached, committed),
                    time.monotonic() - started,
                )
            )
            worker = start_worker(workers)
        producer.release()
        producer.finish()
    finally:
        producer.stop()
    wait_caught_up([worker], bootstrap, source, topic_names.calls, PARTITIONS, timeout_s=60)

    log = CallLog.of(read_calls(bootstrap, registry, topic_names.calls))
    problems = call_problems(log, expected)
    versions = sum(call["version"] for call in expected.values())
    summary = (
        f"{len(records)} deliveries of {len(expected)} calls; {len(kills)} SIGKILLs "
        f"({'; '.join(map(str, kills))}); onoff.calls holds {log.records} records for "
        f"{versions} versions: {log.repeats} re-emitted; {time.monotonic() - started:.1f}s"
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
        single = start_worker(one)
        pair = [start_worker(two, wait=False) for _ in range(2)]
        for worker in pair:
            worker.wait_ready()
        # Both in the group before the rest arrives, so each has new records to report on.
        wait_until_shared(pair, topics_b.cdr_raw)
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


def wait_until_shared(pair: list[Worker], source: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        for worker in pair:
            returncode = worker.process.poll()
            assert returncode is None, f"worker exited with {returncode}:\n{worker.tail(80)}"
        owned = [set(source_progress([worker], source)) for worker in pair]
        if all(owned) and set().union(*owned) == set(range(PARTITIONS)):
            return
        assert time.monotonic() < deadline, f"partitions not shared: {owned}"
        time.sleep(0.2)


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
    assert topic_names.cdr_raw in rejected["reason"], rejected["reason"]
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


def test_a_worker_restarted_with_nothing_left_to_do_reports_no_lag(
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
    workers: WorkerFactory,
) -> None:
    """After a restart, a worker whose partitions were all processed and committed is idle.

    It must say so: /healthz and the lag gauge drive the liveness probe and the
    autoscaler, so a made-up lag would restart or scale a healthy worker.
    """
    bootstrap, source = endpoints.kafka_bootstrap_servers, topic_names.cdr_raw
    codec = AvroCodec(registry, SchemaName.CALL_EVENT, source)
    produce_all(bootstrap, codec, generate_deliveries(calls=40, seed=3))
    first = start_worker(workers)
    wait_caught_up([first], bootstrap, source, topic_names.calls, PARTITIONS)
    assert first.stop(signal.SIGTERM) == 0  # a clean stop commits what it processed
    group = f"{workers.app_id_prefix}-dedupe"
    committed = committed_offsets(bootstrap, group, source, PARTITIONS)
    assert sum(committed.values()) == topic_size(bootstrap, source), committed

    stall_timeout_s = 2.0
    second = start_worker(workers, ONOFF_BRIDGE_STALL_TIMEOUT_S=str(stall_timeout_s))
    deadline = time.monotonic() + 30
    while len(source_progress([second], source)) < PARTITIONS:
        assert time.monotonic() < deadline, "the restarted worker got no partitions"
        time.sleep(0.2)
    time.sleep(stall_timeout_s + 1.5)

    response = httpx.get(second.health_url, timeout=2)
    report_ = response.json()
    lags = {p["partition"]: p["lag"] for p in report_["partitions"]}
    assert (response.status_code, lags) == (200, dict.fromkeys(range(PARTITIONS), 0)), (
        f"nothing is waiting (committed {committed} = end of every partition), yet /healthz "
        f"answers {response.status_code}: {report_}"
    )
