"""One test per Faust fix, against real Faust and the real broker, that fails without it.

Each test runs a scenario of `tests/integration/faust_scenarios.py` in a child
process, which builds the situation the fix is for on purpose, every time, and
reports what Faust did. To see a test fail, switch its fix off (docs/faust.md):

    export ONOFF_BRIDGE_FAUST_FIXES_OFF='["paused-records"]'
    .venv/bin/pytest tests/integration/test_faust_fixes.py -k paused_partition
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from onoff_bridge.localstack import StackEndpoints
from tests.integration.conftest import TopicFactory

ROOT = Path(__file__).resolve().parents[2]


def run(scenario: str, tmp_path: Path, **args: Any) -> dict[str, Any]:
    report = tmp_path / f"{scenario}.json"
    args |= {"report": str(report), "data_dir": str(tmp_path / "data")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.faust_scenarios", scenario, json.dumps(args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0 and report.exists(), done.stderr[-4000:]
    result: dict[str, Any] = json.loads(report.read_text())
    return result


def app_id() -> str:
    return f"test-faust-fix-{uuid.uuid4().hex[:8]}"


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for n, (key, value) in enumerate(records):
        producer.produce(topic, key=key, value=value, partition=0)
        if n % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0


def commit(bootstrap: str, group: str, topic: str, offset: int) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    consumer.close()


def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        (position,) = consumer.committed([TopicPartition(topic, 0)], timeout=30)
        return int(position.offset)
    finally:
        consumer.close()


def missing(seen: list[int], wanted: range) -> list[int]:
    return sorted(set(wanted) - set(seen))


def test_producer_flush_returns_only_once_every_table_write_is_handed_over(
    endpoints: StackEndpoints, tmp_path: Path
) -> None:
    """`producer-flush`: Faust's flush gave up after 0.1 s without a hand-over, with
    table writes still queued, and the offsets committed after it ran ahead of them."""
    report = run(
        "producer-flush",
        tmp_path,
        bootstrap=endpoints.kafka_bootstrap_servers,
        app_id=app_id(),
        topic=f"test.faust-flush.{uuid.uuid4().hex[:10]}",  # created by the scenario, later
        writes=50,
        create_after_s=2.0,
    )
    assert report["queued_when_flush_returned"] == 0, (
        f"flush returned after {report['flush_returned_after_s']} s with "
        f"{report['queued_when_flush_returned']} of {report['writes']} table writes "
        "not yet handed to the producer"
    )
    # The situation did happen: the first hand-over waited for the topic.
    assert not report["flush_returned_before_topic"], report


def test_records_fetched_for_a_paused_partition_are_delivered_after_its_resume(
    endpoints: StackEndpoints, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    """`paused-records`: Faust dropped what a fetch held for a partition paused while
    the fetch was handed over; the position had moved past it, so it was skipped."""
    records = 100
    topic = topic_factory("test.faust-paused")
    produce(endpoints.kafka_bootstrap_servers, topic, [(b"k%d" % n, b"v") for n in range(records)])
    report = run(
        "paused-records",
        tmp_path,
        bootstrap=endpoints.kafka_bootstrap_servers,
        app_id=app_id(),
        topic=topic,
        records=records,
    )
    seen = report["seen"]
    skipped = missing(seen, range(records + 1))
    assert not skipped, (
        f"offsets {skipped[0]}..{skipped[-1]} ({len(skipped)} records) fetched while the "
        f"partition was paused were never delivered; the agent saw {seen[:3]}...{seen[-3:]}"
    )


def test_a_fetch_between_resume_and_seek_counts_no_unprocessed_offset_as_processed(
    endpoints: StackEndpoints, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    """`seek-before-resume`: Faust resumed the stream partitions, then sought them to
    their committed offsets; a fetch handed over in between looked like a jump, and the
    offsets skipped were counted as processed and committed."""
    records, ahead, behind = 200, 150, 100
    topic = topic_factory("test.faust-seek")
    changelog = topic_factory("test.faust-seek-changelog", config={"cleanup.policy": "compact"})
    bootstrap = endpoints.kafka_bootstrap_servers
    produce(bootstrap, topic, [(b"k%d" % n, b"v") for n in range(records)])
    # A table to restore, so the fetcher runs while the stream partition waits.
    produce(bootstrap, changelog, [(b"k%d" % n, b'{"n": 1}') for n in range(10)])
    group = app_id()
    commit(bootstrap, group, topic, ahead)
    report = run(
        "seek-before-resume",
        tmp_path,
        bootstrap=bootstrap,
        app_id=group,
        topic=topic,
        changelog=changelog,
        records=records,
        committed=behind,
    )
    seen = report["seen"]
    never = missing(seen, range(behind, records + 1))
    assert not never, (
        f"offsets {never[0]}..{never[-1]} were never processed, and the group committed "
        f"{committed(bootstrap, group, topic)}; the agent saw {seen[:3]}...{seen[-3:]}"
    )


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_a_table_is_restored_in_bulk_to_the_last_value_of_each_key(
    endpoints: StackEndpoints, topic_factory: TopicFactory, tmp_path: Path, store: str
) -> None:
    """`bulk-recovery`: Faust passed every changelog record through its per-record path
    (a callback, a decoded Event and a queue hand-over each), a few thousand records/s.
    The restored table must equal the last value of each key, tombstones applied."""
    records, keys = 30_000, 4_000
    changelog = topic_factory(
        "test.faust-restore", partitions=2, config={"cleanup.policy": "compact"}
    )
    producer = Producer({"bootstrap.servers": endpoints.kafka_bootstrap_servers, "linger.ms": 20})
    expected: dict[str, Any] = {}
    for n in range(records):
        key = f"key-{n % keys}"
        value = None if n % 7 == 0 else {"n": n, "history": [n % 3, n % 5]}
        producer.produce(
            changelog,
            key=key.encode(),
            value=None if value is None else json.dumps(value).encode(),
            partition=n % keys % 2,
        )
        if value is None:
            expected.pop(key, None)
        else:
            expected[key] = value
        if n % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    report = run(
        "bulk-recovery",
        tmp_path,
        bootstrap=endpoints.kafka_bootstrap_servers,
        app_id=app_id(),
        changelog=changelog,
        partitions=2,
        store=store,
    )
    assert report["contents"] == expected
    assert report["per_record"] == 0, (
        f"{report['per_record']} of {records} changelog records went through Faust's "
        f"per-record path (restored in {report['seconds']} s)"
    )
    print(f"{store}: {records} changelog records restored in {report['seconds']} s")
