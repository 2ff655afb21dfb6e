"""The recordings worker end to end: Call records in, objects and Recording records out."""

from __future__ import annotations

import json
import time
from datetime import timedelta
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
        "p-two": [url("/audio/p-two-a.mp3?sig=a"), url("/audio/p-two-b.mp3?sig=b")],
    }
    voicemail = url("/audio/p-ok-vm.wav")
    batch = [call_record(call_id, recordings=urls) for call_id, urls in links.items()]
    batch[0]["voicemailUrls"] = [voicemail]
    worker = workers.start("recordings", True, **recordings_env(store))
    produce_calls(endpoints.kafka_bootstrap_servers, calls, batch)
    # A later version with the same links: nothing new to fetch. Then a third with one
    # new link, the sentinel: same call, so it is handled after the second version.
    again = call_record("p-ok", version=2, recordings=links["p-ok"], voicemails=[voicemail])
    sentinel = url("/audio/p-ok-sentinel.mp3")
    third = call_record(
        "p-ok", version=3, recordings=[*links["p-ok"], sentinel], voicemails=[voicemail]
    )
    produce_calls(endpoints.kafka_bootstrap_servers, calls, [again, third])

    every_link = [
        record_key(call_id, "recording", link) for call_id, urls in links.items() for link in urls
    ]
    records = read_recordings_until(
        endpoints.kafka_bootstrap_servers,
        recordings,
        record_key("p-ok", "recording", sentinel),
        expected=[*every_link, record_key("p-ok", "voicemail", voicemail)],
    )
    # Each link once (by_link checks): anything more would be a second fetch.
    found = by_link(records)
    assert len(found) == 10, sorted(found)
    status = {(c, k, u): (r["status"], r["error"]) for (c, k, u), r in found.items()}

    def of(call_id: str, kind: str = "recording", index: int = 0) -> tuple[str, str, str]:
        return (call_id, kind, voicemail if kind == "voicemail" else links[call_id][index])

    assert status[of("p-ok")] == ("stored", None)
    assert status[of("p-ok", "voicemail")] == ("stored", None)
    assert status[of("p-flaky")] == ("stored", None)
    assert status[of("p-gone")][0] == "expired"
    assert status[of("p-html")][0] == "rejected"
    assert status[of("p-big")][0] == "rejected"
    assert status[of("p-private")] == (
        "rejected",
        "private.recordings.test resolves to 10.0.0.1 is a private address",
    )
    # Two recording links of one call: two records, neither compacted away.
    assert status[of("p-two", index=0)] == status[of("p-two", index=1)] == ("stored", None)
    ok = found[of("p-ok")]
    assert ok["sourceUrl"] == links["p-ok"][0] and ok["callVersion"] == 1
    assert ok["contentType"] == "audio/mpeg" and ok["sizeBytes"] == 64 * 1024
    assert ok["storageUri"].startswith((store / "recordings/2026/03/02/p-ok/").as_uri())
    assert found[("p-ok", "recording", sentinel)]["callVersion"] == 3
    stored = {p.as_uri() for p in stored_objects(store)}
    assert stored == {r["storageUri"] for r in found.values() if r["status"] == "stored"}
    assert spooled(store) == []
    assert server.count("/audio/p-ok.mp3") == 1
    assert server.count("/status/404/p-gone.mp3") == 1
    assert server.count("/flaky/p-flaky.mp3") == 2
    metrics = worker.metrics()
    assert 'onoff_recordings_downloads_total{status="stored"} 6.0' in metrics
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
    assert sorted(r["callId"] for _, r in records) == ["e-new", "e-old"]
    wait_until_handled(worker, 1)

    # The tombstone is in the changelog: a new worker recovers one call, not two.
    assert worker.stop() == 0
    restarted = workers.start("recordings", True, **env)
    # A sentinel call, read only after recovery: once it is counted, the table holds
    # what was recovered plus the sentinel, and a recovered e-old would make it three.
    produce_calls(
        endpoints.kafka_bootstrap_servers,
        calls,
        [call_record("e-sentinel", recordings=[server.url("/audio/e-sentinel.mp3")])],
    )
    fetched = 'onoff_processor_records_total{outcome="fetched",processor="recordings"} 1.0'
    deadline = time.monotonic() + 30
    while fetched not in restarted.metrics():
        assert time.monotonic() < deadline, "the sentinel call was never handled"
        time.sleep(0.3)
    assert handled_calls(restarted) == 2
    assert server.count("/audio/e-old.mp3") == 1
