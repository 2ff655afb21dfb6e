"""`make bench-ingress`: accepted CDR/s, latency and RSS of one ingress process on the local Kafka.

In the same run, for scale: a null Starlette endpoint (parse JSON, answer
200) driven by the same wrk load, and confluent-kafka's raw producer rate for
the same records (Avro-encoded, idempotent, acks=all). Then the ingress again
at half its measured rate, for latency under a load it can carry: an open loop
(vegeta sends at that constant rate whatever the answers' delays, so a slow
answer does not hold back the requests behind it and hide its own cost, as a
closed loop of connections does). Last, the
ingress with its spool on, with Kafka up and then stopped, and the rate at
which it drains once Kafka is back (`bench/spooling.py`).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
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
# Built by `make vegeta` (go install, a pinned version); the Makefile passes its path.
VEGETA = os.environ.get("BENCH_VEGETA", "vegeta")
DURATION_S = int(os.environ.get("BENCH_DURATION_S", "15"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
SAMPLE = (
    Path(__file__).parents[1] / "tests" / "samples" / "cdr-answered-inbound-update.json"
).read_bytes()


def wrk(url: str, api_key: str, duration_s: int, connections: int) -> dict[str, Any]:
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
        env={**os.environ, "WRK_API_KEY": api_key},
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


def open_loop(url: str, api_key: str, rate: float, duration_s: int) -> dict[str, Any]:
    """vegeta at a constant `rate` for `duration_s`: what was sent and answered, and the
    latencies of every request from the moment it was due."""
    binary = require(VEGETA, "build it with: make vegeta")
    sample = json.loads(SAMPLE)
    run = secrets.token_hex(4)
    headers = {"x-api-key": [api_key], "Content-Type": ["application/json"]}
    with tempfile.TemporaryDirectory() as scratch:
        targets, results = Path(scratch) / "targets.json", Path(scratch) / "results.bin"
        # Distinct bodies (vegeta cycles through them): each call id its own, as wrk's are.
        with targets.open("w") as out:
            for i in range(min(int(rate * duration_s), 20_000)):
                body = json.dumps(sample | {"id": f"open-{run}-{i}"}).encode()
                target = {"method": "POST", "url": url, "header": headers}
                target["body"] = base64.b64encode(body).decode()
                out.write(json.dumps(target) + "\n")
        subprocess.run(
            [
                binary,
                "attack",
                "-format=json",
                f"-targets={targets}",
                f"-rate={round(rate)}/1s",
                f"-duration={duration_s}s",
                "-timeout=10s",
                f"-output={results}",
            ],
            check=True,
        )
        report = json.loads(
            subprocess.run(
                [binary, "report", "-type=json", str(results)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
    latencies = report["latencies"]
    return {
        "generator": "vegeta attack (open loop, constant rate)",
        "target_per_s": round(rate, 1),
        "sent_per_s": round(report["rate"], 1),
        "ok_per_s": round(report["throughput"], 1),
        "requests": report["requests"],
        "success_ratio": report["success"],
        "status_codes": report["status_codes"],
        "latency_ms": {
            name: round(latencies[key] / 1e6, 2)
            for name, key in (("p50", "50th"), ("p95", "95th"), ("p99", "99th"), ("max", "max"))
        },
        "errors": report.get("errors") or [],
    }


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
        half_rate = full["ok_per_s"] / 2
        say(f"ingress at half that rate, open loop: {half_rate:.0f}/s for {DURATION_S}s")
        half = open_loop(url, api_key, half_rate, DURATION_S)
        say(f"  p50 {half['latency_ms']['p50']} ms, p99 {half['latency_ms']['p99']} ms")
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
