"""`make bench-metrics`: call versions/s and peak RSS of one metrics worker catching up.

The calls topic gets the versions that dedupe makes of the same realistic
deliveries as `make bench-dedupe` (folded here with `processors.merge.fold`);
one worker (`onoff-bridge worker metrics`) starts from the beginning and is
timed from its first call version to the moment every version is counted and
its window updates have stopped. In the same run, the ceiling: a plain
confluent-kafka consumer decoding the same records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.common import (
    bench_topics,
    free_port,
    machine,
    peak_rss_mb,
    save,
    say,
    stack,
    worker_env,
)
from bench.dedupe import ceiling, deliveries, load, processed
from processors.merge import Outcome, fold
from schemas import AvroCodec, SchemaName, registry_client

DELIVERIES = int(os.environ.get("BENCH_DELIVERIES", "200000"))


def call_versions(count: int) -> list[tuple[str, dict[str, Any]]]:
    calls: dict[str, dict[str, Any]] = {}
    versions = []
    for call_id, event in deliveries(count):
        outcome, call = fold(calls.get(call_id), event)
        if outcome is Outcome.NEW_VERSION:
            calls[call_id] = call
            versions.append((call_id, call))
    return versions


def main() -> None:
    endpoints = stack()
    topics = bench_topics(endpoints)
    registry = registry_client(endpoints.schema_registry_url)
    codec = AvroCodec(registry, SchemaName.CALL, topics.calls)
    versions = call_versions(DELIVERIES)
    say(f"loading {len(versions)} call versions into {topics.calls}")
    load(endpoints.kafka_bootstrap_servers, codec, topics.calls, versions)
    say("ceiling: a plain consumer decoding the same records")
    ceiling_rate = ceiling(endpoints.kafka_bootstrap_servers, codec, topics.calls, len(versions))
    say(f"  {ceiling_rate} records/s")
    port = free_port()
    env = worker_env(endpoints, topics, port, "metrics")
    say("one metrics worker catching up")
    worker = subprocess.Popen([sys.executable, "-m", "onoff_bridge", "worker", "metrics"], env=env)
    first = None
    done_at = None
    try:
        deadline = time.monotonic() + 1800
        counted, updates, updates_seen_at = 0.0, -1.0, time.perf_counter()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                counted = processed(port, "metrics", exclude="window_")
                window_updates = processed(port, "metrics") - counted
            except httpx.HTTPError:
                continue
            now = time.perf_counter()
            if counted and first is None:
                first = now
            if window_updates != updates:
                updates, updates_seen_at = window_updates, now
            if counted >= len(versions) and now - updates_seen_at > 3:
                done_at = updates_seen_at
                break
        rss = peak_rss_mb(worker.pid)
    finally:
        worker.terminate()
        worker.wait(60)
    assert first is not None and done_at is not None, f"counted {counted} of {len(versions)}"
    rate = round(len(versions) / (done_at - first), 1)
    say(f"  {rate} call versions/s, peak RSS {rss:.0f} MB")
    result = {
        "benchmark": "metrics",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "call_versions": len(versions),
        "window_updates": updates,
        "worker_versions_per_s": rate,
        "worker_peak_rss_mb": round(rss, 1),
        "ceiling_plain_consumer_decode_per_s": ceiling_rate,
        "ratio_to_ceiling": round(rate / ceiling_rate, 3),
    }
    path = save("metrics", result)
    print(json.dumps(result, indent=2))
    say(f"saved {path}")


if __name__ == "__main__":
    main()
