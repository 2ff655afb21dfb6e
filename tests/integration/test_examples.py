"""The consumer examples work against the real broker and registry, and match the schemas."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from schemas import AvroCodec
from schemas.catalog import SchemaName, load_schema
from tests.integration.recordings_fixtures import call_record, produce_calls

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_python_consumer_prints_a_line_per_call_and_no_personal_data(
    endpoints: StackEndpoints, registry: SchemaRegistryClient, topic_names: TopicNames
) -> None:
    codec = AvroCodec(registry, SchemaName.CALL, topic_names.calls)
    first = call_record("call-ex-1") | {"callDirection": "INBOUND", "callDuration": 42}
    second = call_record("call-ex-1", version=2) | {"onoffUserNumber": "+15550001234"}
    third = call_record("call-ex-2") | {"onoffUserEmail": "ann@example.com"}
    produce_calls(endpoints.kafka_bootstrap_servers, codec, [first, second, third])

    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap_servers,
        "SCHEMA_REGISTRY_URL": endpoints.schema_registry_url,
    }
    env = {k: v for k, v in env.items() if not k.startswith("ONOFF_BRIDGE_")}
    run = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "consume_calls.py"),
            f"--topic={topic_names.calls}",
            "--from-beginning",
            "--max-records=3",
            "--idle-timeout=30",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert run.returncode == 0, run.stderr
    lines = sorted(run.stdout.splitlines())
    assert len(lines) == 3, run.stdout
    assert lines[0].startswith("call-ex-1 v1 INBOUND - 2026-03-02 09:21:41") and lines[0].endswith(
        " 42s"
    )
    assert lines[1].startswith("call-ex-1 v2 ")
    assert lines[2].startswith("call-ex-2 v1 ")
    assert "5550001234" not in run.stdout and "ann@example.com" not in run.stdout


def _columns(sql: str, table: str) -> list[str]:
    body = re.search(rf"CREATE TABLE {table} \((.*?)\n\) WITH", sql, re.S)
    assert body, table
    names = [line.split()[0] for line in body.group(1).strip().splitlines()]
    return [n for n in names if n != "PRIMARY"]


def test_the_flink_tables_follow_the_avro_schemas_field_by_field() -> None:
    sql = (EXAMPLES / "flink-sql" / "tables.sql").read_text()
    for table, name in (
        ("onoff_calls", SchemaName.CALL),
        ("onoff_user_call_metrics", SchemaName.USER_CALL_METRICS),
    ):
        fields = [f["name"] for f in json.loads(load_schema(name))["fields"]]
        # The first column is the record key; the rest are the value, in schema order.
        assert _columns(sql, table)[1:] == fields, table
