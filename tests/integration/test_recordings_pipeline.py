"""The recordings worker end to end: Call records in, objects and Recording records out."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from schemas import AvroCodec, SchemaName
from tests.integration.processor_fixtures import Worker, WorkerFactory
from tests.integration.recordings_fixtures import (
    AudioServer,
    call_record,
    produce_calls,
    read_recordings,
    spooled,
    stored_objects,
)


def recordings_env(store: Path) -> dict[str, str]:
    prefix = "ONOFF_BRIDGE_RECORDINGS__"
    return {
        f"{prefix}DIRECTORY": str(store),
        f"{prefix}ALLOW_LOOPBACK": "true",
        f"{prefix}MAX_BYTES": str(1024 * 1024),
        f"{prefix}READ_TIMEOUT_S": "5",
        f"{prefix}RETRY_BASE_DELAY_S": "0.1",
        f"{prefix}RETRY_DEADLINE_S": "5",
        f"{prefix}HOST_OVERRIDES": json.dumps({"private.recordings.test": "10.0.0.1"}),
    }


def test_each_link_ends_with_its_status_and_is_fetched_once(
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
    workers: WorkerFactory,
    server: AudioServer,
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    calls = AvroCodec(registry, SchemaName.CALL, topic_names.calls)
    recordings = AvroCodec(registry, SchemaName.RECORDING, topic_names.recordings)
    url = server.url
    links = {
        "p-ok": [url("/audio/p-ok.mp3?sig=secret")],
        "p-gone": [url("/status/404/p-gone.mp3")],
        "p-flaky": [url("/flaky/p-flaky.mp3?failures=1")],
        "p-html": [url("/html/p-html")],
        "p-big": [url(f"/big/p-big.mp3?size={2 * 1024 * 1024}")],
        "p-private": ["http://private.recordings.test/p-private.mp3"],
    }
    voicemail = url("/audio/p-ok-vm.wav")
    batch = [call_record(call_id, recordings=urls) for call_id, urls in links.items()]
    batch[0]["voicemailUrls"] = [voicemail]
    worker = workers.start("recordings", True, **recordings_env(store))
    produce_calls(endpoints.kafka_bootstrap_servers, calls, batch)
    # A later version with the same links: nothing new to fetch.
    again = call_record("p-ok", version=2, recordings=links["p-ok"], voicemails=[voicemail])
    produce_calls(endpoints.kafka_bootstrap_servers, calls, [again])

    records = read_recordings(endpoints.kafka_bootstrap_servers, recordings, count=7)
    time.sleep(2)  # anything more would be a second fetch
    records = read_recordings(endpoints.kafka_bootstrap_servers, recordings, count=7)

    by_key = {key: record for key, record in records}
    assert len(records) == len(by_key) == 7, [k for k, _ in records]
    status = {key: (r["status"], r["error"]) for key, r in by_key.items()}
    assert status["p-ok/recording"] == ("stored", None)
    assert status["p-ok/voicemail"] == ("stored", None)
    assert status["p-flaky/recording"] == ("stored", None)
    assert status["p-gone/recording"][0] == "expired"
    assert status["p-html/recording"][0] == "rejected"
    assert status["p-big/recording"][0] == "rejected"
    assert status["p-private/recording"] == (
        "rejected",
        "private.recordings.test resolves to 10.0.0.1 is a private address",
    )
    ok = by_key["p-ok/recording"]
    assert ok["sourceUrl"] == links["p-ok"][0] and ok["callVersion"] == 1
    assert ok["contentType"] == "audio/mpeg" and ok["sizeBytes"] == 64 * 1024
    assert ok["storageUri"].startswith((store / "recordings/2026/03/02/p-ok/").as_uri())
    stored = {p.as_uri() for p in stored_objects(store)}
    assert stored == {by_key[k]["storageUri"] for k in status if status[k][0] == "stored"}
    assert spooled(store) == []
    assert server.count("/audio/p-ok.mp3") == 1
    assert server.count("/status/404/p-gone.mp3") == 1
    assert server.count("/flaky/p-flaky.mp3") == 2
    metrics = worker.metrics()
    assert 'onoff_recordings_downloads_total{status="stored"} 3.0' in metrics
    assert 'onoff_recordings_downloads_total{status="rejected"} 3.0' in metrics
    assert "onoff_recordings_in_flight 0.0" in metrics
    assert "secret" not in worker.log.read_text()


def test_calls_past_the_retention_are_forgotten_also_after_a_restart(
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
    workers: WorkerFactory,
    server: AudioServer,
    tmp_path: Path,
) -> None:
    calls = AvroCodec(registry, SchemaName.CALL, topic_names.calls)
    recordings = AvroCodec(registry, SchemaName.RECORDING, topic_names.recordings)
    env = recordings_env(tmp_path / "store") | {
        "ONOFF_BRIDGE_RECORDINGS__RETENTION_DAYS": "1",
        "ONOFF_BRIDGE_RECORDINGS__EXPIRY_INTERVAL_S": "0.5",
    }
    old = call_record("e-old", recordings=[server.url("/audio/e-old.mp3")])
    recent = call_record("e-new", recordings=[server.url("/audio/e-new.mp3")])
    recent["lastUpdatedAt"] = old["lastUpdatedAt"] + timedelta(days=3)

    def handled_calls(worker: Worker) -> float | None:
        for line in worker.metrics().splitlines():
            if line.startswith("onoff_recordings_handled_calls "):
                return float(line.split()[1])
        return None

    def wait_until_handled(worker: Worker, count: float) -> None:
        deadline = time.monotonic() + 30
        while handled_calls(worker) != count:
            assert time.monotonic() < deadline, f"handled calls: {handled_calls(worker)}"
            time.sleep(0.3)

    worker = workers.start("recordings", True, **env)
    produce_calls(endpoints.kafka_bootstrap_servers, calls, [old])
    read_recordings(endpoints.kafka_bootstrap_servers, recordings, count=1)
    wait_until_handled(worker, 1)
    # Three days later on event time, the old call is past the one-day retention.
    produce_calls(endpoints.kafka_bootstrap_servers, calls, [recent])
    records = read_recordings(endpoints.kafka_bootstrap_servers, recordings, count=2)
    assert sorted(key for key, _ in records) == ["e-new/recording", "e-old/recording"]
    wait_until_handled(worker, 1)

    # The tombstone is in the changelog: a new worker recovers one call, not two.
    assert worker.stop() == 0
    restarted = workers.start("recordings", True, **env)
    wait_until_handled(restarted, 1)
    time.sleep(1)  # a recovered e-old would show up here
    assert handled_calls(restarted) == 1
    assert server.count("/audio/e-old.mp3") == 1
