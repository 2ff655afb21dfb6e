"""The ingress with its spool on: accepted req/s with Kafka up, then stopped, then the drain rate.

Part of `make bench-ingress`. Kafka is stopped on purpose, so this phase runs a
broker of its own (`onoff_bridge.localstack.dedicated`) beside the shared one,
with the shared registry, and one ingress process with the spool in a
temporary directory:

1. spool on, Kafka up: the normal accepted rate (the spool untouched);
2. Kafka stopped: one request waits the delivery timeout and is spooled, then
   the same wrk load: every 200 is now an fsynced spool append (group commit);
3. Kafka started again, no load: records drained per second, from the first
   drained record to an empty spool (the broker's start-up time excluded).
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.common import bench_topics, child, free_port, peak_rss_mb, say, topics_env
from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.localstack.dedicated import DedicatedKafka, dedicated_settings

Wrk = Callable[[str, str, int, int], dict[str, Any]]

SAMPLE = (
    Path(__file__).parents[1] / "tests" / "samples" / "cdr-answered-inbound-update.json"
).read_bytes()


def measure_spooling(
    endpoints: StackEndpoints, api_key: str, wrk: Wrk, duration_s: int, connections: int
) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="onoff-bench-spool-"))
    kafka = DedicatedKafka(dedicated_settings(home / "kafka", kafka_heap="512m"))
    say(f"spooling: a Kafka of its own at {kafka.bootstrap_servers}")
    kafka.start()
    try:
        own = StackEndpoints(kafka.bootstrap_servers, endpoints.schema_registry_url)
        topics = bench_topics(own)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            "ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS": own.kafka_bootstrap_servers,
            "ONOFF_BRIDGE_SCHEMA_REGISTRY_URL": own.schema_registry_url,
            "ONOFF_BRIDGE_API_KEY": api_key,
            "ONOFF_BRIDGE_LOG_LEVEL": "WARNING",
            "ONOFF_BRIDGE_SPOOL_ENABLED": "true",
            "ONOFF_BRIDGE_SPOOL_DIRECTORY": str(home / "spool"),
            **topics_env(topics),
        }
        command = [sys.executable, "-m", "onoff_bridge", "ingress", "--port", str(port)]
        with child(command, env, f"{base}/readyz") as process:
            url = f"{base}/v1/onoff/cdr"
            # Warm-up: connections, schema ids, and a broker whose JVM just started.
            wrk(url, api_key, 10, connections)
            say(f"spooling: spool on, Kafka up, {duration_s}s with {connections} connections")
            normal = wrk(url, api_key, duration_s, connections)
            say(f"  {normal['ok_per_s']} accepted/s, p99 {normal['latency_ms']['p99']} ms")

            kafka.stop()
            prime = httpx.post(url, content=SAMPLE, headers={"x-api-key": api_key}, timeout=30)
            assert prime.status_code == 200, prime.text  # waited the delivery timeout, spooled
            say(f"spooling: Kafka stopped, {duration_s}s with {connections} connections")
            spooling = wrk(url, api_key, duration_s, connections)
            say(f"  {spooling['ok_per_s']} accepted/s, p99 {spooling['latency_ms']['p99']} ms")
            spooled = int(_metric(base, "onoff_ingress_spool_records"))
            spool_bytes = int(_metric(base, "onoff_ingress_spool_bytes"))

            say(f"spooling: Kafka started again, draining {spooled:,} records")
            kafka.start()
            drain = _measure_drain(base)
            say(f"  {drain['records_per_s']:,.0f} records/s")
            rss = peak_rss_mb(process.pid)
    finally:
        if kafka.running:
            kafka.stop()
        shutil.rmtree(home, ignore_errors=True)
    return {
        "kafka": "a broker of its own (512 MiB heap, as the shared one), the shared registry",
        "spool_on_kafka_up": normal,
        "kafka_stopped": spooling,
        "spooled_records": spooled,
        "spooled_bytes": spool_bytes,
        "drain": drain,
        "peak_rss_mb": round(rss, 1),
        "ratio_spooling_to_kafka_up": round(spooling["ok_per_s"] / normal["ok_per_s"], 3),
    }


def _measure_drain(base: str, timeout_s: float = 600.0) -> dict[str, Any]:
    """From the first record drained to an empty spool, polled every 20 ms."""
    deadline = time.monotonic() + timeout_s
    start_count = _metric(base, "onoff_ingress_spool_drained_total")
    while _metric(base, "onoff_ingress_spool_drained_total") == start_count:
        if time.monotonic() > deadline:
            raise RuntimeError("the spool did not start draining")
        time.sleep(0.02)
    started = time.monotonic()
    first = _metric(base, "onoff_ingress_spool_drained_total")
    while _metric(base, "onoff_ingress_spool_records") > 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the spool did not drain")
        time.sleep(0.02)
    seconds = time.monotonic() - started
    drained = _metric(base, "onoff_ingress_spool_drained_total") - first
    return {
        "records": int(drained),
        "seconds": round(seconds, 2),
        "records_per_s": round(drained / seconds, 1) if seconds else None,
    }


def _metric(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    if found is None:
        raise RuntimeError(f"{name} is not in /metrics")
    return float(found.group(1))
