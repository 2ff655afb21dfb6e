"""The support tools over SASL_SSL Kafka and the registry behind basic auth.

Only the ingress runs: a body it quarantines and one it accepts go through it,
and a record dedupe once refused (valid now) sits in the dead-letter topic.
`deadletter list`, `deadletter replay` (reading, judging and writing) and
`inspect call` then run as child processes with nothing but the cluster's
ONOFF_BRIDGE_* variables, the way an operator runs them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack.secure import SecureEndpoints
from processors.records import rejected_record
from schemas import AvroCodec, SchemaName
from tests.cluster.helpers import API_KEY, Layout, children, cli, client_env, spawn
from tests.conftest import sample
from tests.integration.processor_fixtures import free_port


def test_list_replay_and_inspect_work_on_the_secured_cluster(
    cluster: SecureEndpoints,
    layout: Layout,
    stack_registry: SchemaRegistryClient,
    tmp_path: Path,
) -> None:
    topics = layout.topics
    env = client_env(cluster, layout, tmp_path)
    applied = cli("topics", "apply", env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    good = sample("cdr-answered-inbound.json") | {"id": f"sec-tools-{layout.app_id_prefix}"}
    with children() as running:
        port = free_port()
        ingress = spawn(
            ["ingress", "--port", str(port)],
            env,
            tmp_path / "ingress.log",
            f"http://127.0.0.1:{port}/readyz",
        )
        running.append(ingress)
        ingress.wait_healthy()
        base = f"http://127.0.0.1:{port}/v1/onoff/cdr"
        headers = {"x-api-key": API_KEY, "x-request-id": "sec-bad-1"}
        bad = httpx.post(base, content=b'{"id": "sec-bad", "callStarted": 5', headers=headers)
        assert bad.json()["status"] == "quarantined"
        assert httpx.post(base, json=good, headers={"x-api-key": API_KEY}).status_code == 200
    # A delivery dedupe refused (say, past an earlier retention), valid today.
    events = AvroCodec(stack_registry, SchemaName.CALL_EVENT, topics.cdr_raw)
    refused = sample("cdr-missed-inbound.json")
    delivery = {
        **{f: None for f in ("eventName", "onoffUserName", "onoffUserEmail", "onoffUserNumber")},
        "id": f"sec-refused-{layout.app_id_prefix}",
        "callStarted": datetime.now(UTC),
        "ingest": {
            "receivedAt": datetime.now(UTC),
            "requestId": "r-1",
            "contentSha256": "0" * 64,
            "apiKeyName": "default",
            "path": "/v1/onoff/cdr",
        },
    } | {k: refused[k] for k in ("callDirection", "callStatus")}
    dead = AvroCodec(stack_registry, SchemaName.REJECTED_DELIVERY, topics.deadletter)
    record = rejected_record(
        "dedupe", topics.cdr_raw, 0, 0, events.encode(delivery), "the call is past the retention"
    )
    producer = Producer(cluster.kafka_config())
    producer.produce(topics.deadletter, key=b"k", value=dead.encode(record))
    assert producer.flush(30) == 0

    listed = cli("deadletter", "list", "--no-progress", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "sec-bad-1" in listed.stdout and "2 shown of 2 dead letters" in listed.stdout
    replayed = cli("deadletter", "replay", "--no-progress", env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.splitlines()[-1] == "1 moved, 1 still fails", replayed.stdout
    again = cli("deadletter", "replay", "--no-progress", env=env)
    assert again.stdout.splitlines()[-1] == "1 already replayed, 1 still fails", again.stdout
    inspected = cli("inspect", "call", good["id"], "--no-progress", env=env)
    assert inspected.returncode == 0, inspected.stderr
    assert "1 delivery" in inspected.stdout and "key default" in inspected.stdout
    assert "0 versions" in inspected.stdout  # no dedupe runs in this test
    for output in (listed, replayed, again, inspected):
        assert cluster.password.get_secret_value() not in output.stdout + output.stderr
