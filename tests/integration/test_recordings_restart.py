"""A worker SIGKILLed in the middle of a download: the next one stores it, once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from processors.recordings.processor import record_key
from schemas import AvroCodec, SchemaName
from tests.integration.processor_fixtures import Worker, WorkerFactory
from tests.integration.recordings_fixtures import (
    AudioServer,
    by_link,
    call_record,
    produce_calls,
    read_recordings,
    read_recordings_until,
    stored_objects,
)


def start(factory: WorkerFactory, store: Path) -> Worker:
    # Faust keeps a SIGKILLed member in the group for broker_session_timeout (60 s by
    # default); the tests shorten it as test_dedupe_faults does.
    return factory.start(
        "recordings",
        BROKER_SESSION_TIMEOUT="6",
        BROKER_HEARTBEAT_INTERVAL="1",
        BROKER_REBALANCE_TIMEOUT="10",
        ONOFF_BRIDGE_RECORDINGS__DIRECTORY=str(store),
        ONOFF_BRIDGE_RECORDINGS__ALLOW_LOOPBACK="true",
    )


def test_a_download_killed_midway_is_stored_once_after_a_restart(
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
    workers: WorkerFactory,
    server: AudioServer,
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    bootstrap = endpoints.kafka_bootstrap_servers
    calls = AvroCodec(registry, SchemaName.CALL, topic_names.calls)
    recordings = AvroCodec(registry, SchemaName.RECORDING, topic_names.recordings)
    slow = server.url("/slow/k-slow.mp3?seconds=5")

    first = start(workers, store)
    produce_calls(bootstrap, calls, [call_record("k-slow", recordings=[slow])])
    server.wait_for("/slow/k-slow.mp3")
    time.sleep(1.0)  # well inside the 5 s body
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert read_recordings(bootstrap, recordings, count=0) == []
    assert stored_objects(store) == []

    second = start(workers, store)
    records = read_recordings(bootstrap, recordings, count=1)
    assert [(k, r["status"]) for k, r in records] == [
        (record_key("k-slow", "recording", slow), "stored")
    ]
    assert server.count("/slow/k-slow.mp3") == 2
    assert [p.as_uri() for p in stored_objects(store)] == [records[0][1]["storageUri"]]

    # A restart and a new version carrying the same link: the handled-links table,
    # restored from its changelog, says it is done. A third version of the same call
    # (same partition, same lane) with one new link is the sentinel: once its record
    # is there, a second record of the slow link would be too.
    assert second.stop(signal.SIGTERM) == 0
    start(workers, store)
    sentinel = server.url("/audio/k-after.mp3")
    produce_calls(
        bootstrap,
        calls,
        [
            call_record("k-slow", version=2, recordings=[slow]),
            call_record("k-slow", version=3, recordings=[slow, sentinel]),
        ],
    )
    records = read_recordings_until(
        bootstrap, recordings, record_key("k-slow", "recording", sentinel)
    )
    assert sorted(by_link(records)) == [
        ("k-slow", "recording", sentinel),
        ("k-slow", "recording", slow),
    ]
    assert server.count("/slow/k-slow.mp3") == 2
    assert len(stored_objects(store)) == 2
