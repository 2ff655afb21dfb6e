"""`make bench-ingress`: accepted CDR/s, latency and RSS of one ingress process on the local Kafka.

In the same run, for scale: a null Starlette endpoint (parse JSON, answer
200) driven by the same wrk load, and confluent-kafka's raw producer rate for
the same records (Avro-encoded, idempotent, acks=all). Then the ingress again
at half its measured rate, for latency under a load it can carry. Last, the
ingress with its spool on, with Kafka up and then stopped, and the rate at
which it drains once Kafka is back (`bench/spooling.py`).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from bench.common import (
    bench_topics,
    child,
    free_port,
    machine,
    peak_rss_mb,
    require,
    save,
    say,
    stack,
    topics_env,
)
from bench.spooling import measure_spooling
from ingress.publisher import producer_config
from ingress.webhooks import CALL_FIELDS, IngestMetadata, build_record, parse_json_object
from onoff_bridge.topics import TopicSpec, ensure_topics
from schemas import AvroCodec, SchemaName, registry_client

LUA = Path(__file__).parent / "cdr.lua"
DURATION_S = int(os.environ.get("BENCH_DURATION_S", "15"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
SAMPLE = (
    Path(__file__).parents[1] / "tests" / "samples" / "cdr-answered-inbound-update.json"
).read_bytes()


def wrk(
    url: str, api_key: str, duration_s: int, connections: int, delay_ms: int = 0
) -> dict[str, Any]:
    binary = require("wrk", "install it with: apt-get install wrk")
    output = subprocess.run(
        [
            binary,
            "-t2",
            f"-c{connections}",
            f"-d{duration_s}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            url,
        ],
        env={**os.environ, "WRK_API_KEY": api_key, "WRK_DELAY_MS": str(delay_ms)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    summary: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    errors = sum(summary["errors"].values())
    seconds = summary["duration_us"] / 1e6
    summary["ok_per_s"] = round((summary["requests"] - errors) / seconds, 1)
    summary["error_count"] = errors
    summary["latency_ms"] = {k: round(v / 1000, 2) for k, v in summary.pop("latency_us").items()}
    return summary


def raw_producer_rate(bootstrap: str, registry_url: str, topic: str, count: int = 100_000) -> float:
    codec = AvroCodec(registry_client(registry_url), SchemaName.CALL_EVENT, topic)
    body = parse_json_object(SAMPLE)
    producer = Producer(producer_config(bootstrap, message_timeout_ms=30_000))
    values = []
    for i in range(count):
        meta = IngestMetadata(datetime.now(UTC), f"r{i}", "bench", "/v1/onoff/cdr")
        parsed = build_record(body | {"id": f"raw-{i}"}, CALL_FIELDS, meta)
        values.append((parsed.key.encode(), codec.encode(parsed.record)))
    started = time.perf_counter()
    for key, value in values:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    return round(count / (time.perf_counter() - started), 1)


def main() -> None:
    endpoints = stack()
    topics = bench_topics(endpoints)
    api_key = secrets.token_urlsafe(16)
    ingress_port, null_port = free_port(), free_port()
    env = {
        "ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap_servers,
        "ONOFF_BRIDGE_SCHEMA_REGISTRY_URL": endpoints.schema_registry_url,
        "ONOFF_BRIDGE_API_KEY": api_key,
        "ONOFF_BRIDGE_LOG_LEVEL": "WARNING",
        **topics_env(topics),
    }
    result: dict[str, Any] = {
        "benchmark": "ingress",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load": {"generator": "wrk -t2", "connections": CONNECTIONS, "duration_s": DURATION_S},
    }
    say(f"null endpoint: {DURATION_S}s with {CONNECTIONS} connections")
    with child(
        [sys.executable, "-m", "bench.null_app", str(null_port)],
        {},
        f"http://127.0.0.1:{null_port}/",
    ):
        result["null_endpoint"] = wrk(
            f"http://127.0.0.1:{null_port}/v1/onoff/cdr", api_key, DURATION_S, CONNECTIONS
        )
    say(f"  {result['null_endpoint']['ok_per_s']} req/s")

    ingress = [sys.executable, "-m", "onoff_bridge", "ingress", "--port", str(ingress_port)]
    with child(ingress, env, f"http://127.0.0.1:{ingress_port}/readyz") as process:
        url = f"http://127.0.0.1:{ingress_port}/v1/onoff/cdr"
        wrk(url, api_key, 3, CONNECTIONS)  # warm-up: connections, schema ids, JIT-free but caches
        say(f"ingress: {DURATION_S}s with {CONNECTIONS} connections")
        full = wrk(url, api_key, DURATION_S, CONNECTIONS)
        say(f"  {full['ok_per_s']} accepted/s, p99 {full['latency_ms']['p99']} ms")
        # Half the measured rate: the fewest keep-alive connections (closed loop) that
        # reach it. Spacing requests with wrk's delay() instead sends them in bursts.
        half_rate = full["ok_per_s"] / 2
        connections = CONNECTIONS
        for candidate in (2, 4, 6, 8, 12, 16, 24, 32, 48):
            probe = wrk(url, api_key, 3, candidate)
            if probe["ok_per_s"] >= half_rate:
                connections = candidate
                break
        say(f"ingress at about half that rate ({half_rate:.0f}/s): {connections} connections")
        half = wrk(url, api_key, DURATION_S, connections)
        half |= {"target_per_s": round(half_rate, 1), "connections": connections}
        rss = peak_rss_mb(process.pid)
    result["ingress"] = full | {"peak_rss_mb": round(rss, 1)}
    result["ingress_half_rate"] = half
    say("raw confluent-kafka producer, same records")
    raw_topic = f"{topics.cdr_raw}.producer-baseline"
    ensure_topics(endpoints.kafka_bootstrap_servers, [TopicSpec(raw_topic, 6, {})])
    result["raw_producer_per_s"] = raw_producer_rate(
        endpoints.kafka_bootstrap_servers, endpoints.schema_registry_url, raw_topic
    )
    result["spooling"] = measure_spooling(endpoints, api_key, wrk, DURATION_S, CONNECTIONS)
    result["ratios"] = {
        "ingress_to_null_endpoint": round(
            full["ok_per_s"] / result["null_endpoint"]["ok_per_s"], 3
        ),
        "ingress_to_raw_producer": round(full["ok_per_s"] / result["raw_producer_per_s"], 3),
        # The goal: spooling keeps at least half the normal accepted rate.
        "spooling_to_ingress": round(
            result["spooling"]["kafka_stopped"]["ok_per_s"] / full["ok_per_s"], 3
        ),
    }
    path = save("ingress", result)
    print(json.dumps(result, indent=2))
    say(f"saved {path}")


if __name__ == "__main__":
    main()
