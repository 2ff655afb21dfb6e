"""`onoff-bridge deadletter list` and `replay` on the real broker, registry, ingress and dedupe.

The ingress is first run as it was before a fix: an older rule that wanted
phone numbers as JSON strings (today's parser keeps a number's digits), so a
body with a numeric `externalNumber` is quarantined, twice under the same
request id. Beside it: a truncated body, an SMS with a bad date, a raw
record dedupe cannot decode, and a record the metrics worker could not read.
Then, with today's ingress rules, `list` shows them all without a marker
value in clear, `replay --dry-run` writes nothing, `replay` moves exactly the
fixed body to onoff.cdr.raw (dedupe folds it into a call), reports why each
other one stays, and a second `replay` writes nothing more.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from typer.testing import CliRunner

from ingress.webhooks import CALL_FIELDS
from onoff_bridge.cli import app
from onoff_bridge.deadletters import REPLAY_HEADER
from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from processors.records import rejected_record
from schemas import AvroCodec, SchemaName
from tests.integration.ingress_fixtures import (
    CDR_PATH,
    SMS_PATH,
    AppFactory,
    decode_values,
    read_topic,
    running_apps,
    topic_size,
    with_key,
)
from tests.integration.processor_fixtures import WorkerFactory
from tests.integration.test_metrics_pipeline import WORKER_ENV

MARKERS = {
    "number": "33612345678",
    "sms number": "+15557730042",
    "e-mail": "zebulon.deadman@example.test",
    "name": "Ottilie Deadwoman",
    "metrics value": "ottilie.deadwoman@example.test",
}
RUN = uuid.uuid4().hex[:8]
IDS = {name: f"dl-{name}-{RUN}" for name in ("fixed", "truncated", "sms", "ok")}


def old_string_rule(value: Any) -> str:
    """The rule before the fix: a phone number written as a JSON number was refused."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def _ago(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def call_body(call_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": call_id,
        "eventName": "CDR",
        "onoffUserName": MARKERS["name"],
        "onoffUserEmail": MARKERS["e-mail"],
        "onoffUserNumber": "+15557730001",
        "callStarted": _ago(timedelta(minutes=30)),
        "callEnded": _ago(timedelta(minutes=28)),
        "callDuration": 95,
        "callDirection": "INBOUND",
        "callStatus": "ANSWERED",
        **fields,
    }


@pytest.fixture
def ingress_app(endpoints: StackEndpoints, topic_names: TopicNames) -> Iterator[AppFactory]:
    with running_apps(endpoints, topic_names) as start:
        yield start


def cli_env(endpoints: StackEndpoints, topics: TopicNames) -> dict[str, str]:
    env = {
        "ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap_servers,
        "ONOFF_BRIDGE_SCHEMA_REGISTRY_URL": endpoints.schema_registry_url,
        "ONOFF_BRIDGE_DEDUPE_RETENTION_DAYS": "30",
    }
    return env | {f"ONOFF_BRIDGE_TOPICS__{k.upper()}": v for k, v in topics.model_dump().items()}


def run_cli(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--no-progress"], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def lines_of(output: str, request_id: str) -> list[str]:
    return [line for line in output.splitlines() if request_id in line]


def assert_no_marker(output: str) -> None:
    for what, marker in MARKERS.items():
        assert marker.lower() not in output.lower(), f"{what} in:\n{output}"


def test_list_and_replay_move_what_passes_today_once_and_report_the_rest(
    endpoints: StackEndpoints,
    topic_names: TopicNames,
    registry: SchemaRegistryClient,
    ingress_app: AppFactory,
    workers: WorkerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    servers = endpoints.kafka_bootstrap_servers
    fixed = call_body(IDS["fixed"], externalNumber=int(MARKERS["number"]))
    with monkeypatch.context() as patch:
        old_rules = CALL_FIELDS | {"externalNumber": old_string_rule}
        patch.setattr("ingress.bootstrap.CALL_FIELDS", old_rules)
        old_ingress = ingress_app()
        posts = [
            (CDR_PATH, orjson.dumps(fixed), "fixed"),
            (CDR_PATH, orjson.dumps(fixed), "fixed"),  # a copy: the same request id and body
            (CDR_PATH, orjson.dumps(call_body(IDS["truncated"]))[:60], "truncated"),
            (
                SMS_PATH,
                orjson.dumps(
                    {"id": IDS["sms"], "date": MARKERS["sms number"], "body": MARKERS["name"]}
                ),
                "sms",
            ),
        ]
        for path, body, name in posts:
            answer = old_ingress.post(
                path, content=body, headers=with_key(**{"x-request-id": IDS[name]})
            )
            assert answer.status_code == 200 and answer.json()["status"] == "quarantined"
        accepted = old_ingress.post(CDR_PATH, json=call_body(IDS["ok"]), headers=with_key())
        assert accepted.status_code == 200 and accepted.json() == {}
    # dedupe meets a record it cannot decode; the metrics worker once met one on onoff.calls.
    producer = Producer({"bootstrap.servers": servers})
    producer.produce(topic_names.cdr_raw, key=b"dl-garbage", value=b"not avro at all")
    dead = AvroCodec(registry, SchemaName.REJECTED_DELIVERY, topic_names.deadletter)
    reason = f"cannot decode a record of {topic_names.calls}: '{MARKERS['metrics value']}'"
    metrics_reject = rejected_record("metrics", topic_names.calls, 0, 7, b"\x00bad", reason)
    producer.produce(topic_names.deadletter, key=b"k", value=dead.encode(metrics_reject))
    assert producer.flush(30) == 0
    workers.start("dedupe", True, **WORKER_ENV)
    deadline = time.monotonic() + 60
    while topic_size(servers, topic_names.deadletter) < 6:
        assert time.monotonic() < deadline, "dedupe did not dead-letter the garbage record"
        time.sleep(0.5)
    env = cli_env(endpoints, topic_names)

    listed = run_cli(env, "deadletter", "list")
    assert "6 shown of 6 dead letters" in listed
    assert len(lines_of(listed, IDS["fixed"])) == 2
    [truncated] = lines_of(listed, IDS["truncated"])
    assert "ingress" in truncated and CDR_PATH in truncated and "60 B" in truncated
    assert "body is not valid JSON" in truncated and "key=primary" in truncated
    [sms] = lines_of(listed, IDS["sms"])
    assert SMS_PATH in sms and "date: not an ISO-8601 date-time: …" in sms
    assert len(lines_of(listed, f"{topic_names.cdr_raw}/")) == 1  # dedupe's, by position
    assert "metrics" in listed and "cannot decode a record of" in listed
    assert_no_marker(listed)
    assert "1 shown of 6" in run_cli(env, "deadletter", "list", "--limit", "1")
    assert "0 shown of 0" in run_cli(env, "deadletter", "list", "--since", "2999-01-01")
    assert "6 shown of 6" in run_cli(env, "deadletter", "list", "--since", "1h")

    raw_before = topic_size(servers, topic_names.cdr_raw)
    dry = run_cli(env, "deadletter", "replay", "--dry-run")
    assert topic_size(servers, topic_names.cdr_raw) == raw_before
    assert [line.split("  ")[0].strip() for line in lines_of(dry, IDS["fixed"])] == [
        "would move",
        "already replayed",
    ]

    first = run_cli(env, "deadletter", "replay")
    assert_no_marker(first)
    assert topic_size(servers, topic_names.cdr_raw) == raw_before + 1
    moved, copy = lines_of(first, IDS["fixed"])
    assert moved.startswith("moved") and f"id {IDS['fixed']}" in moved
    assert copy.startswith("already replayed") and "(this run)" in copy
    [still] = lines_of(first, IDS["truncated"])
    assert still.startswith("still fails") and "body is not valid JSON" in still
    [sms_still] = lines_of(first, IDS["sms"])
    assert sms_still.startswith("still fails") and "date: not an ISO-8601 date-time: …" in sms_still
    [garbage] = lines_of(first, f"{topic_names.cdr_raw}/")
    assert garbage.startswith("still fails") and "not a Confluent-framed" in garbage
    [metrics_line] = lines_of(first, f"{topic_names.calls}/0/7")
    assert metrics_line.startswith("not replayable") and "changelog" in metrics_line
    assert first.splitlines()[-1] == (
        "1 moved, 1 already replayed, 3 still fails, 1 not replayable"
    )

    # The replayed record: what the ingress would write today, with the original
    # receivedAt and key name, and a request id derived from the dead letter.
    messages = read_topic(servers, topic_names.cdr_raw)
    replayed = [m for m in messages if dict(m.headers() or []).get(REPLAY_HEADER)]
    [record] = decode_values(registry, SchemaName.CALL_EVENT, topic_names.cdr_raw, replayed)
    assert record["id"] == IDS["fixed"] and record["externalNumber"] == MARKERS["number"]
    digest = hashlib.sha256(orjson.dumps(fixed)).hexdigest()[:16]
    assert record["ingest"]["requestId"] == f"{IDS['fixed']}.replay-{digest}"
    assert record["ingest"]["apiKeyName"] == "primary"
    assert record["ingest"]["receivedAt"] < datetime.now(UTC) - timedelta(seconds=1)
    # dedupe folds it into a call like any delivery.
    calls = AvroCodec(registry, SchemaName.CALL, topic_names.calls)
    deadline = time.monotonic() + 60
    while True:
        found = {
            calls.decode(m.value() or b"")["id"] for m in read_topic(servers, topic_names.calls)
        }
        if IDS["fixed"] in found or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {IDS["fixed"], IDS["ok"]} <= found

    second = run_cli(env, "deadletter", "replay")
    assert topic_size(servers, topic_names.cdr_raw) == raw_before + 1
    assert [line.split("  ")[0].strip() for line in lines_of(second, IDS["fixed"])] == [
        "already replayed",
        "already replayed",
    ]
    assert second.splitlines()[-1] == "2 already replayed, 3 still fails, 1 not replayable"

    only_sms = run_cli(env, "deadletter", "replay", "--id", IDS["sms"], "--id", "no-such-id")
    assert len(only_sms.splitlines()) == 3
    assert only_sms.splitlines()[1].startswith("not found") and "no-such-id" in only_sms
