"""`make bench-dedupe`: events/s and peak RSS of one dedupe worker catching up on a loaded topic.

The topic gets N realistic deliveries (a fixed share of exact retries and of
post-call updates); one worker (`onoff-bridge worker dedupe`) starts from the
beginning and is timed from its first processed record to its last. In the
same run, the ceiling: a plain confluent-kafka consumer decoding the same
records with the same codec.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from confluent_kafka import Consumer, Producer

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
from ingress.publisher import producer_config
from ingress.webhooks import content_sha256
from schemas import AvroCodec, SchemaName, registry_client

DELIVERIES = int(os.environ.get("BENCH_DELIVERIES", "200000"))
STORE = os.environ.get("BENCH_STORE", "memory")
RETRY_SHARE, UPDATE_SHARE = 0.2, 0.2


def deliveries(count: int, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """(call id, CallEvent) pairs: new calls, plus exact retries and post-call updates."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    out: list[tuple[str, dict[str, Any]]] = []
    bodies: list[dict[str, Any]] = []
    while len(out) < count:
        roll = rng.random()
        if bodies and roll < RETRY_SHARE:
            body = rng.choice(bodies)
        elif bodies and roll < RETRY_SHARE + UPDATE_SHARE:
            body = dict(rng.choice(bodies))
            body["callNotes"] = (body.get("callNotes") or "") + " Follow-up noted."
            body["tags"] = [
                *body.get("tags", []),
                {"tagId": f"t-{rng.randint(1, 9)}", "tagName": "Follow-up", "tagColor": "#F5A623"},
            ]
        else:
            started = now - timedelta(minutes=rng.randint(10, 60 * 24 * 7))
            body = {
                "id": f"bench-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}",
                "eventName": "CDR",
                "onoffUserEmail": f"user{rng.randint(1, 500)}@example.com",
                "onoffUserNumber": f"+1555010{rng.randint(1000, 9999)}",
                "externalNumber": f"+1555019{rng.randint(1000, 9999)}",
                "callStarted": started,
                "callEnded": started + timedelta(seconds=rng.randint(0, 900)),
                "callDuration": rng.randint(0, 900),
                "callDirection": rng.choice(["INBOUND", "OUTBOUND"]),
                "callStatus": rng.choice(["ANSWERED", "ANSWERED", "MISSED", "VOICEMAIL"]),
                "callNotes": "Asked for the March invoice.",
                "tags": [{"tagId": "t-0001", "tagName": "Billing", "tagColor": "#32A8FF"}],
            }
            bodies.append(body)
        digest = content_sha256(
            {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in body.items()}
        )
        event = {
            k: None for k in ("voicemailUrl", "voicemailDuration", "callRecordingUrl", "extraJson")
        }
        event |= body | {
            "ingest": {
                "receivedAt": now + timedelta(milliseconds=len(out)),
                "requestId": f"r{len(out)}",
                "contentSha256": digest,
                "apiKeyName": "bench",
                "path": "/v1/onoff/cdr",
            }
        }
        out.append((body["id"], event))
    return out


def load(
    bootstrap: str, codec: AvroCodec, topic: str, events: list[tuple[str, dict[str, Any]]]
) -> None:
    producer = Producer(producer_config(bootstrap, message_timeout_ms=60_000))
    for key, event in events:
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=codec.encode(event))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(120) == 0


def ceiling(bootstrap: str, codec: AvroCodec, topic: str, count: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen, started = 0, None
    deadline = time.monotonic() + 300
    while seen < count and time.monotonic() < deadline:
        for message in consumer.consume(1000, 1.0):
            if message.error() is None:
                started = started or time.perf_counter()
                codec.decode(message.value() or b"")
                seen += 1
    consumer.close()
    return round(seen / (time.perf_counter() - (started or time.perf_counter())), 1)


def processed(port: int, processor: str = "dedupe", exclude: str | None = None) -> float:
    """Records a worker handled, per its /metrics (outcomes starting with `exclude` left out)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    pattern = (
        rf'^onoff_processor_records_total\{{outcome="([^"]*)",processor="{processor}"\}} (\S+)$'
    )
    return sum(
        float(count)
        for outcome, count in re.findall(pattern, text, re.M)
        if exclude is None or not outcome.startswith(exclude)
    )


def main() -> None:
    endpoints = stack()
    topics = bench_topics(endpoints)
    registry = registry_client(endpoints.schema_registry_url)
    codec = AvroCodec(registry, SchemaName.CALL_EVENT, topics.cdr_raw)
    events = deliveries(DELIVERIES)
    calls = len({key for key, _ in events})
    say(f"loading {len(events)} deliveries of {calls} calls into {topics.cdr_raw}")
    load(endpoints.kafka_bootstrap_servers, codec, topics.cdr_raw, events)
    say("ceiling: a plain consumer decoding the same records")
    ceiling_rate = ceiling(endpoints.kafka_bootstrap_servers, codec, topics.cdr_raw, len(events))
    say(f"  {ceiling_rate} records/s")
    port = free_port()
    env = worker_env(endpoints, topics, port, "dedupe", ONOFF_BRIDGE_STORE=STORE)
    import subprocess

    say(f"one dedupe worker ({STORE} store) catching up")
    worker = subprocess.Popen([sys.executable, "-m", "onoff_bridge", "worker", "dedupe"], env=env)
    say(f"  worker pid {worker.pid}")
    first = last = None
    count = 0.0
    try:
        deadline = time.monotonic() + 1800
        while count < len(events) and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                count = processed(port)
            except httpx.HTTPError:
                continue
            now = time.perf_counter()
            if count and first is None:
                first = (now, count)
            last = (now, count)
        rss = peak_rss_mb(worker.pid)
    finally:
        worker.terminate()
        worker.wait(60)
    assert first is not None and last is not None and last[1] == len(events), f"processed {count}"
    rate = round((last[1] - first[1]) / (last[0] - first[0]), 1)
    say(f"  {rate} events/s, peak RSS {rss:.0f} MB")
    result = {
        "benchmark": "dedupe",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "deliveries": len(events),
        "calls": calls,
        "store": STORE,
        "worker_events_per_s": rate,
        "worker_peak_rss_mb": round(rss, 1),
        "ceiling_plain_consumer_decode_per_s": ceiling_rate,
        "ratio_to_ceiling": round(rate / ceiling_rate, 3),
    }
    path = save(f"dedupe-{STORE}", result)
    print(json.dumps(result, indent=2))
    say(f"saved {path}")


if __name__ == "__main__":
    main()
